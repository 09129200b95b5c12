"""Synaptic layers of a spiking network: they run on time-folded frames (T*B, ...).

A synapse applies its weights to every frame in one call (the frames are folded into the
batch) and adds its bias to frame k multiplied by ``frame_bias_gain[k]``: SWS spreads the bias
over the Tc input steps (eq 19), rate-type codings add it at every step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

from snnconvert.graph.modules import conv_args
from snnconvert.registry import serializable
from snnconvert.simulate.gating import active_steps, mark_active


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


def _skipping_forward(syn: SynapseConv2d | SynapseLinear, frames: Tensor, kept: int,
                      op: Any) -> Tensor:
    """Run ``op`` (the weights, no bias) only on the first ``kept`` of ``syn.steps`` frames (a
    DTSS mask zeroed the rest): the skipped frames get the bias alone, their synaptic work is
    never executed."""
    batch = frames.shape[0] // syn.steps
    live = op(frames[:kept * batch])
    y = live.new_zeros((frames.shape[0], *live.shape[1:]))
    y[:kept * batch] = live
    return _add_frame_bias(y, syn.bias, syn.frame_bias_gain)


def _filled(syn: SynapseConv2d | SynapseLinear, weight: Tensor, bias: Tensor | None, gains: Tensor) -> Any:
    """``syn`` with its weight, bias and per-frame bias gains set."""
    with torch.no_grad():
        syn.weight.copy_(weight)
        if bias is not None:
            syn.bias.copy_(bias)
        syn.frame_bias_gain.copy_(gains)
    return syn


@serializable
class SynapseConv2d(nn.Conv2d):
    """Conv2d over folded frames with a per-frame bias gain."""

    def __init__(self, *args, steps: int = 1, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, **kwargs) -> None:
        super().__init__(*args, device=device, dtype=dtype, **kwargs)
        self.register_buffer("frame_bias_gain", torch.ones(steps, dtype=dtype, device=device))

    @property
    def steps(self) -> int:
        return self.frame_bias_gain.numel()

    def serial_config(self) -> dict[str, Any]:
        return {**conv_args(self), "steps": self.steps}

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, gains: Tensor) -> SynapseConv2d:
        args = {**conv_args(conv), "bias": bias is not None}
        return _filled(skip_init(cls, **args, steps=gains.numel(), dtype=weight.dtype), weight, bias, gains)

    def forward(self, frames: Tensor) -> Tensor:
        kept = active_steps(frames)
        if kept is not None and kept < self.steps:
            return _skipping_forward(self, frames, kept, lambda x: self._conv_forward(x, self.weight, None))
        gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
        if gain is not None:  # one fused conv + bias instead of a broadcast pass over every frame
            return self._conv_forward(frames, self.weight, self.bias * gain)
        y = self._conv_forward(frames, self.weight, None)
        return _add_frame_bias(y, self.bias, self.frame_bias_gain)


@serializable
class SynapseLinear(nn.Linear):
    """Linear layer over folded frames with a per-frame bias gain."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, steps: int = 1,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, dtype=dtype, device=device)
        self.register_buffer("frame_bias_gain", torch.ones(steps, dtype=dtype, device=device))

    @property
    def steps(self) -> int:
        return self.frame_bias_gain.numel()

    def serial_config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "steps": self.steps}

    @classmethod
    def from_linear(cls, linear: nn.Linear, weight: Tensor, bias: Tensor | None, gains: Tensor) -> SynapseLinear:
        syn = skip_init(cls, linear.in_features, linear.out_features, bias is not None, steps=gains.numel(),
                        dtype=weight.dtype)
        return _filled(syn, weight, bias, gains)

    def forward(self, frames: Tensor) -> Tensor:
        kept = active_steps(frames)
        if kept is not None and kept < self.steps:
            return _skipping_forward(self, frames, kept, lambda x: F.linear(x, self.weight))
        gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
        if gain is not None:
            return F.linear(frames, self.weight, self.bias * gain)
        return _add_frame_bias(F.linear(frames, self.weight), self.bias, self.frame_bias_gain)


@serializable
class SynapseAffine(nn.Module):
    """Per-channel ``x * scale + shift`` over folded frames (shift spread like a bias)."""

    snn_kind = "linear"
    serial_params = ("channels", "steps")

    def __init__(self, channels: int, steps: int = 1) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("frame_bias_gain", torch.ones(steps))

    @property
    def channels(self) -> int:
        return self.scale.numel()

    @property
    def steps(self) -> int:
        return self.frame_bias_gain.numel()

    def forward(self, frames: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (frames.dim() - 2)
        gain = _uniform_gain(self.frame_bias_gain)
        if gain is not None:  # the same shift at every step: any number of frames (time chunks)
            return torch.addcmul(frames * self.scale.view(shape), self.shift.view(shape), torch.tensor(
                gain, dtype=frames.dtype, device=frames.device))
        return _add_frame_bias(frames * self.scale.view(shape), self.shift, self.frame_bias_gain)


@serializable
class Gain(nn.Module):
    """Multiply by a scalar or per-channel (axis 1) factor: the scale between spike units of two
    layers where it cannot be folded into a weight (e.g. an identity shortcut)."""

    snn_kind = "linear"
    serial_params = ("channels",)

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.register_buffer("gain", torch.ones(channels))

    @property
    def channels(self) -> int:
        return self.gain.numel()

    @classmethod
    def of(cls, value: Tensor | float) -> Gain:
        value = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        g = cls(value.numel())
        g.gain = value.clone()
        return g

    def forward(self, frames: Tensor) -> Tensor:
        if self.gain.numel() == 1:
            return mark_active(frames * self.gain.to(frames.dtype), active_steps(frames))
        return mark_active(frames * self.gain.to(frames.dtype).view((1, -1) + (1,) * (frames.dim() - 2)),
                           active_steps(frames))

    def extra_repr(self) -> str:
        g = self.gain
        return f"gain={float(g):.6g}" if g.numel() == 1 else f"channels={g.numel()}"


@serializable
class WeightedSumDecoder(nn.Module):
    """Read out the network: ``sum_k weights[k] * frame_k`` over the T output frames (SWS uses
    beta^(Tc-k), rate codings 1/T)."""

    serial_params = ("steps",)

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.register_buffer("weights", torch.ones(steps) / steps)

    @property
    def steps(self) -> int:
        return self.weights.numel()

    def forward(self, frames: Tensor) -> Tensor:
        steps = self.weights.numel()
        frames = frames.reshape(steps, frames.shape[0] // steps, *frames.shape[1:])
        w = self.weights.to(frames.dtype).view((steps,) + (1,) * (frames.dim() - 1))
        return (frames * w).sum(dim=0)
