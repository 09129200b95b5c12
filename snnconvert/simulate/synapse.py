"""Synaptic layers of a spiking network: they run on time-folded frames (T*B, ...).

A synapse applies its weights to every frame in one call (the frames are folded into the
batch) and adds its bias to frame k multiplied by ``frame_bias_gain[k]``: SWS spreads the bias
over the Tc input steps (eq 19), rate-type codings add it at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init


def _uniform_gain(gains: Tensor) -> float | None:
    """The common gain when every frame's bias gain is the same (then the bias goes into the op)."""
    first = gains[0]
    return float(first) if bool((gains == first).all()) else None


def _add_frame_bias(y: Tensor, bias: Tensor | None, gains: Tensor) -> Tensor:
    """Add ``gains[k] * bias`` (bias on channel axis 1) to frame k of folded ``y`` (in place)."""
    if bias is None:
        return y
    steps = gains.numel()
    frames = y.reshape(steps, y.shape[0] // steps, *y.shape[1:])
    g = gains.to(y.dtype).view(steps, *([1] * (frames.dim() - 1)))
    b = bias.view(1, 1, -1, *([1] * (frames.dim() - 3)))
    frames.addcmul_(g, b)  # y is the synapse's fresh output: add in place
    return y


class SynapseConv2d(nn.Conv2d):
    """Conv2d over folded frames with a per-frame bias gain."""

    def __init__(self, *args, steps: int = 1, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, **kwargs) -> None:
        super().__init__(*args, device=device, dtype=dtype, **kwargs)
        self.register_buffer("frame_bias_gain", torch.ones(steps, dtype=dtype, device=device))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, gains: Tensor) -> SynapseConv2d:
        syn = skip_init(
            cls, conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=bias is not None, padding_mode=conv.padding_mode, steps=gains.numel(), dtype=weight.dtype,
        )
        with torch.no_grad():
            syn.weight.copy_(weight)
            if bias is not None:
                syn.bias.copy_(bias)
            syn.frame_bias_gain.copy_(gains)
        return syn

    def forward(self, frames: Tensor) -> Tensor:
        gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
        if gain is not None:  # one fused conv + bias instead of a broadcast pass over every frame
            return self._conv_forward(frames, self.weight, self.bias * gain)
        y = self._conv_forward(frames, self.weight, None)
        return _add_frame_bias(y, self.bias, self.frame_bias_gain)


class SynapseLinear(nn.Linear):
    """Linear layer over folded frames with a per-frame bias gain."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, steps: int = 1,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, dtype=dtype, device=device)
        self.register_buffer("frame_bias_gain", torch.ones(steps, dtype=dtype, device=device))

    @classmethod
    def from_linear(cls, linear: nn.Linear, weight: Tensor, bias: Tensor | None, gains: Tensor) -> SynapseLinear:
        syn = skip_init(cls, linear.in_features, linear.out_features, bias is not None, steps=gains.numel(),
                        dtype=weight.dtype)
        with torch.no_grad():
            syn.weight.copy_(weight)
            if bias is not None:
                syn.bias.copy_(bias)
            syn.frame_bias_gain.copy_(gains)
        return syn

    def forward(self, frames: Tensor) -> Tensor:
        gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
        if gain is not None:
            return F.linear(frames, self.weight, self.bias * gain)
        return _add_frame_bias(F.linear(frames, self.weight), self.bias, self.frame_bias_gain)


class SynapseAffine(nn.Module):
    """Per-channel ``x * scale + shift`` over folded frames (shift spread like a bias)."""

    snn_kind = "linear"

    def __init__(self, channels: int, steps: int = 1) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("frame_bias_gain", torch.ones(steps))

    def forward(self, frames: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (frames.dim() - 2)
        return _add_frame_bias(frames * self.scale.view(shape), self.shift, self.frame_bias_gain)


class Gain(nn.Module):
    """Multiply by a scalar or per-channel (axis 1) factor: the scale between spike units of two
    layers where it cannot be folded into a weight (e.g. an identity shortcut)."""

    snn_kind = "linear"

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.register_buffer("gain", torch.ones(channels))

    @classmethod
    def of(cls, value: Tensor | float) -> Gain:
        value = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        g = cls(value.numel())
        g.gain = value.clone()
        return g

    def forward(self, frames: Tensor) -> Tensor:
        if self.gain.numel() == 1:
            return frames * self.gain.to(frames.dtype)
        return frames * self.gain.to(frames.dtype).view((1, -1) + (1,) * (frames.dim() - 2))

    def extra_repr(self) -> str:
        g = self.gain
        return f"gain={float(g):.6g}" if g.numel() == 1 else f"channels={g.numel()}"


class WeightedSumDecoder(nn.Module):
    """Read out the network: ``sum_k weights[k] * frame_k`` over the T output frames (SWS uses
    beta^(Tc-k), rate codings 1/T)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.register_buffer("weights", torch.ones(steps) / steps)

    def forward(self, frames: Tensor) -> Tensor:
        steps = self.weights.numel()
        frames = frames.reshape(steps, frames.shape[0] // steps, *frames.shape[1:])
        w = self.weights.to(frames.dtype).view((steps,) + (1,) * (frames.dim() - 1))
        return (frames * w).sum(dim=0)


def _register() -> None:
    from snnconvert.serialize import _from_json, _jsonable, register_module

    def conv_to(m: SynapseConv2d) -> dict:
        return {
            "in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": _jsonable(m.kernel_size), "stride": _jsonable(m.stride),
            "padding": _jsonable(m.padding), "dilation": _jsonable(m.dilation),
            "groups": m.groups, "bias": m.bias is not None, "padding_mode": m.padding_mode,
            "steps": m.frame_bias_gain.numel(),
        }

    register_module("SynapseConv2d", SynapseConv2d, conv_to,
                    lambda c: SynapseConv2d(**{k: _from_json(v) for k, v in c.items()}))
    register_module(
        "SynapseLinear", SynapseLinear,
        lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                   "bias": m.bias is not None, "steps": m.frame_bias_gain.numel()},
        lambda c: SynapseLinear(c["in_features"], c["out_features"], c["bias"], steps=c["steps"]),
    )
    register_module("SynapseAffine", SynapseAffine,
                    lambda m: {"channels": m.scale.numel(), "steps": m.frame_bias_gain.numel()},
                    lambda c: SynapseAffine(c["channels"], c["steps"]))
    register_module("Gain", Gain, lambda m: {"channels": m.gain.numel()}, lambda c: Gain(c["channels"]))
    register_module("WeightedSumDecoder", WeightedSumDecoder,
                    lambda m: {"steps": m.weights.numel()}, lambda c: WeightedSumDecoder(c["steps"]))


_register()
