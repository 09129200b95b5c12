"""Ternary self-amplifying (TSA) neuron of stepwise weighted spike coding (SWS paper, §3).

Dynamics, with spike amplitude theta = 1 (weights absorb the scales, eq 18)::

    u(t) = beta * u(t-1) + z(t) - a(t) * beta^Ts          (z(t) = 0 once the Tc inputs are in)
    a(t) = +1 if u >= beta^Ts / 2,  -1 if u < -beta^Ts / 2,  else 0     (only for t > Ts)

The neuron is silent for the first ``Ts`` steps and fires on the ``Tc`` steps after; spike k
(k = 1..Tc) carries the weight beta^(Tc-k) downstream, so the layer emits the signed-digit
expansion of its pre-activation, most significant digit first.

Clamp. The quantized ANN clamps its activation to [0, qmax] (ReLU and the top of the n-bit
range). The neuron realises that clamp by keeping, besides the membrane, the value it has
emitted so far, ``E = sum_j a_j beta^(Tc-j)``; a spike that would take ``E`` below 0 or above
``qmax`` is not fired (the membrane keeps the charge). The state per neuron is therefore the
membrane ``u``, the emitted value ``E`` and, for reports, a flag that the clamp held it.

With ``Ts >= Tc`` the neuron has all its input before it fires and ``E`` is exactly
``clamp(floor(V + 1/2), 0, qmax)`` of the pre-activation ``V`` (round half up): the SNN
reproduces the quantized ANN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from snnconvert.graph.modules import PadWithValues
from snnconvert.methods.rate.neuron import pool_property
from snnconvert.neurons.base import SpikingNeuron, time_chunks
from snnconvert.neurons.surrogates import Surrogate, get_surrogate, spike
from snnconvert.registry import serializable


def tsa_dynamics(
    inputs: Tensor,
    *,
    Ts: int,
    beta: float = 2.0,
    qmax: float | None = None,
    qmin: float | None = 0.0,
    threshold: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run a TSA layer on its ``Tc`` input frames ``inputs`` (Tc, B, ...).

    ``threshold`` is V_th in units of ``theta beta^Ts``: 1/2 (the paper's lowered threshold, §3.2)
    fires +1 at ``u >= beta^Ts / 2`` and -1 at ``u < -beta^Ts / 2``; another value ``h`` fires at
    ``u >= h beta^Ts`` and ``u < -h beta^Ts`` (1: the threshold not lowered, fig 5b's ablation).

    Returns ``(spikes, membrane, emitted)``: the Tc output frames in {-1, 0, 1}, the membrane
    after the last step and the decoded value each neuron emitted. ``qmin``/``qmax`` of None
    disable that side of the clamp (the input encoder is signed).

    Implementation: a spike is ``floor(u / beta^Ts + 1/2)`` (the same decision as comparing
    with +-beta^Ts / 2), clamped to ``[lower, upper]``: ``lower = -floor(min(E - qmin, w) / w)``
    and ``upper = floor(min(qmax - E, w) / w)`` where ``w`` is the spike's weight, and to
    [-1, 1] where a side has no bound. The loop keeps ``D = -E``. With an integer ``beta`` and
    ``qmin = 0``, ``E`` is a non-negative multiple of ``w``, so ``lower = sign(D)``; with
    an integer ``beta`` and ``qmax`` as well, ``E`` is an integer at most ``qmax``, so ``upper =
    clamp(D + qmax - w + 1, 0, 1)``. The top bound is skipped on the steps where the weights so
    far cannot reach ``qmax``. Eight or nine in-place tensor operations per step.
    """
    flat, chunks = time_chunks(inputs)
    spikes = torch.empty_like(flat)
    membrane = torch.zeros_like(flat[0])
    deficit = torch.zeros_like(membrane)  # -E
    lower = torch.empty_like(membrane[chunks[0]]) if chunks else membrane
    upper = torch.empty_like(lower)
    plan = _StepPlan.make(inputs.shape[0], Ts, float(beta), qmax, qmin, membrane, float(threshold))
    for cols in chunks:
        width = cols.stop - cols.start
        _tsa_steps(plan, flat[:, cols], spikes[:, cols], membrane[cols], deficit[cols], lower[:width],
                   upper[:width])
    emitted = deficit.neg_().add_(0.0)  # (+0.0, not -0.0, where nothing was emitted)
    return spikes.view(inputs.shape), membrane.view(inputs.shape[1:]), emitted.view(inputs.shape[1:])


@dataclass(frozen=True)
class _StepPlan:
    """What :func:`_tsa_steps` needs for every chunk, computed once per layer call. Constants
    enter the tensor operations as 0-d tensors of the membrane's dtype: a Python float costs a
    conversion per operation, as much as the arithmetic on a chunk."""

    Ts: int
    beta: float
    reset: float
    weights: list[float]
    qmin: float | None
    multiples: bool  # qmin = 0 and beta an integer: E is always a non-negative multiple of w
    half: Tensor
    beta_t: Tensor
    inverse: Tensor  # 1 / beta^Ts
    fused: bool  # 1 / beta^Ts is a power of two: u / beta^Ts + 1/2 in one operation, the same floats
    upper: list[Tensor | float | None]  # per step: D + upper[k] bounds the top (see tsa_dynamics), None: cannot bind
    integral: bool
    threshold: float  # V_th in units of beta^Ts (1/2: rounding, the floor path)

    @staticmethod
    def make(Tc: int, Ts: int, beta: float, qmax: float | None, qmin: float | None, like: Tensor,
             threshold: float = 0.5) -> _StepPlan:
        def const(x: float) -> Tensor:
            return torch.tensor(x, dtype=like.dtype, device=like.device)

        weights = [beta ** (Tc - k) for k in range(1, Tc + 1)]
        integral = beta.is_integer() and qmax is not None and float(qmax).is_integer() and (
            qmin is None or float(qmin).is_integer())
        upper: list[Tensor | float | None] = []
        for k, w in enumerate(weights, start=1):
            if qmax is None or sum(weights[:k]) <= qmax:  # the top of the range cannot bind yet
                upper.append(None)
            else:
                upper.append(const(qmax - w + 1.0) if integral else float(qmax))
        reset = beta ** Ts
        return _StepPlan(Ts, beta, reset, weights, qmin, qmin == 0 and beta.is_integer(), const(0.5),
                         const(beta), const(1.0 / reset), math.frexp(1.0 / reset)[0] == 0.5, upper, integral,
                         threshold)


def _tsa_steps(plan: _StepPlan, inputs: Tensor, spikes: Tensor, u: Tensor, deficit: Tensor, lower: Tensor,
               upper: Tensor) -> None:
    """The time loop of :func:`tsa_dynamics` on one chunk of neurons (the tensors are updated in
    place; ``deficit`` is minus the emitted value)."""
    Tc, Ts, beta, reset, qmin = inputs.shape[0], plan.Ts, plan.beta, plan.reset, plan.qmin
    for t in range(1, Ts + Tc + 1):
        if t <= Tc:
            torch.add(inputs[t - 1], u, alpha=beta, out=u)
        else:
            u.mul_(plan.beta_t)
        if t <= Ts:
            continue
        k = t - Ts
        w = plan.weights[k - 1]
        a = spikes[k - 1]
        if plan.threshold != 0.5:  # +1 at u >= h beta^Ts, -1 at u < -h beta^Ts
            torch.ge(u, plan.threshold * reset, out=a)
            a.sub_((u < -plan.threshold * reset).to(a.dtype))
        elif plan.fused:  # (a fused multiply-add may round differently where the product is inexact)
            torch.add(plan.half, u, alpha=1.0 / reset, out=a)
            a.floor_()
        else:
            torch.mul(u, plan.inverse, out=a).add_(plan.half)
            a.floor_()
        low = high = None
        if plan.multiples:
            low = torch.sign(deficit, out=lower)  # -1 where E > 0 (so E >= w), else 0
        elif qmin is not None:
            low = torch.add(deficit, qmin, out=lower).clamp_(min=-w).div_(w).ceil_()
        offset = plan.upper[k - 1]
        if offset is not None:
            if plan.integral:
                high = torch.add(deficit, offset, out=upper).clamp_(0.0, 1.0)
            else:
                high = torch.add(deficit, offset, out=upper).clamp_(max=w).div_(w).floor_()
        if low is not None and high is not None:  # low >= -1 and high <= 1: no [-1, 1] clamp needed
            a.clamp_(min=low, max=high)
        else:
            a.clamp_(-1.0, 1.0)
            if low is not None:
                a.clamp_(min=low)
            elif high is not None:
                a.clamp_(max=high)
        u.sub_(a, alpha=reset)
        deficit.sub_(a, alpha=w)


def tsa_dynamics_autograd(
    inputs: Tensor,
    *,
    Ts: int,
    beta: float = 2.0,
    qmax: float | None = None,
    qmin: float | None = 0.0,
    surrogate: Surrogate | str | None = "straight-through",
    threshold: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable :func:`tsa_dynamics`: the same operations out of place (the same values,
    bit for bit), with the ternary firing as a spike function of ``r = u / beta^Ts``
    (``surrogate=None``: the firing itself, no spike function; what the ONNX exporter traces).

    Its backward is ``surrogate`` at the two steps of ``clamp(floor(r + 1/2), -1, 1)``
    (``r = -1/2``: -1 -> 0, ``r = +1/2``: 0 -> 1), each counted only where the clamp of the
    emitted value leaves that step reachable (a neuron held at 0 by the ReLU side passes no
    gradient through its -1 step, one at ``qmax`` none through its +1 step). With
    ``straight-through`` the gradient is 1 for ``|r| <= 1`` (the ternary range) where unclamped.
    The clamp bounds come from the emitted value, which is not differentiated; the membrane
    and its reset keep their gradients (full BPTT).
    """
    grad = get_surrogate(surrogate) if surrogate is not None else None
    Tc = inputs.shape[0]
    beta = float(beta)
    reset = beta ** Ts
    inverse = 1.0 / reset
    weights = [beta ** (Tc - k) for k in range(1, Tc + 1)]
    multiples = qmin == 0 and beta.is_integer()
    u = torch.zeros_like(inputs[0])
    emitted = torch.zeros_like(u)
    spikes: list[Tensor] = []
    for t in range(1, Ts + Tc + 1):
        u = torch.add(inputs[t - 1], u, alpha=beta) if t <= Tc else u * beta
        if t <= Ts:
            continue
        k = t - Ts
        w = weights[k - 1]
        lower: Tensor | None = None
        upper: Tensor | None = None
        if multiples:
            lower = torch.clamp(emitted, max=w).div_(-w)
        elif qmin is not None:
            lower = torch.sub(emitted, qmin).clamp_(max=w).div_(w).floor_().neg_()
        if qmax is not None and sum(weights[:k]) > qmax:
            upper = torch.neg(emitted).add_(qmax).clamp_(max=w).div_(w).floor_()

        def fire(r: Tensor, lower: Tensor | None = lower, upper: Tensor | None = upper) -> Tensor:
            if threshold == 0.5:
                a = torch.add(r, 0.5).floor_().clamp_(-1.0, 1.0)
            else:
                a = (r >= threshold).to(r.dtype) - (r < -threshold).to(r.dtype)
            if lower is not None:
                a = torch.maximum(a, lower)
            if upper is not None:
                a = torch.minimum(a, upper)
            return a

        def slope(r: Tensor, lower: Tensor | None = lower, upper: Tensor | None = upper) -> Tensor:
            assert grad is not None
            down, up = grad.grad(r + threshold), grad.grad(r - threshold)
            if lower is not None:
                down = down * (lower <= -1.0)
            if upper is not None:
                up = up * (upper >= 1.0)
            return down + up

        ratio = u if reset == 1.0 else u * inverse
        a = fire(ratio) if grad is None else spike(ratio, fire, slope)
        u = torch.sub(u, a, alpha=reset)
        emitted = torch.add(emitted, a.detach(), alpha=w)
        spikes.append(a)
    return torch.stack(spikes) if spikes else torch.empty_like(inputs), u, emitted


def held_at_clamp(membrane: Tensor, emitted: Tensor, Ts: int, beta: float, qmax: float) -> Tensor:
    """Neurons whose output sits at a clamp bound with charge beyond it: emitted 0 with a
    residual below -1/2 (the ReLU held it) or emitted ``qmax`` with one above +1/2."""
    residual = membrane / float(beta) ** Ts
    return ((emitted <= 0) & (residual < -0.5)) | ((emitted >= qmax) & (residual > 0.5))


def residual_units(membrane: Tensor, Ts: int, beta: float) -> Tensor:
    """Residual after the last step in units of theta, scaled by 1/beta^Ts (SWS paper fig 5a)."""
    return membrane / float(beta) ** Ts


OFFSET_IN_TIME = "Tc-digit trains offset in time (SWS layers start Ts steps after their input)"


@serializable
class TSANeuron(SpikingNeuron):
    """A layer of TSA neurons (see module docstring); ``qmax`` is 2^n - 1 of the n-bit ANN."""

    unit_spikes = True
    serial_params = ("Tc", "Ts", "beta", "qmax", "residual_bins", "residual_range", "surrogate", "threshold")

    def __init__(self, Tc: int, Ts: int, beta: float = 2.0, qmax: float = 255.0,
                 residual_bins: int = 800, residual_range: float = 4.0,
                 surrogate: str = "straight-through", threshold: float = 0.5) -> None:
        super().__init__(Tc, Tc)
        self.Tc, self.Ts, self.beta, self.qmax = int(Tc), int(Ts), float(beta), float(qmax)
        if not (isinstance(threshold, (int, float)) and 0.0 < float(threshold) <= 1.0):
            raise ValueError(f"threshold must be in (0, 1] (units of theta beta^Ts), not {threshold!r}")
        self.threshold = float(threshold)  # V_th / (theta beta^Ts): 1/2 lowered (the paper), 1 not (fig 5b)
        self.residual_range = float(residual_range)
        self.surrogate = get_surrogate(surrogate).spec
        self.register_stat("residual_hist", residual_bins)
        self.register_stat("clamped_count")

    @property
    def residual_bins(self) -> int:
        return self.residual_hist.numel()

    def serial_config(self) -> dict:
        config = {p: getattr(self, p) for p in self.serial_params}
        if self.threshold == 0.5:  # the paper's: artifacts read as before
            del config["threshold"]
        return config

    def dynamics(self, inputs: Tensor) -> Tensor:
        if self.needs_grad(inputs):
            spikes, membrane, emitted = tsa_dynamics_autograd(inputs, Ts=self.Ts, beta=self.beta, qmax=self.qmax,
                                                              surrogate=self.surrogate, threshold=self.threshold)
        else:
            spikes, membrane, emitted = tsa_dynamics(inputs, Ts=self.Ts, beta=self.beta, qmax=self.qmax,
                                                     threshold=self.threshold)
        if self.recording and self.recording_detail:
            with torch.no_grad():
                clamped = held_at_clamp(membrane, emitted, self.Ts, self.beta, self.qmax)
                residual = residual_units(membrane, self.Ts, self.beta).masked_fill_(clamped, float("inf"))
                self.residual_hist += torch.histc(  # histc skips the clamped (infinite) entries
                    residual, bins=self.residual_hist.numel(), min=-self.residual_range, max=self.residual_range
                ).double()
                self.clamped_count += clamped.sum()
        return spikes

    def export_dynamics(self, inputs: Tensor) -> Tensor:
        return tsa_dynamics_autograd(inputs, Ts=self.Ts, beta=self.beta, qmax=self.qmax, surrogate=None,
                                     threshold=self.threshold)[0]

    def step_refusal(self) -> str | None:
        return OFFSET_IN_TIME

    def extra_repr(self) -> str:
        lowered = "" if self.threshold == 0.5 else f", threshold={self.threshold:g}"
        return f"Tc={self.Tc}, Ts={self.Ts}, beta={self.beta}, qmax={self.qmax:g}{lowered}"


@serializable
class SWSEncoder(SpikingNeuron):
    """Input layer of an SWS network: image -> Tc signed-digit frames of ``Q - Z``.

    ``Q`` is the n-bit integer the quantized ANN's input quantizer gives each pixel and ``Z``
    its zero point, so a spike train decodes to the value the ANN computes with and zero padding
    downstream is exact. The encoder is a TSA neuron (Ts = 0, no clamp) that receives the whole
    integer as one pulse at the first step. (The constant current of eq 9 with Ts = 0 misencodes
    126 of the 511 integers in [-255, 255] at Tc = 8; a single pulse encodes all of them.)
    """

    unit_spikes = True
    serial_params = ("Tc", "beta", "channels", "qmax", "padding", "pad_channels", "surrogate")

    def __init__(self, Tc: int, beta: float = 2.0, channels: int = 1, qmax: int = 255,
                 padding: tuple[int, int, int, int] | None = None, pad_channels: int = 0,
                 surrogate: str = "straight-through") -> None:
        super().__init__(1, Tc)
        self.Tc, self.beta, self.qmax = int(Tc), float(beta), int(qmax)
        self.surrogate = get_surrogate(surrogate).spec
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("zero_point", torch.zeros(channels))
        self.pad = PadWithValues(padding, torch.zeros(pad_channels)) if padding is not None else None

    @property
    def channels(self) -> int:
        return self.scale.numel()

    @property
    def padding(self) -> tuple[int, int, int, int] | None:
        return self.pad.padding if self.pad is not None else None

    @property
    def pad_channels(self) -> int:
        return self.pad.values.numel() if self.pad is not None else 0

    def integers(self, images: Tensor) -> Tensor:
        """``Q - Z`` of every pixel, as the quantized ANN's input quantizer computes it. A border
        (the folded normalization's pad with the mean) is added before quantizing, exactly as the
        quantized ANN's input stage sees it."""
        if self.pad is not None:
            images = self.pad(images)
        shape = (1, -1) + (1,) * (images.dim() - 2) if self.scale.numel() > 1 else ()
        scale = self.scale.to(images.dtype).reshape(shape)
        zero = self.zero_point.to(images.dtype).reshape(shape)
        q = torch.clamp(torch.floor(images / scale + 0.5) + zero, 0, self.qmax)
        return q - zero

    def forward(self, images: Tensor) -> Tensor:
        return super().forward(images)

    def _pulses(self, images: Tensor) -> Tensor:
        """The whole integer ``Q - Z`` of every pixel as one pulse at the first of Tc steps."""
        values = self.integers(images)
        first = (values / self.beta ** (self.Tc - 1)).unsqueeze(0)
        return torch.cat([first, torch.zeros_like(first).expand(self.Tc - 1, *values.shape)])

    def export_dynamics(self, inputs: Tensor) -> Tensor:
        return tsa_dynamics_autograd(self._pulses(inputs[0]), Ts=0, beta=self.beta, qmax=None, qmin=None,
                                     surrogate=None)[0]

    def step_refusal(self) -> str | None:
        return "an encoder whose frames change from step to step"

    def dynamics(self, inputs: Tensor) -> Tensor:
        pulses = self._pulses(inputs[0])
        if pulses.requires_grad and torch.is_grad_enabled():  # (the input quantization's floor passes none)
            spikes, _, _ = tsa_dynamics_autograd(pulses, Ts=0, beta=self.beta, qmax=None, qmin=None,
                                                 surrogate=self.surrogate)
        else:
            spikes, _, _ = tsa_dynamics(pulses, Ts=0, beta=self.beta, qmax=None, qmin=None)
        return spikes

    def extra_repr(self) -> str:
        return f"Tc={self.Tc}, beta={self.beta}, qmax={self.qmax}"


@serializable
class SWSMaxPoolNeuron(SpikingNeuron):
    """Max-pooling of SWS spike trains by a TSA neuron on the running maximum.

    Each input train's running decoded value ``D(t) = beta * D(t-1) + s(t)`` is max-pooled into
    ``M(t)``, and the TSA neuron receives ``z(t) = M(t) - beta * M(t-1)``, whose stepwise-weighted
    sum is exactly ``max_i Q_i``. With ``Ts >= Tc`` the output equals the quantized ANN's
    max-pool; the layer adds ``Ts`` to the latency like any TSA layer.
    """

    unit_spikes = True
    pools = True
    serial_params = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "Tc", "Ts", "beta", "qmax",
                     "surrogate")
    kernel_size = pool_property("kernel_size")
    stride = pool_property("stride")
    padding = pool_property("padding")
    dilation = pool_property("dilation")
    ceil_mode = pool_property("ceil_mode")

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode: bool,
                 Tc: int, Ts: int, beta: float = 2.0, qmax: float = 255.0,
                 surrogate: str = "straight-through") -> None:
        super().__init__(Tc, Tc)
        self.pool = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                         dilation=dilation, ceil_mode=bool(ceil_mode))
        self.Tc, self.Ts, self.beta, self.qmax = int(Tc), int(Ts), float(beta), float(qmax)
        self.surrogate = get_surrogate(surrogate).spec

    def increments(self, inputs: Tensor) -> Tensor:
        """``z(t) = M(t) - beta * M(t-1)`` of the running maxima of the Tc input frames."""
        running = torch.zeros_like(inputs[0])
        previous: Tensor | None = None
        increments = []
        for t in range(self.Tc):
            running = running * self.beta + inputs[t]
            pooled = torch.nn.functional.max_pool2d(running, **self.pool)
            increments.append(pooled if previous is None else pooled - self.beta * previous)
            previous = pooled
        return torch.stack(increments)

    def dynamics(self, inputs: Tensor) -> Tensor:
        increments = self.increments(inputs)
        if self.needs_grad(inputs):
            spikes, _, _ = tsa_dynamics_autograd(increments, Ts=self.Ts, beta=self.beta, qmax=self.qmax,
                                                 surrogate=self.surrogate)
        else:
            spikes, _, _ = tsa_dynamics(increments, Ts=self.Ts, beta=self.beta, qmax=self.qmax)
        return spikes

    def export_dynamics(self, inputs: Tensor) -> Tensor:
        return tsa_dynamics_autograd(self.increments(inputs), Ts=self.Ts, beta=self.beta, qmax=self.qmax,
                                     surrogate=None)[0]

    def step_refusal(self) -> str | None:
        return OFFSET_IN_TIME

    def extra_repr(self) -> str:
        return f"Tc={self.Tc}, Ts={self.Ts}, pool={self.pool}"
