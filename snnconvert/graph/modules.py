"""Small modules the graph passes insert; each is a leaf for torch.fx and fully serializable."""

from __future__ import annotations

from torch import Tensor, nn


class BoundedReLU(nn.Module):
    """``clamp(x, 0, upper)``: the canonical form of ReLU6, ``Hardtanh(0, u)`` and ``clamp(0, u)``."""

    def __init__(self, upper: float) -> None:
        super().__init__()
        self.upper = float(upper)

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, self.upper)

    def extra_repr(self) -> str:
        return f"upper={self.upper}"


class ChannelAffine(nn.Module):
    """Per-channel ``x * scale + shift`` (channel axis 1): a batch-norm that follows no conv,
    or the input normalization when it cannot be folded into the first layer."""

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().float())
        self.register_buffer("shift", shift.detach().clone().float())

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


class PadWithValues(nn.Module):
    """Pad a (B, C, H, W) tensor with a per-channel constant.

    Folding ``(x - mean) / std`` into a zero-padded conv needs the raw input padded with ``mean``
    so the border stays exact; ``padding`` is ``(left, right, top, bottom)`` like ``F.pad``.
    """

    def __init__(self, padding: tuple[int, int, int, int], values: Tensor) -> None:
        super().__init__()
        self.padding = tuple(int(p) for p in padding)
        self.register_buffer("values", values.detach().clone().float())

    def forward(self, x: Tensor) -> Tensor:
        left, right, top, bottom = self.padding
        b, c, h, w = x.shape
        out = self.values.to(x.dtype).view(1, c, 1, 1).expand(b, c, h + top + bottom, w + left + right)
        out = out.contiguous()
        out[:, :, top : top + h, left : left + w] = x
        return out

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


def _register() -> None:
    import torch

    from snnconvert.serialize import _from_json, _jsonable, register_module, register_simple

    register_simple(BoundedReLU, "upper")
    register_module(
        "ChannelAffine", ChannelAffine,
        lambda m: {"channels": m.scale.numel()},
        lambda c: ChannelAffine(torch.zeros(c["channels"]), torch.zeros(c["channels"])),
    )
    register_module(
        "PadWithValues", PadWithValues,
        lambda m: {"padding": _jsonable(m.padding), "channels": m.values.numel()},
        lambda c: PadWithValues(_from_json(c["padding"]), torch.zeros(c["channels"])),
    )


_register()
