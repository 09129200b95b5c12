"""Power-of-two (PoT) weight quantization with a learnable power-of-two scale (paper 001, eqs 14-18).

A b-bit PoT weight is ``alpha * g`` with ``alpha = 2^round(s)`` (a power of two; ``s`` is the
learnable log2 scale, rounded in the forward pass with a straight-through gradient) and ``g``
on the grid of eq 17: zero or ``+-2^-j`` for j = 0 .. 2^(b-1) - 2, i.e. one sign bit and a
(b-1)-bit code of which one value means zero. 2 bits give {0, +-1} * alpha (ternary), 4 bits
{0, +-1, +-1/2, ..., +-1/64} * alpha, 8 bits 127 exponents. Weights are clipped to
[-alpha, alpha] (eq 16) and rounded to the nearest grid value in the linear domain (eq 18).
The initial scale is the power of two nearest to max |w| (in log2).

Gradients: straight-through inside the clip range for the weights; LSQ-style for the scale
(``d w_q / d alpha = g`` through the rounded scale).

:class:`PoTConv2d` / :class:`PoTLinear` are synapses (time-folded frames, per-frame bias gain)
whose weights pass through :func:`pot_quantize` on every forward; ``bits=None`` keeps float
weights. A PoT conv skips the input channels that carry no spike in any frame of the batch
(masked channels of the layer before): it convolves only the live channels (the same result) and
counts the channels offered and used in ``channel_work``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.simulate.synapse import SynapseConv2d, SynapseLinear, _add_frame_bias, _uniform_gain

POT_BITS = (2, 4, 8)


def pot_exponents(bits: int) -> int:
    """Non-zero magnitudes of the b-bit grid: 2^(b-1) - 1 (capped at 126: below float precision)."""
    if bits not in POT_BITS:
        raise SnnConvertError(f"PoT weight bits {bits!r} are not possible: choose 2, 4 or 8")
    return min(2 ** (bits - 1) - 1, 126)


def pot_grid(bits: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Eq 17: the magnitudes 0, 2^-(L-1), ..., 1/2, 1 of the b-bit grid, ascending."""
    n = pot_exponents(bits)
    return torch.tensor([0.0] + [2.0 ** -j for j in range(n - 1, -1, -1)], dtype=dtype)


def pot_round(x: Tensor, bits: int) -> Tensor:
    """Eq 18: ``x`` (already divided by alpha) clipped to [-1, 1] and rounded to the nearest grid
    value in the linear domain (ties towards the larger magnitude)."""
    grid = pot_grid(bits, torch.float64).to(x.device)
    mid = (grid[1:] + grid[:-1]) / 2
    mag = x.detach().abs().clamp(max=1.0).double()
    idx = torch.bucketize(mag, mid, right=True)
    return (torch.sign(x.detach()) * grid[idx]).to(x.dtype)


def initial_log_scale(weight: Tensor) -> float:
    """log2 of the power of two nearest (in log2) to max |w|."""
    top = float(weight.detach().abs().max())
    return float(round(math.log2(top))) if top > 0 else 0.0


def pot_quantize(weight: Tensor, log_scale: Tensor, bits: int) -> Tensor:
    """Eqs 14-18 with straight-through gradients: ``alpha * pot_round(w / alpha)``, alpha a power of two."""
    s = log_scale + (torch.round(log_scale) - log_scale).detach()
    alpha = torch.pow(2.0, s).to(weight.dtype)
    x = weight / alpha
    xc = torch.clamp(x, -1.0, 1.0)
    g = xc + (pot_round(xc, bits) - xc).detach()
    return g * alpha


class _PoTMixin:
    """Shared parts of the PoT synapses: ``bits`` and the learnable ``log_scale`` (one per layer)."""

    bits: int | None

    def take_synapse(self, syn: nn.Module, bits: int | None) -> Any:
        """Copy ``syn``'s weight, bias and per-frame bias gains, then set up ``bits``-bit PoT; returns self."""
        with torch.no_grad():
            self.weight.copy_(syn.weight)
            if syn.bias is not None:
                self.bias.copy_(syn.bias)
            self.frame_bias_gain.copy_(syn.frame_bias_gain)
        self.init_pot(bits)
        return self

    def init_pot(self, bits: int | None) -> None:
        if bits is not None:
            pot_exponents(bits)
        self.bits = None if bits is None else int(bits)
        w = self.weight  # type: ignore[attr-defined]
        scale = 0.0
        if bits is not None and not w.is_meta and w.numel() and float(w.detach().abs().max()) > 0:
            scale = initial_log_scale(w)
        self.log_scale = nn.Parameter(torch.tensor(scale, dtype=w.dtype), requires_grad=bits is not None)
        self.register_stat_shape()

    def register_stat_shape(self) -> None:
        self.register_buffer("out_shape", torch.zeros(3, dtype=torch.float64), persistent=False)  # type: ignore
        # input channels offered / actually convolved, summed over calls (conv only; see PoTConv2d.forward)
        self.register_buffer("channel_work", torch.zeros(2, dtype=torch.float64), persistent=False)  # type: ignore

    def effective_weight(self) -> Tensor:
        w = self.weight  # type: ignore[attr-defined]
        return w if self.bits is None else pot_quantize(w, self.log_scale, self.bits)


class PoTConv2d(_PoTMixin, SynapseConv2d):
    """A conv synapse with b-bit PoT weights (``bits=None``: float). Records its output shape."""

    def __init__(self, *args: Any, bits: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.init_pot(bits)

    def serial_config(self) -> dict[str, Any]:
        return {**super().serial_config(), "bits": self.bits}

    @classmethod
    def from_synapse(cls, syn: SynapseConv2d, bits: int | None) -> PoTConv2d:
        from snnconvert.graph.modules import conv_args

        new = cls(**{**conv_args(syn), "bias": syn.bias is not None}, steps=syn.steps, dtype=syn.weight.dtype,
                  bits=None)
        return new.take_synapse(syn, bits)

    def forward(self, frames: Tensor) -> Tensor:
        w = self.effective_weight()
        if self.groups == 1 and frames.dim() == 4:  # input channels silent in every frame (masked): skipped
            with torch.no_grad():
                live = frames.detach().abs().amax(dim=(0, 2, 3)) > 0
                used = int(live.sum())
                self.channel_work += torch.tensor([float(live.numel()), float(used)], dtype=torch.float64)
            if 0 < used < live.numel():
                index = torch.nonzero(live).reshape(-1)
                frames, w = frames.index_select(1, index), w.index_select(1, index)
        gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
        if gain is not None:
            y = self._conv_forward(frames, w, self.bias * gain)
        else:
            y = _add_frame_bias(self._conv_forward(frames, w, None), self.bias, self.frame_bias_gain)
        with torch.no_grad():
            self.out_shape.copy_(torch.tensor(list(y.shape[1:]), dtype=torch.float64))
        return y


class PoTLinear(_PoTMixin, SynapseLinear):
    """A linear synapse with b-bit PoT weights (``bits=None``: float)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, steps: int = 1,
                 bits: int | None = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias, steps=steps, dtype=dtype, device=device)
        self.init_pot(bits)

    def serial_config(self) -> dict[str, Any]:
        return {**super().serial_config(), "bits": self.bits}

    @classmethod
    def from_synapse(cls, syn: SynapseLinear, bits: int | None) -> PoTLinear:
        new = cls(syn.in_features, syn.out_features, syn.bias is not None, steps=syn.steps, dtype=syn.weight.dtype)
        return new.take_synapse(syn, bits)

    def forward(self, frames: Tensor) -> Tensor:
        w = self.effective_weight()
        gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
        if gain is not None:
            y = F.linear(frames, w, self.bias * gain)
        else:
            y = _add_frame_bias(F.linear(frames, w), self.bias, self.frame_bias_gain)
        with torch.no_grad():
            self.out_shape.copy_(torch.tensor([y.shape[-1], 1, 1], dtype=torch.float64))
        return y
