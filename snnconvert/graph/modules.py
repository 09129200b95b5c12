"""Small modules the graph passes insert; each is a leaf for torch.fx and fully serializable."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from snnconvert.registry import serializable


@serializable
class BoundedReLU(nn.Module):
    """``clamp(x, 0, upper)``: the canonical form of ReLU6, ``Hardtanh(0, u)`` and ``clamp(0, u)``."""

    serial_params = ("upper",)

    def __init__(self, upper: float) -> None:
        super().__init__()
        self.upper = float(upper)

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(0.0, self.upper)

    def extra_repr(self) -> str:
        return f"upper={self.upper}"


@serializable
class ChannelAffine(nn.Module):
    """Per-channel ``x * scale + shift`` (channel axis 1): a batch-norm that follows no conv,
    or the input normalization when it cannot be folded into the first layer."""

    serial_params = ("channels",)

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone().float())
        self.register_buffer("shift", shift.detach().clone().float())

    @property
    def channels(self) -> int:
        return self.scale.numel()

    @classmethod
    def from_serial(cls, channels: int) -> ChannelAffine:
        return cls(torch.zeros(channels), torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


@serializable
class PadWithValues(nn.Module):
    """Pad a (B, C, H, W) tensor with a per-channel constant.

    Folding ``(x - mean) / std`` into a zero-padded conv needs the raw input padded with ``mean``
    so the border stays exact; ``padding`` is ``(left, right, top, bottom)`` like ``F.pad``.
    """

    serial_params = ("padding", "channels")

    def __init__(self, padding: tuple[int, int, int, int], values: Tensor) -> None:
        super().__init__()
        self.padding = tuple(int(p) for p in padding)
        self.register_buffer("values", values.detach().clone().float())

    @property
    def channels(self) -> int:
        return self.values.numel()

    @classmethod
    def from_serial(cls, padding: tuple[int, int, int, int], channels: int) -> PadWithValues:
        return cls(padding, torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        left, right, top, bottom = self.padding
        b, c, h, w = x.shape
        out = self.values.to(x.dtype).view(1, c, 1, 1).expand(b, c, h + top + bottom, w + left + right)
        out = out.contiguous()
        out[:, :, top : top + h, left : left + w] = x
        return out

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


def conv_args(conv: nn.Conv2d) -> dict[str, Any]:
    """The constructor arguments of a ``nn.Conv2d`` (or subclass) as plain values."""
    return {
        "in_channels": conv.in_channels, "out_channels": conv.out_channels, "kernel_size": tuple(conv.kernel_size),
        "stride": tuple(conv.stride), "padding": conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),
        "dilation": tuple(conv.dilation), "groups": conv.groups, "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
    }
