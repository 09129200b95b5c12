"""Integrate-and-fire (IF) neurons with soft reset, and max-pooling of rate-coded spike trains.

IF dynamics (M-LIF paper, eqs 1-2 with leak beta = 1, in units where the threshold theta = 1;
the layer's real threshold is folded into the weights)::

    u[0] = u0                                  (u0 = 1/2 with half_init, else 0)
    u[t] = u[t-1] + z[t] - o[t-1]              (reset by subtraction, "soft reset")
    o[t] = 1 if u[t] >= 1 else 0               (at most one spike per step)

With ``reset="zero"`` (hard reset, the NIR ``IF`` of a ``v_reset = 0``) a spike sets the
membrane to 0 instead, ``u[t] = (u[t-1] + z[t]) * (1 - o[t])``: the charge above threshold is
lost (the counts below then no longer hold; the rate is biased down by the lost residues), but
the neuron is the one NIR consumers (norse, SpikingJelly) simulate.

(Eq 1 subtracts the reset one step later; subtracting right after the spike is the same
recursion. The comparison is inclusive, eq 2 writes ``>``: with ``>=`` the count formula below
holds exactly, ties rounding up.) The membrane has no lower bound: negative charge is kept.

For a constant input ``z`` in [0, 1] the spike count after ``T`` steps is exactly
``N(T) = floor(T * z + u0)``: with ``u0 = 0`` the decoded rate ``N/T`` truncates ``z`` (biased
down by 1/(2T) on average), with ``u0 = 1/2`` it rounds ``z`` to the nearest multiple of
``1/T`` (unbiased). Inputs above 1 saturate at one spike per step (the decoded value is clipped
at theta, which realises the clip of a bounded ReLU or a percentile threshold); negative net
input never fires (ReLU).

Max-pooling (:class:`RateMaxPool`): the pool of the running sums. Each input train's running
sum ``S_i[t] = sum_{k<=t} x_i[k]`` is max-pooled into ``M[t]`` and the layer emits the
increments ``M[t] - M[t-1]``. Because every ``S_i`` grows by at most 1 per step for binary
spikes, ``M`` does too, so the output is again a binary spike train; its sum over the T steps is
exactly ``max_i S_i[T]``: the decoded output equals the max-pool of the decoded inputs at every
T (and for analog inputs, e.g. pooling the constant input frames, the same identity holds).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from snnconvert.errors import option_ref
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.methods.rate.config import LEAK_ORDERS, RESETS, RateConfig
from snnconvert.neurons.base import (
    NIR_NEURON_READERS,
    NirNeuron,
    NirNeuronReader,
    SpikingNeuron,
    StepState,
    time_chunks,
)
from snnconvert.neurons.surrogates import Surrogate, get_surrogate, spike
from snnconvert.options import opt
from snnconvert.registry import serializable


def if_dynamics(inputs: Tensor, *, init: float = 0.5, threshold: float = 1.0,
                membrane: Tensor | None = None, reset: str = "subtract") -> tuple[Tensor, Tensor]:
    """Run a layer of soft-reset IF neurons on its input frames ``inputs`` (T, B, ...).

    Returns ``(spikes, membrane)``: the T output frames in {0, 1} (dtype of ``inputs``) and the
    membrane after the last step. ``init`` is the initial membrane, in the units of
    ``threshold`` (0.5 = theta/2 for the normalised threshold 1). ``membrane`` (B, ...), when
    given, is the state to continue from instead (a previous call's membrane: running the steps
    in two calls gives the same floats as one call); it is updated in place. ``reset``:
    ``"subtract"`` (soft) or ``"zero"`` (hard: a spike sets the membrane to 0).
    """
    hard = _hard(reset)
    flat, chunks = time_chunks(inputs)
    spikes = torch.empty_like(flat)
    if membrane is None:
        membrane = torch.full(flat.shape[1:], float(init), dtype=inputs.dtype, device=inputs.device)
    else:
        membrane = membrane.reshape(flat.shape[1:])
    for cols in chunks:
        u, z, out = membrane[cols], flat[:, cols], spikes[:, cols]
        for t in range(flat.shape[0]):
            u.add_(z[t])
            torch.ge(u, threshold, out=out[t])  # written straight into the output frame as 0/1
            if hard:
                u.masked_fill_(out[t].bool(), 0.0)
            else:
                u.sub_(out[t], alpha=threshold)
    return spikes.view(inputs.shape), membrane.view(inputs.shape[1:])


def if_dynamics_autograd(
    inputs: Tensor,
    *,
    init: float = 0.5,
    threshold: float | Tensor = 1.0,
    leak: float | Tensor = 1.0,
    surrogate: Surrogate | str = "triangular:1.0",
    order: str = "mlif",
    reset: str = "subtract",
) -> tuple[Tensor, Tensor]:
    """Differentiable :func:`if_dynamics` (bit-identical for ``leak = 1`` and equal thresholds).

    ``order="dtss"`` runs the DTSS paper's eqs 1-2 instead: ``H[t] = leak * U[t-1] + z[t]``,
    ``o[t] = [H[t] > theta]`` (strict), ``U[t] = H[t] - theta * o[t]``: the reset is applied
    before the leak (so it leaks too) and a membrane exactly at threshold does not fire.

    The firing ``o = [u/theta >= 1]`` is a spike function whose backward is ``surrogate`` at
    ``u/theta - 1``. ``reset="zero"``: a spike sets the membrane to 0 (``u * (1 - o)``, the
    gradient flows through the kept membrane). ``threshold`` / ``leak`` may be tensors
    broadcasting over a (B, ...) frame.
    Eq 1 of the M-LIF paper with a leak: ``u[t] = leak * u[t-1] - theta * o[t-1] + z[t]`` (the
    reset is not leaked; ``u[-1] = init * theta``), evaluated in the fast path's order so that
    ``leak = 1`` gives the same floats. Full BPTT: the reset keeps its gradient.
    """
    grad = get_surrogate(surrogate)
    scaled = isinstance(threshold, Tensor) or threshold != 1.0
    leaky = isinstance(leak, Tensor) or leak != 1.0
    if order not in LEAK_ORDERS:
        raise ValueError(f"order must be one of {LEAK_ORDERS}, not {order!r}")
    paper = order == "dtss"
    hard = _hard(reset)

    def _reset(u: Tensor, o: Tensor, theta: float | Tensor) -> Tensor:
        return u * (1.0 - o) if hard else _subtract(u, o, theta)

    def fire(ratio: Tensor) -> Tensor:
        return (torch.gt(ratio, 1.0) if paper else torch.ge(ratio, 1.0)).to(ratio.dtype)

    def slope(ratio: Tensor) -> Tensor:
        return grad.grad(ratio - 1.0)

    u = torch.full(inputs.shape[1:], float(init), dtype=inputs.dtype, device=inputs.device)
    if scaled:
        u = u * threshold
    spikes: list[Tensor] = []
    for t in range(inputs.shape[0]):  # u holds the membrane before its reset
        if paper and spikes:  # eq 2 then eq 1: U = H - O, then the leak
            u = _reset(u, spikes[-1], threshold)
        if leaky:
            u = u * leak
        if spikes and not paper:
            u = _reset(u, spikes[-1], threshold)
        u = u + inputs[t]
        spikes.append(spike(u / threshold if scaled else u, fire, slope))
    if spikes:
        u = _reset(u, spikes[-1], threshold)
    return (torch.stack(spikes) if spikes else torch.empty_like(inputs)), u


def _hard(reset: str) -> bool:
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, not {reset!r}")
    return reset == "zero"


def _subtract(u: Tensor, o: Tensor, threshold: float | Tensor) -> Tensor:
    """Reset by subtraction, ``u - theta * o``."""
    return u - o * threshold if isinstance(threshold, Tensor) else torch.sub(u, o, alpha=threshold)


def pool_property(key: str) -> property:
    """Read-only attribute ``key`` of a module's ``pool`` dict (so ``serial_params`` can name it)."""
    return property(lambda self: self.pool[key], doc=f"``pool[{key!r}]``")


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def window_max(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               differentiable: bool = False) -> Tensor:
    """``F.max_pool2d`` of ``x`` (N, C, H, W) as a running ``torch.maximum`` over the kernel's
    strided views: the same values (max is exact), several times faster than the CPU pooling
    kernel on the many small planes of time-folded frames."""
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(stride if stride not in (None, [], ()) else kernel_size)
    sizes = []
    for size, k, s, p, d in ((x.shape[-2], kh, sh, ph, dh), (x.shape[-1], kw, sw, pw, dw)):
        span = size + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside
            out -= 1
        sizes.append((out, max(0, (out - 1) * s + d * (k - 1) + 1 - (size + 2 * p))))
    (ho, extra_h), (wo, extra_w) = sizes
    if ph or pw or extra_h or extra_w:
        x = F.pad(x, (pw, pw + extra_w, ph, ph + extra_h), value=-math.inf)
    result: Tensor | None = None
    for i in range(kh):
        for j in range(kw):
            view = x[..., i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw]
            if differentiable:  # out-of-place: the same values, with autograd's max gradient
                result = view if result is None else torch.maximum(result, view)
            else:
                result = view.clone() if result is None else torch.maximum(result, view, out=result)
    return result


def running_max_pool(inputs: Tensor, pool: dict, differentiable: bool = False) -> Tensor:
    """Increments of the max-pooled running sums of ``inputs`` (T, B, C, H, W): see module doc.
    ``differentiable``: out-of-place ops (the same values) that autograd can differentiate."""
    if differentiable:
        running = [inputs[0]]
        for t in range(1, inputs.shape[0]):
            running.append(running[-1] + inputs[t])
        sums_t = torch.stack(running)
        steps, batch = sums_t.shape[:2]
        pooled_t = window_max(sums_t.reshape(steps * batch, *sums_t.shape[2:]), **pool, differentiable=True)
        pooled_t = pooled_t.reshape(steps, batch, *pooled_t.shape[1:])
        return torch.cat([pooled_t[:1], pooled_t[1:] - pooled_t[:-1]])
    return running_max_pool_chunk(inputs, pool, None)[0]  # all steps as one chunk


def running_max_pool_chunk(inputs: Tensor, pool: dict,
                           carry: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`running_max_pool` (no autograd) of one time chunk ``inputs`` (k, B, C, H, W) that
    continues from ``carry``: the running sums (B, C, H, W) and the pooled maximum (B, C, Ho, Wo)
    after the previous chunk (None for the first). Returns the output increments and the new
    carry. The additions and differences are those of one call, so the floats are the same."""
    sums = inputs.clone(memory_format=torch.contiguous_format)
    if carry is not None:
        sums[0].add_(carry[0])
    flat, chunks = time_chunks(sums)
    for cols in chunks:
        running = flat[:, cols]
        for t in range(1, flat.shape[0]):
            running[t].add_(running[t - 1])
    steps, batch = sums.shape[:2]
    pooled = window_max(sums.reshape(steps * batch, *sums.shape[2:]), **pool)
    pooled = pooled.reshape(steps, batch, *pooled.shape[1:])
    out = torch.empty_like(pooled)
    if carry is None:
        out[0] = pooled[0]
    else:
        torch.sub(pooled[0], carry[1], out=out[0])
    torch.sub(pooled[1:], pooled[:-1], out=out[1:])
    return out, sums[-1].clone(), pooled[-1].clone()


@serializable
class IFNeuron(SpikingNeuron):
    """A layer of soft-reset integrate-and-fire neurons with threshold 1 (see module docstring).

    ``init`` is the initial membrane (0.5 = theta/2 with ``half_init``). With ``recording`` on,
    the layer also counts neurons whose final membrane is still at or above 1 (saturated: their
    input exceeded the threshold, so the SNN clipped them).

    Training: ``surrogate`` (default eq 4 with gamma = 1) drives the backward pass;
    ``learn_threshold`` / ``learn_leak`` add ``threshold`` (init 1) and ``leak`` (init 1: IF has
    no leak) parameters, per layer or ``channels`` entries (see :func:`if_dynamics_autograd`).
    """

    unit_spikes = True
    serial_params = ("T", "init", "surrogate", "learn_threshold", "learn_leak", "channels", "order", "reset")

    def __init__(self, T: int, init: float = 0.5, surrogate: str = "triangular:1.0",
                 learn_threshold: bool = False, learn_leak: bool = False, channels: int = 1,
                 order: str = "mlif", reset: str = "subtract") -> None:
        super().__init__(T, T)
        self.T, self.init = int(T), float(init)
        if order not in LEAK_ORDERS:
            raise ValueError(f"order must be one of {LEAK_ORDERS}, not {order!r}")
        self.order = order  # leak/reset order: "mlif" or "dtss" (DTSS paper eqs 1-2)
        _hard(reset)
        self.reset = reset  # "subtract" (soft) or "zero" (hard)
        self.surrogate = get_surrogate(surrogate).spec
        self.register_stat("saturated_count")
        self.init_learnable(learn_threshold, learn_leak, channels, 1.0)
        self.register_buffer("chunk_state_membrane", None, persistent=False)  # between time chunks

    @property
    def supports_chunks(self) -> bool:
        return self.threshold is None and self.leak is None and self.order == "mlif"

    def dynamics(self, inputs: Tensor) -> Tensor:
        window = self.time_window
        last = window is None or window[1] >= self.T
        if window is not None:  # one time chunk: continue from the membrane the previous chunk left
            carried = None if window[0] == 0 else self.chunk_state_membrane
            spikes, membrane = if_dynamics(inputs, init=self.init, membrane=carried, reset=self.reset)
            self._buffers["chunk_state_membrane"] = None if last else membrane
        elif self.supports_chunks and not self.needs_grad(inputs):
            spikes, membrane = if_dynamics(inputs, init=self.init, reset=self.reset)
        else:
            spikes, membrane = self._differentiable(inputs)
        if self.recording and last:
            with torch.no_grad():
                self.saturated_count += (membrane >= 1.0).sum()
        return spikes

    def _differentiable(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Spikes and final membrane (threshold units) by :func:`if_dynamics_autograd`."""
        dims = inputs.dim() - 1
        theta, leak = self.per_channel(self.threshold, dims), self.per_channel(self.leak, dims)
        spikes, membrane = if_dynamics_autograd(
            inputs, init=self.init, threshold=1.0 if theta is None else theta.to(inputs.dtype),
            leak=1.0 if leak is None else leak.to(inputs.dtype), surrogate=self.surrogate, order=self.order,
            reset=self.reset,
        )
        return spikes, membrane if theta is None else membrane / theta.to(inputs.dtype)

    def export_dynamics(self, inputs: Tensor) -> Tensor:
        """The differentiable path (out of place; the fast path writes with ``out=``)."""
        return self._differentiable(inputs)[0]

    def step_states(self) -> tuple[StepState, ...]:
        return (StepState("membrane", self.init),)

    def step_refusal(self) -> str | None:
        if self.threshold is not None or self.leak is not None:
            return "a learned threshold or leak"
        return None if self.order == "mlif" else "dtss order"

    def step(self, frame: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """u += z; s = [u >= 1]; u -= s, or u *= 1 - s with the hard reset (threshold units)."""
        u = state["membrane"] + frame
        spikes = (u >= 1.0).to(frame.dtype)
        return spikes, {"membrane": u * (1.0 - spikes) if self.reset == "zero" else u - spikes}

    def make_trainable(self, *, learn_threshold: bool, learn_leak: bool, channels: Callable[[], int] | None,
                       dtype: torch.dtype, device: torch.device) -> None:
        """Threshold (init 1) and leak (init 1: IF has none), per layer or per channel."""
        self.add_threshold_leak(learn_threshold=learn_threshold, learn_leak=learn_leak, channels=channels,
                                dtype=dtype, device=device, leak=1.0)

    def reset_threshold(self, theta: float, *, trainable: bool, dtype: torch.dtype, device: torch.device) -> bool:
        return self.reset_learned_threshold(theta, trainable=trainable, dtype=dtype, device=device)

    has_membrane = True

    def membrane_run(self, inputs: Tensor, clip: float | None) -> tuple[Tensor, Tensor]:
        """IF dynamics (soft reset, init, optional leak and threshold) with the clip."""
        dims = inputs.dim() - 1
        theta = self.per_channel(self.threshold.detach(), dims) if self.threshold is not None else 1.0
        leak = self.per_channel(self.leak.detach(), dims) if self.leak is not None else 1.0
        u = torch.full(inputs.shape[1:], self.init, dtype=inputs.dtype, device=inputs.device) * theta
        spikes, first = [], u
        for t in range(inputs.shape[0]):
            u = u * leak + inputs[t]
            s = (u / theta >= 1.0).to(inputs.dtype)
            u = u * (1.0 - s) if self.reset == "zero" else u - s * theta
            if clip is not None:
                u = torch.maximum(u, torch.as_tensor(clip, dtype=u.dtype) * theta)
            spikes.append(s)
            if t == 0:
                first = u / theta
        return torch.stack(spikes), first

    def to_nir(self, shape: tuple[int, ...], *, dt: float, fold_input: bool,
               reset: str = "zero") -> NirNeuron | None:
        """``nir.IF`` (``r = 1/dt``: the membrane adds the input once per step; reset to
        ``v_reset = 0``, or by subtracting the threshold in a file whose ``reset`` is
        ``"subtract"``), or ``nir.LIF`` for a learned leak below 1: ``tau = dt / (1 - leak)``
        with ``r = 1`` and the input scaled by ``1/(1 - leak)`` in the synapse before it (or
        ``r = tau/dt`` where it cannot be), so that a consumer's ``v += dt/tau (r I - v)`` is the
        simulator's ``u = leak u + I``. Thresholds per neuron (learned ones per channel); a layer
        whose reset is not the file's lists it among its differences."""
        import nir
        import numpy as np

        def per_neuron(param: Tensor | None, default: float) -> np.ndarray:
            value = torch.full(shape, default, dtype=torch.float64)
            if param is not None:
                view = param.detach().double().reshape((-1,) + (1,) * (len(shape) - 1)) if param.numel() > 1 \
                    else param.detach().double().reshape(())
                value = value * 0 + view
            return value.numpy()

        differences, fixes = [], []
        if self.reset != reset:
            differences.append("reset by subtraction" if self.reset == "subtract" else "reset to zero")
            fixes.append(f"{opt(RateConfig, 'reset', assign=True)}{reset}")
        if self.init != 0.0:
            differences.append(f"start at {self.init:g} x threshold")
            fixes.append(option_ref("half_init=False", "--no-half-init"))
        if self.order != "mlif" and self.leak is not None:
            differences.append("leak the reset too (dtss order)")
        fix = f"convert with {' '.join(fixes)}" if fixes else ""
        meta = {"snnconvert": "IFNeuron", "reset": self.reset, "init": self.init, "T": self.T, "dt": dt}
        f32 = np.float32
        threshold = per_neuron(self.threshold, 1.0).astype(f32)
        zeros = np.zeros(shape, f32)
        leak = per_neuron(self.leak, 1.0) if self.leak is not None else None
        if leak is None or np.all(leak == 1.0):
            return NirNeuron(nir.IF(r=np.full(shape, 1.0 / dt, f32), v_threshold=threshold, v_reset=zeros,
                                    metadata=meta), differences=tuple(differences), fix=fix)
        if np.any(leak > 1.0) or np.any(leak <= 0.0):
            bad = leak[(leak > 1.0) | (leak <= 0.0)]
            return NirNeuron(None, refusal=f"learned leak {float(bad.flat[0]):.6g} outside (0, 1] (a NIR LIF "
                                           "decays its membrane; a leak above 1 would grow it: fine-tune with "
                                           f"{opt(FinetuneConfig, 'leak_max', assign=True)}1)")
        if np.any(leak == 1.0):
            return NirNeuron(None, refusal="learned leak exactly 1 in some channels and below 1 in others "
                                           "(NIR has no node that is IF in some channels and LIF in others; "
                                           f"fine-tune with {opt(FinetuneConfig, 'leak_max', assign=True)}0.999)")
        tau = dt / (1.0 - leak)
        gain = 1.0 / (1.0 - leak)  # consumer input term dt/tau * r * I = (1 - leak) * r * I
        if fold_input:
            scale = (1.0 / (1.0 - self.leak.detach().double())).reshape(-1)  # one entry, or one per channel
            return NirNeuron(nir.LIF(tau=tau.astype(f32), r=np.ones(shape, f32), v_leak=zeros,
                                     v_threshold=threshold, v_reset=zeros, metadata=meta),
                             input_scale=scale, differences=tuple(differences), fix=fix)
        return NirNeuron(nir.LIF(tau=tau.astype(f32), r=gain.astype(f32), v_leak=zeros, v_threshold=threshold,
                                 v_reset=zeros, metadata=meta), differences=tuple(differences), fix=fix)

    def extra_repr(self) -> str:
        reset = "" if self.reset == "subtract" else f", reset={self.reset}"
        return f"T={self.T}, init={self.init:g}, surrogate={self.surrogate!r}{reset}"


def nir_neuron(T: int, *, reset: str, init: float, leak: Tensor | None) -> IFNeuron:
    """The IF neuron of a NIR ``IF`` / ``LIF`` node (:class:`~snnconvert.neurons.base.NirNeuronReader`):
    an imported leak is a constant of the model (not trained by ``learn_leak``)."""
    if leak is None:
        return IFNeuron(T, init=init, reset=reset)
    neuron = IFNeuron(T, init=init, reset=reset, learn_leak=True, channels=leak.numel())
    with torch.no_grad():
        neuron.leak.copy_(leak.to(neuron.leak.dtype))
    neuron.leak.requires_grad_(False)
    return neuron


NIR_NEURON_READERS.register("IF", NirNeuronReader(nir_neuron, RESETS, "IFNeuron"))


@serializable
class CurrentIFNeuron(IFNeuron):
    """An IF / LIF layer fed through a first-order synaptic current (NIR's ``CubaLIF``): each
    step ``I = current_decay * I + x`` (``I`` starts at 0), then the membrane of
    :class:`IFNeuron` integrates ``I`` instead of ``x``. ``current_decay`` (one entry, or one per
    channel; ``1 - dt/tau_syn``) is a constant of the model. Runs whole (no time chunks)."""

    serial_params = (*IFNeuron.serial_params, "current_channels")

    def __init__(self, T: int, init: float = 0.0, surrogate: str = "triangular:1.0",
                 learn_threshold: bool = False, learn_leak: bool = False, channels: int = 1,
                 order: str = "mlif", reset: str = "zero", current_channels: int = 1) -> None:
        super().__init__(T, init, surrogate, learn_threshold, learn_leak, channels, order, reset)
        self.register_buffer("current_decay", torch.zeros(int(current_channels)))

    @property
    def current_channels(self) -> int:
        return self.current_decay.numel()

    @property
    def supports_chunks(self) -> bool:
        return False

    def current(self, inputs: Tensor) -> Tensor:
        """The synaptic current of every step, ``(T, B, ...)`` (out of place: autograd and ONNX)."""
        decay = self.per_channel(self.current_decay, inputs.dim() - 1)
        decay = decay.to(inputs.dtype)
        steps, value = [], torch.zeros_like(inputs[0])
        for t in range(inputs.shape[0]):
            value = value * decay + inputs[t]
            steps.append(value)
        return torch.stack(steps)

    def dynamics(self, inputs: Tensor) -> Tensor:
        return super().dynamics(self.current(inputs))

    def export_dynamics(self, inputs: Tensor) -> Tensor:
        return super().export_dynamics(self.current(inputs))

    def step_refusal(self) -> str | None:
        return "a synaptic current (CubaLIF)"

    def membrane_run(self, inputs: Tensor, clip: float | None) -> tuple[Tensor, Tensor]:
        return super().membrane_run(self.current(inputs), clip)

    def to_nir(self, shape: tuple[int, ...], *, dt: float, fold_input: bool,
               reset: str = "zero") -> NirNeuron | None:
        """``nir.CubaLIF``: ``tau_syn = dt / (1 - current_decay)``, ``tau_mem = dt / (1 - leak)``,
        ``w_in = 1``, the input scaled by ``1 / ((1 - current_decay)(1 - leak))`` in the synapse
        before it (or ``r`` where it cannot be), so that a consumer's Euler steps
        ``I += dt/tau_syn (w_in x - I)``, ``v += dt/tau_mem (r I - v)`` are the simulator's."""
        import nir
        import numpy as np

        spec = super().to_nir(shape, dt=dt, fold_input=False, reset=reset)
        if spec is None or spec.refusal is not None:
            return spec
        if not isinstance(spec.node, nir.LIF):
            return NirNeuron(None, refusal="a synaptic current into a membrane without leak (NIR's CubaLIF "
                                           "always leaks its membrane)")
        def per_neuron(value: Tensor) -> np.ndarray:  # one entry or one per channel, on every neuron
            value = value.detach().double()
            view = value.reshape((-1,) + (1,) * (len(shape) - 1)) if value.numel() > 1 else value.reshape(())
            return (torch.zeros(shape, dtype=torch.float64) + view).numpy()

        a = self.current_decay.detach().double()
        decay = per_neuron(a)
        if np.any(decay < 0.0) or np.any(decay >= 1.0):  # 0: tau_syn = dt, what the reader takes at the edge
            bad = decay[(decay < 0.0) | (decay >= 1.0)]
            return NirNeuron(None, refusal=f"synaptic current decay {float(bad.flat[0]):.6g} outside [0, 1)")
        lif = spec.node
        tau_syn = (dt / (1.0 - decay)).astype(np.float32)
        membrane_leak = per_neuron(self.leak)
        meta = {**lif.metadata, "snnconvert": "CurrentIFNeuron"}
        gain = 1.0 / ((1.0 - decay) * (1.0 - membrane_leak))
        if fold_input:  # one entry, or one per channel
            scale = 1.0 / ((1.0 - a) * (1.0 - self.leak.detach().double().reshape(-1)))
            return NirNeuron(nir.CubaLIF(tau_syn=tau_syn, tau_mem=lif.tau, r=np.ones(shape, np.float32),
                                         v_leak=lif.v_leak, v_threshold=lif.v_threshold, v_reset=lif.v_reset,
                                         w_in=np.ones(shape, np.float32), metadata=meta),
                             input_scale=scale, differences=spec.differences, fix=spec.fix)
        return NirNeuron(nir.CubaLIF(tau_syn=tau_syn, tau_mem=lif.tau, r=gain.astype(np.float32), v_leak=lif.v_leak,
                                     v_threshold=lif.v_threshold, v_reset=lif.v_reset,
                                     w_in=np.ones(shape, np.float32), metadata=meta),
                         differences=spec.differences, fix=spec.fix)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", current_channels={self.current_channels}"


def nir_current_neuron(T: int, *, reset: str, init: float, leak: Tensor | None,
                       current_decay: Tensor) -> CurrentIFNeuron:
    """The neuron of a NIR ``CubaLIF`` node: :func:`nir_neuron`'s membrane behind a synaptic
    current that decays by ``current_decay`` per step (constants of the model)."""
    channels = 1 if leak is None else leak.numel()
    neuron = CurrentIFNeuron(T, init=init, reset=reset, learn_leak=leak is not None, channels=channels,
                             current_channels=current_decay.numel())
    with torch.no_grad():
        neuron.current_decay.copy_(current_decay.to(neuron.current_decay.dtype).reshape(-1))
        if leak is not None:
            neuron.leak.copy_(leak.to(neuron.leak.dtype))
            neuron.leak.requires_grad_(False)
    return neuron


NIR_NEURON_READERS.register("CubaLIF", NirNeuronReader(nir_current_neuron, RESETS, "CurrentIFNeuron"))


@serializable
class RateMaxPool(SpikingNeuron):
    """2-d max-pooling of rate-coded frames by the max of running sums (see module docstring).

    ``pool`` holds ``F.max_pool2d``'s keyword arguments (kernel_size, stride, padding,
    dilation, ceil_mode). State per input neuron: its running spike count. No firing decision:
    max and differences are piecewise linear, so training uses autograd's own gradient (the max
    routes it to the winning input); ``surrogate`` is kept only for a uniform interface.
    """

    unit_spikes = True
    pools = True
    serial_params = ("T", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "surrogate")

    def __init__(self, T: int, kernel_size, stride=None, padding=0, dilation=1,
                 ceil_mode: bool = False, surrogate: str = "straight-through") -> None:
        super().__init__(T, T)
        self.T = int(T)
        self.surrogate = get_surrogate(surrogate).spec
        if stride in (None, [], ()):
            stride = kernel_size
        self.pool = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                         ceil_mode=bool(ceil_mode))
        # between time chunks: running sums and pooled maximum after the previous chunk
        self.register_buffer("chunk_state_sums", None, persistent=False)
        self.register_buffer("chunk_state_pooled", None, persistent=False)

    @property
    def supports_chunks(self) -> bool:
        return True

    def dynamics(self, inputs: Tensor) -> Tensor:
        window = self.time_window
        if window is None:
            return running_max_pool(inputs, self.pool, differentiable=self.needs_grad(inputs))
        # one time chunk: continue the running sums and the pooled maximum of the previous chunk
        first, last = window[0] == 0, window[1] >= self.T
        carry = None if first else (self._buffers["chunk_state_sums"], self._buffers["chunk_state_pooled"])
        out, sums, pooled = running_max_pool_chunk(inputs, self.pool, carry)
        self._buffers["chunk_state_sums"] = None if last else sums
        self._buffers["chunk_state_pooled"] = None if last else pooled
        return out

    def export_dynamics(self, inputs: Tensor) -> Tensor:
        """The out-of-place path (the fast one writes with ``out=``)."""
        return running_max_pool(inputs, self.pool, differentiable=True)

    def step_states(self) -> tuple[StepState, ...]:
        return (StepState("sums", 0.0, "input"), StepState("pooled"))

    def step(self, frame: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The increment of the max-pooled running sums."""
        sums = state["sums"] + frame
        pooled = F.max_pool2d(sums, **self.pool)
        return pooled - state["pooled"], {"sums": sums, "pooled": pooled}

    kernel_size = pool_property("kernel_size")
    stride = pool_property("stride")
    padding = pool_property("padding")
    dilation = pool_property("dilation")
    ceil_mode = pool_property("ceil_mode")

    def extra_repr(self) -> str:
        return f"T={self.T}, pool={self.pool}"
