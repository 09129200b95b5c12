"""Synaptic layers of a spiking network: they run on time-folded frames (T*B, ...).

A synapse applies its weights to every frame in one call (the frames are folded into the
batch) and adds its bias to frame k multiplied by ``frame_bias_gain[k]``: SWS spreads the bias
over the Tc input steps (eq 19), rate-type codings add it at every step.

Exact sums. A conv or linear synapse whose input frames are spikes (``spike_inputs = n``: every
input a multiple of ``1/n`` in [-1, 1], ``n`` a power of two) and whose float64 weights are a
quantized layer's ``q * c`` (integer ``q``, one scale ``c`` per output channel) sums
``conv(x, q)`` in float32 and only then scales by ``c`` in float64: every partial sum is a
multiple of ``1/n`` below ``K * max|q| * n < 2^24`` (K inputs per output), so float32 adds it
without rounding, on any CPU, in any order. That is as exact as a float64 sum and runs at float32
speed (:func:`integer_form` finds ``q`` and ``c``).
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


EXACT_FLOAT32_LIMIT = 2 ** 24
"""Integers up to this magnitude are exact in float32 (a 24-bit significand)."""

_INTEGER_BOUNDS = tuple(2 ** b - 1 for b in range(1, 17))  # the largest |q| of symmetric b-bit weights


@torch.no_grad()
def integer_form(weight: Tensor, tolerance: float = 1e-12) -> tuple[Tensor, Tensor] | None:
    """``(q, c)`` with ``weight == q * c`` row by row (output channel ``o``: ``q[o]`` integers of at
    most 16 bits, ``c[o]`` a float64 scale), or None when ``weight`` is not such a product (float32
    weights never are: their rounding hides the integers).

    A symmetric quantizer of b + 1 bits maps a row's largest weight to ``+-(2^b - 1)`` (clipping maps
    larger ones there too), so ``c = max|w| / (2^b - 1)`` is tried for b = 2..16, per row and then
    for the whole tensor (one scale per tensor); ``q = w / c`` must be within ``tolerance`` of
    integers (the float64 products the weights were made with are exact to ~1e-15).
    """
    if weight.dtype != torch.float64 or weight.numel() == 0:
        return None
    rows = weight.reshape(weight.shape[0], -1)
    largest = rows.abs().amax(dim=1, keepdim=True)
    scale = torch.where(largest > 0, largest, torch.ones_like(largest))
    found = torch.zeros_like(largest, dtype=torch.bool)
    chosen = torch.ones_like(largest)
    for candidates in (scale, scale.amax().expand_as(scale)):
        for bound in _INTEGER_BOUNDS:
            c = candidates / bound
            ratio = rows / c
            nearest = ratio.round()
            fits = ((ratio - nearest).abs() <= tolerance * nearest.abs().clamp(min=1.0)).all(dim=1, keepdim=True)
            fits &= ~found
            chosen = torch.where(fits, c, chosen)
            found |= fits
            if bool(found.all()):
                q = (rows / chosen).round()
                return q.reshape(weight.shape).float(), chosen.reshape(-1)
    return None


def _exact_weights(syn: SynapseConv2d | SynapseLinear, frames: Tensor) -> tuple[Tensor, Tensor] | None:
    """The synapse's :func:`integer_form` when summing ``frames`` with it in float32 is exact (see the
    module docstring), else None. The form is cached while the weight tensor stays as it was."""
    grain = syn.spike_inputs  # (from an artifact: anything but a positive power of two means unknown)
    if not (isinstance(grain, int) and grain > 0 and grain & (grain - 1) == 0) or frames.dtype != torch.float64 \
            or frames.device.type == "meta" or (
            torch.is_grad_enabled() and (frames.requires_grad or syn.weight.requires_grad)):
        return None
    weight = syn.weight.detach()
    # (the sums also catch writes through ``.data``, which bump no version; a pass over the weights only)
    key = (weight.data_ptr(), weight._version, weight.device, float(weight.sum()), float(weight.abs().sum()))
    cached = syn.__dict__.get("_integer_form")
    if cached is None or cached[0] != key:
        form = integer_form(weight)
        if form is not None:
            fan_in = weight[0].numel()
            if fan_in * float(form[0].abs().max()) * syn.spike_inputs >= EXACT_FLOAT32_LIMIT:
                form = None
        cached = (key, form)
        syn.__dict__["_integer_form"] = cached
    return cached[1]


def _scaled(syn: SynapseConv2d | SynapseLinear, sums: Tensor, scale: Tensor, like: Tensor) -> Tensor:
    """``sums * scale + bias`` (bias spread over frames as usual) in ``like``'s dtype."""
    shape = (1, -1) + (1,) * (sums.dim() - 2)
    y = torch.empty(sums.shape, dtype=like.dtype, device=like.device).copy_(sums)
    gain = None if syn.bias is None else _uniform_gain(syn.frame_bias_gain)
    if gain is not None:  # one pass: y * c + gain * b
        return torch.addcmul((syn.bias * gain).view(shape), y, scale.view(shape), out=y)
    return _add_frame_bias(y.mul_(scale.view(shape)), syn.bias, syn.frame_bias_gain)


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

    def __init__(self, *args, steps: int = 1, spike_inputs: int = 0, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, **kwargs) -> None:
        super().__init__(*args, device=device, dtype=dtype, **kwargs)
        self.register_buffer("frame_bias_gain", torch.ones(steps, dtype=dtype, device=device))
        self.spike_inputs = int(spike_inputs)  # n > 0: inputs are multiples of 1/n in [-1, 1] (exact sums)

    @property
    def steps(self) -> int:
        return self.frame_bias_gain.numel()

    def serial_config(self) -> dict[str, Any]:
        extra = {"spike_inputs": self.spike_inputs} if self.spike_inputs else {}
        return {**conv_args(self), "steps": self.steps, **extra}

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, gains: Tensor) -> SynapseConv2d:
        args = {**conv_args(conv), "bias": bias is not None}
        return _filled(skip_init(cls, **args, steps=gains.numel(), dtype=weight.dtype), weight, bias, gains)

    def forward(self, frames: Tensor) -> Tensor:
        kept = active_steps(frames)
        if kept is not None and kept < self.steps:
            return _skipping_forward(self, frames, kept, lambda x: self._conv_forward(x, self.weight, None))
        exact = _exact_weights(self, frames)
        if exact is not None:
            return _scaled(self, self._conv_forward(frames.float(), exact[0], None), exact[1], frames)
        gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
        if gain is not None:  # one fused conv + bias instead of a broadcast pass over every frame
            return self._conv_forward(frames, self.weight, self.bias * gain)
        y = self._conv_forward(frames, self.weight, None)
        return _add_frame_bias(y, self.bias, self.frame_bias_gain)


@serializable
class SynapseLinear(nn.Linear):
    """Linear layer over folded frames with a per-frame bias gain."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, steps: int = 1,
                 spike_inputs: int = 0, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, dtype=dtype, device=device)
        self.register_buffer("frame_bias_gain", torch.ones(steps, dtype=dtype, device=device))
        self.spike_inputs = int(spike_inputs)  # n > 0: inputs are multiples of 1/n in [-1, 1] (exact sums)

    @property
    def steps(self) -> int:
        return self.frame_bias_gain.numel()

    def serial_config(self) -> dict[str, Any]:
        extra = {"spike_inputs": self.spike_inputs} if self.spike_inputs else {}
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "steps": self.steps, **extra}

    @classmethod
    def from_linear(cls, linear: nn.Linear, weight: Tensor, bias: Tensor | None, gains: Tensor) -> SynapseLinear:
        syn = skip_init(cls, linear.in_features, linear.out_features, bias is not None, steps=gains.numel(),
                        dtype=weight.dtype)
        return _filled(syn, weight, bias, gains)

    def forward(self, frames: Tensor) -> Tensor:
        kept = active_steps(frames)
        if kept is not None and kept < self.steps:
            return _skipping_forward(self, frames, kept, lambda x: F.linear(x, self.weight))
        exact = _exact_weights(self, frames)
        if exact is not None:
            return _scaled(self, F.linear(frames.float(), exact[0]), exact[1], frames)
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
