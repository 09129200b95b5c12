"""Fake quantization with straight-through gradients (no torch.ao.quantization).

Activations round half up, ``floor(x / scale + 0.5)``: that is the rounding a TSA neuron with a
threshold of half a spike performs, so a converted SNN can reproduce the quantized ANN exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor


def round_ste(x: Tensor) -> Tensor:
    """Round half up in the forward pass, identity gradient in the backward pass."""
    return x + (torch.floor(x + 0.5) - x).detach()


def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """``(clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale``."""
    q = torch.clamp(round_ste(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def to_integer(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """The integer grid value ``Q`` of ``x`` (as a float tensor holding integers)."""
    return torch.clamp(torch.floor(x / scale + 0.5) + zero_point, qmin, qmax)


def symmetric_weight_scale(weight: Tensor, bits: int) -> Tensor:
    """Per-output-channel symmetric scale: ``max|W_c| / (2^(bits-1) - 1)``."""
    qmax = 2 ** (bits - 1) - 1
    amax = weight.detach().abs().flatten(1).amax(dim=1)
    return torch.where(amax > 0, amax / qmax, torch.ones_like(amax))


def fake_quantize_weight(weight: Tensor, scale: Tensor, bits: int) -> Tensor:
    """Per-channel symmetric fake quantization (zero point 0), straight-through gradient."""
    qmax = 2 ** (bits - 1) - 1
    shape = (-1,) + (1,) * (weight.dim() - 1)
    s = scale.view(shape)
    q = torch.clamp(weight / s + (torch.round(weight / s) - weight / s).detach(), -qmax, qmax)
    return q * s


def lsq_grad_scale(scale: Tensor, factor: float) -> Tensor:
    """Scale the gradient reaching ``scale`` by ``factor`` (LSQ step-size gradient scaling)."""
    return (scale - scale * factor).detach() + scale * factor
