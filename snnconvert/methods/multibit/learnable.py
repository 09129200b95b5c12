"""Learnable bit widths and step sizes (adaptive-bit-allocation paper 002, §3.2, §4.1, §4.3-4.4, A.3).

* :func:`width` rounds a real width ``B^`` to ``round(clip(B^, 1, bound))`` (eqs 10-12; the
  paper's bracket is its rounding function) with a straight-through gradient inside the clip;
* :class:`RoundClip` is the quantizer ``clip(round(u), q_min, q_max)`` (or ``floor``) of a value
  ``u`` in units of the step, whose backward gives ``u`` the clip gradient of eq 21 and the width
  the gradient of eqs 18 / 20 / A.11: ``sign(u) (q_max + 1) ln 2`` where ``u`` leaves
  ``[q_min, q_max]`` (``d q_max / dB``), scaled by ``g = 1 / sqrt(N q_max)``;
* the step sizes get the LSQ gradient of A.7 / A.9 from autograd through ``step * q(u / step)``
  (``round(u) - u`` inside, ``q_min`` / ``q_max`` outside) with the same scale ``g``
  (:func:`grad_scale`);
* :func:`grid_search` is Algorithm 2 and :func:`renew` the renewal of Algorithm 1 (bit-width
  observer: recorded width, running max / min, eqs 25-26);
* :class:`AdaptiveSynapseConv2d` / :class:`AdaptiveSynapseLinear`: synapses whose weights are
  quantized per layer with a learnable width ``B^_w`` and step ``S_q`` (eq 6; ``B_w = 1``: binary
  ``sign(w) S_q``).

Deviations, all documented: Algorithm 2 starts from ``Score = inf`` (the printed ``0`` would never
accept a candidate) and rounds in line 9; an unsigned quantizer searches ``V_min = 0`` and the
range ``max(X)``, a signed one the symmetric range ``max|X|``; a renewal keeps the current step
when the renewed one quantizes the current data with a larger error (so a renewal never
increases the quantization error of the batch it fires on).

Data parallel (``torchrun``): every rank renews identically. The grid search runs on each rank's
shard, the running max / min take the widest range over the ranks and the keep-or-renew choice
compares the errors summed over all shards (``snnconvert.distributed.reduce_values``), so the
replicas' steps stay equal; the decisions to renew follow the widths, which DDP keeps equal.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd import Function

from snnconvert.distributed import reduce_values
from snnconvert.methods.multibit.neuron import spike_range as qrange  # (q_min, q_max) of B bits
from snnconvert.registry import serializable
from snnconvert.simulate.synapse import SynapseConv2d, SynapseLinear

LN2 = math.log(2.0)


def width(raw: Tensor, bound: int) -> Tensor:
    """``round(clip(raw, 1, bound))`` forward (round half up), straight-through inside the clip."""
    clipped = raw.clamp(1.0, float(bound))
    return clipped + (torch.floor(clipped + 0.5) - clipped).detach()


def grad_scale(x: Tensor, g: float) -> Tensor:
    """``x`` forward, gradient multiplied by ``g`` (LSQ's gradient scaling)."""
    return x * g + (x - x * g).detach()


def rounded(u: Tensor, signed: bool, floor: bool) -> Tensor:
    """``floor(u)`` (eq 5) or round half away from zero (eq 15: ``u + 0.5 sign(u)`` floored toward 0)."""
    if floor:
        return torch.floor(u)
    if not signed:
        return torch.floor(u + 0.5)
    return torch.floor(u.abs() + 0.5).copysign(u).add(0.0)


class RoundClip(Function):
    """``clip(round(u), q_min, q_max)`` with ``q`` from the width ``bits`` (a 0-dim tensor).

    Backward: ``du = 1`` inside ``[q_min, q_max]`` (eq 21), and
    ``dB = g * sum(grad * sign(u) * (q_max + 1) ln 2)`` over the elements outside (eqs 18, 20, A.11;
    unsigned: only above ``q_max`` counts, as eq 18)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, bits: Tensor, signed: bool, floor: bool, g: float, binary: bool) -> Tensor:
        qmin, qmax = qrange(int(bits.item()), signed)
        if binary and signed and int(bits.item()) == 1:
            q = torch.where(u >= 0, torch.ones_like(u), -torch.ones_like(u))  # binary: sign (eq 6 / A.9)
        else:
            q = rounded(u, signed, floor).clamp_(qmin, qmax)
        ctx.save_for_backward(u)
        ctx.qmin, ctx.qmax, ctx.signed, ctx.g = qmin, qmax, signed, g
        return q

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (u,) = ctx.saved_tensors
        above = u > ctx.qmax
        below = u < ctx.qmin
        grad_u = grad.masked_fill(above | below, 0.0) if ctx.needs_input_grad[0] else None
        grad_b = None
        if ctx.needs_input_grad[1]:
            outside = grad.masked_fill(~above, 0.0).sum()
            if ctx.signed:
                outside = outside - grad.masked_fill(~below, 0.0).sum()
            grad_b = (outside * ((ctx.qmax + 1) * LN2 * ctx.g)).reshape(())
        return grad_u, grad_b, None, None, None, None


def quantize(u: Tensor, bits: Tensor, *, signed: bool, floor: bool = False, g: float = 1.0,
             binary: bool = False) -> Tensor:
    """Integer levels of ``u`` (see :class:`RoundClip`); ``bits`` is a 0-dim width tensor.
    ``binary``: a signed width of 1 gives ``sign(u)`` in {-1, 1} (weights, eq 6) instead of the
    ternary {-1, 0, 1} of the signed neuron (eq 16)."""
    return RoundClip.apply(u, bits.reshape(()), signed, floor, g, binary)


def quant_error(x: Tensor, step: float, qmin: int, qmax: int, *, signed: bool, floor: bool = False,
                power: float = 2.0, binary: bool = False) -> float:
    """``mean(|Q(x) - x|^power)`` with step ``step`` (``binary``: ``Q = step * sign(x)``)."""
    if step <= 0:
        return math.inf
    if binary:
        q = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x)) * step
    else:
        q = rounded(x / step, signed, floor).clamp_(qmin, qmax) * step
    return float((q - x).abs().pow(power).mean())


@torch.no_grad()
def grid_search(x: Tensor, qmin: int, qmax: int, *, signed: bool, iterations: int = 100, power: float = 2.0,
                floor: bool = False, binary: bool = False) -> tuple[float, float]:
    """Algorithm 2: ``(V'_max, V'_min)`` minimising ``mean(|Q(X) - X|^pow)`` over the K candidate
    ranges ``k R / K`` (see the module docstring for the range and the start score)."""
    x = x.detach().double().reshape(-1)
    top = float(x.abs().max()) if signed else float(x.max().clamp(min=0))
    best, v_max, v_min = math.inf, top, (-top if signed else 0.0)
    if top <= 0:
        return v_max, v_min
    for k in range(1, iterations + 1):
        hi = k * top / iterations
        lo = -hi if signed else 0.0
        score = quant_error(x, (hi - lo) / (qmax - qmin), qmin, qmax, signed=signed, floor=floor, power=power,
                            binary=binary)
        if score < best:
            best, v_max, v_min = score, hi, lo
    return v_max, v_min


@torch.no_grad()
def renew(x: Tensor, bits: int, step: float, run_max: Tensor, run_min: Tensor, *, signed: bool,
          iterations: int = 100, power: float = 2.0, floor: bool = False, binary: bool = False) -> float:
    """Algorithm 1 lines 3-13 for data ``x`` at the new width ``bits``: grid search (Algorithm 2),
    running max / min (eq 25, updated in place) and the renewed step (eq 26). Returns the step
    that quantizes ``x`` with the smaller error: the renewed one, or ``step`` if it was better."""
    qmin, qmax = qrange(bits, signed)
    v_max, v_min = grid_search(x, qmin, qmax, signed=signed, iterations=iterations, power=power, floor=floor,
                               binary=binary)
    # data parallel: each rank searched its shard; the running range takes the widest of them
    v_max, neg_min = reduce_values([v_max, -v_min], "max", x.device)
    run_max.fill_(max(v_max, float(run_max)))
    run_min.fill_(min(-neg_min, float(run_min)))
    new = (float(run_max) - float(run_min)) / (qmax - qmin)
    x = x.detach().double()
    n = float(x.numel())
    errors = [n * quant_error(x, s, qmin, qmax, signed=signed, floor=floor, power=power, binary=binary)
              for s in (step, new)]
    old_err, new_err = reduce_values(errors, "sum", x.device)  # the error on the whole (global) batch
    return new if new_err <= old_err else step


# ------------------------------------------------------------------------------------ synapses


class LearnableWeights:
    """Mixin of the adaptive synapses: per-layer learnable weight width ``bits_hat`` (B^_w) and
    step ``weight_step`` (S_q), the observer buffers of Algorithm 1 and a renewal switch."""

    weight: Tensor

    def _init_learnable(self, bits_bound: int, init_bits: float) -> None:
        self.bits_bound = int(bits_bound)
        dtype = self.weight.dtype
        self.bits_hat = nn.Parameter(torch.tensor(float(init_bits), dtype=dtype))
        self.weight_step = nn.Parameter(torch.tensor(1.0, dtype=dtype))
        self.register_buffer("recorded_bits", torch.tensor(0.0, dtype=torch.float64))  # B'_l
        self.register_buffer("run_max", torch.tensor(-math.inf, dtype=torch.float64))
        self.register_buffer("run_min", torch.tensor(math.inf, dtype=torch.float64))
        self.register_buffer("renewal", torch.tensor(1.0, dtype=torch.float64))  # 0: switched off

    @property
    def bits(self) -> int:
        """The current weight width ``B_w`` (eq 12)."""
        return int(width(self.bits_hat.detach(), self.bits_bound))

    def quantized_weight(self) -> Tensor:
        """``w_q = S_q * clip(round(w / S_q), q_min, q_max)`` (eq 6), differentiable in ``w``,
        ``S_q`` (A.9) and ``B^_w`` (eqs 19-20)."""
        b = width(self.bits_hat, self.bits_bound)
        qmax = qrange(int(b.detach()), True)[1]
        g = 1.0 / math.sqrt(self.weight.numel() * qmax)
        step = grad_scale(self.weight_step.abs().clamp_min(1e-12), g)
        return quantize(self.weight / step, b, signed=True, g=g, binary=True) * step

    @torch.no_grad()
    def init_step(self, iterations: int = 100) -> None:
        """Step by Algorithm 2 on the weights at the current width; records the width."""
        bits = self.bits
        qmin, qmax = qrange(bits, True)
        v_max, v_min = grid_search(self.weight, qmin, qmax, signed=True, iterations=iterations,
                                   binary=bits == 1)
        self.weight_step.fill_(max((v_max - v_min) / (qmax - qmin), 1e-8))
        self.recorded_bits.fill_(bits)

    @torch.no_grad()
    def observe(self, iterations: int = 100, power: float = 2.0) -> bool:
        """Algorithm 1 on the weights: renew ``S_q`` when the width changed. True when it fired."""
        bits = self.bits
        if bits == int(self.recorded_bits) or not bool(self.renewal):
            return False
        self.recorded_bits.fill_(bits)
        step = renew(self.weight, bits, float(self.weight_step.abs()), self.run_max, self.run_min, signed=True,
                     iterations=iterations, power=power, binary=bits == 1)
        self.weight_step.fill_(step)
        return True

    def serial_learnable(self) -> dict[str, Any]:
        return {"bits_bound": self.bits_bound}


@serializable
class AdaptiveSynapseConv2d(SynapseConv2d, LearnableWeights):
    """A conv synapse with learnable per-layer weight width and step (eq 6, eqs 12, 19-20, A.9)."""

    def __init__(self, *args: Any, bits_bound: int = 6, init_bits: float = 4.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_learnable(bits_bound, init_bits)

    def serial_config(self) -> dict[str, Any]:
        return {**super().serial_config(), **self.serial_learnable()}

    @classmethod
    def from_synapse(cls, syn: SynapseConv2d, bits_bound: int, init_bits: float) -> AdaptiveSynapseConv2d:
        config = syn.serial_config()
        new = cls(**config, bits_bound=bits_bound, init_bits=init_bits, dtype=syn.weight.dtype)
        new.load_state_dict(syn.state_dict(), strict=False)
        return new

    def forward(self, frames: Tensor) -> Tensor:
        from snnconvert.simulate.synapse import _add_frame_bias

        weight = self.quantized_weight()
        if self.bias is not None and self.frame_bias_gain.numel() == 1:  # one frame: the fused bias
            return self._conv_forward(frames, weight, self.bias * self.frame_bias_gain.to(self.bias.dtype))
        y = self._conv_forward(frames, weight, None)
        return _add_frame_bias(y, self.bias, self.frame_bias_gain) if self.bias is not None else y


@serializable
class AdaptiveSynapseLinear(SynapseLinear, LearnableWeights):
    """A linear synapse with learnable per-layer weight width and step."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, steps: int = 1,
                 bits_bound: int = 6, init_bits: float = 4.0, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias, steps=steps, dtype=dtype, device=device)
        self._init_learnable(bits_bound, init_bits)

    def serial_config(self) -> dict[str, Any]:
        return {**super().serial_config(), **self.serial_learnable()}

    @classmethod
    def from_synapse(cls, syn: SynapseLinear, bits_bound: int, init_bits: float) -> AdaptiveSynapseLinear:
        new = cls(syn.in_features, syn.out_features, syn.bias is not None, steps=syn.steps, bits_bound=bits_bound,
                  init_bits=init_bits, dtype=syn.weight.dtype)
        new.load_state_dict(syn.state_dict(), strict=False)
        return new

    def forward(self, frames: Tensor) -> Tensor:
        from snnconvert.simulate.synapse import _add_frame_bias

        y = torch.nn.functional.linear(frames, self.quantized_weight())
        return _add_frame_bias(y, self.bias, self.frame_bias_gain) if self.bias is not None else y
