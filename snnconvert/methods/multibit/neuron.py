"""Multi-bit spiking neurons of the adaptive-bit-allocation paper (§3.1, §4.2, eqs 13-16).

A layer with threshold ``theta`` (V_th^1: the quantization step *and* the spike amplitude,
learnable) emits integer spikes ``S`` in ``[q_min, q_max]`` at each of its ``T`` steps::

    V_in^t = sum_j w * theta_{l-1} * S_{l-1}^t                                   (eq 3 / 13)
    v^t    = v^{t-1} / tau + V_in^t - theta * S^{t-1}                              (eq 14)
    S^t    = clip(round(v^t / theta + V_th^2), q_min, q_max),  V_th^2 = 0.5 sign(v^t/theta)  (eq 15)

* ``tau = 1`` (the paper's choice): an integrate-and-fire neuron with reset by subtraction.
  Eq 14 is implemented literally for ``tau != 1`` (the pre-reset potential leaks, the previous
  spike is subtracted unleaked).
* Rounding: the bracket of eq 15 with the sign-dependent shift ``0.5 sign(x)`` is read as
  truncation toward zero, ``S = sign(x) * floor(|x| + 1/2)`` (round half away from zero): that is
  the rounding the paper says the shift produces. (A literal floor would map x = -1 to
  floor(-1.5) = -2.) For the unsigned neuron (eq 15: ``q_min = 0``, ``q_max = 2^B - 1``) this is
  ``floor(x + 1/2)``, the round-half-up of snnconvert's activation quantizer, so a ``T = 1``
  layer with ``theta`` equal to a quantizer's scale reproduces that quantized ANN layer.
* The signed (bidirectional) neuron of eq 16 has ``q_max = 2^(B-1) - 1 = -q_min`` (``B = 1``:
  ternary, ``q = +-1``, as the paper specifies).
* Temporal squeezing (eq 13): when the presynaptic layer ran ``T_in != T_out`` steps (or
  squeezing is on for every layer), the neuron receives the mean current
  ``(1/T_in) sum_tau V_in^tau`` at each of its ``T_out`` steps; by linearity of the synapse this
  is eq 13's mean of the presynaptic spike train (the paper's "conventional" pipeline, fig A.1a).

``dynamics`` returns the integer spikes (what the statistics record); ``forward`` returns
``S * theta`` (amplitude-weighted spikes, eq 13), so the synapses keep the ANN's weights and
``theta`` stays one learnable parameter per layer (or channel). When gradients are needed the
rounding's backward is the layer's ``surrogate`` (default straight-through: the clip gradient of
eq 21) and the loop runs out of place with the same values; otherwise the loop is in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from snnconvert.graph.modules import PadWithValues
from snnconvert.neurons.base import SpikingNeuron, fold_time, unfold_time
from snnconvert.neurons.surrogates import Surrogate, get_surrogate, spike, staircase_grad
from snnconvert.registry import serializable


def spike_range(bits: int, signed: bool) -> tuple[int, int]:
    """``(q_min, q_max)`` of a B-bit spike: eq 15 (unsigned) or eq 16 (signed; B = 1 -> +-1)."""
    if not signed:
        return 0, 2**bits - 1
    if bits == 1:
        return -1, 1
    q = 2 ** (bits - 1) - 1
    return -q, q


def round_spikes(x: Tensor, qmin: int, qmax: int, out: Tensor | None = None) -> Tensor:
    """``clip(sign(x) * floor(|x| + 1/2), qmin, qmax)`` (eqs 15-16), into ``out`` when given."""
    if qmin >= 0:  # x < 0 clips to 0 either way: floor(x + 1/2) is the same rounding
        out = torch.add(x, 0.5, out=out) if out is not None else x + 0.5
        return out.floor_().clamp_(qmin, qmax)
    out = torch.abs(x, out=out) if out is not None else x.abs()
    return out.add_(0.5).floor_().copysign_(x).clamp_(qmin, qmax).add_(0.0)  # + 0.0: no -0


def multibit_dynamics(
    inputs: Tensor,
    threshold: Tensor | float,
    *,
    steps_out: int,
    qmin: int,
    qmax: int,
    tau: float = 1.0,
    squeeze: bool = False,
    surrogate: Surrogate | str = "straight-through",
) -> tuple[Tensor, Tensor]:
    """Run a multi-bit layer on its input currents ``inputs`` (T_in, B, ...) (eqs 13-16).

    ``threshold`` broadcasts against ``inputs``. Returns ``(spikes, membrane)``: the
    ``steps_out`` integer spike frames and the last potential ``v^T / theta`` (before its reset).
    The mean current is used at every step when ``squeeze`` is set or ``T_in != steps_out``.

    When gradients are needed (grad mode on and the currents require one) the same recursion
    runs out of place, in the same floating-point order (the same spikes, bit for bit), and the
    rounding is a spike function whose backward is ``surrogate`` summed over the rounding's unit
    steps (:func:`~snnconvert.neurons.surrogates.staircase_grad`): ``straight-through`` gives 1
    inside ``[q_min, q_max]`` and 0 outside (eq 21's clip gradient). Full BPTT (the reset
    ``S^(t-1)`` keeps its gradient).
    """
    x = inputs / threshold  # currents in units of theta
    constant = squeeze or inputs.shape[0] != steps_out
    if constant:
        x = x.mean(dim=0, keepdim=True)
    if torch.is_grad_enabled() and x.requires_grad:
        return _multibit_autograd(x, steps_out=steps_out, qmin=qmin, qmax=qmax, tau=tau, constant=constant,
                                  surrogate=get_surrogate(surrogate))
    spikes = torch.empty((steps_out, *x.shape[1:]), dtype=x.dtype, device=x.device)
    if qmin >= 0:  # unsigned: keep w = v + 1/2, so that S = clip(floor(w)) (one op less per step)
        w = torch.full_like(x[0], 0.5)
        for t in range(steps_out):
            if tau != 1:
                w.sub_(0.5).div_(tau).add_(0.5)
            w.add_(x[0 if constant else t])
            if t:
                w.sub_(spikes[t - 1])
            torch.floor(w, out=spikes[t]).clamp_(qmin, qmax)
        return spikes, w.sub_(0.5)
    v = torch.zeros_like(x[0])
    for t in range(steps_out):
        if tau != 1:
            v.div_(tau)
        v.add_(x[0 if constant else t])
        if t:
            v.sub_(spikes[t - 1])
        round_spikes(v, qmin, qmax, out=spikes[t])
    return spikes, v


def _multibit_autograd(x: Tensor, *, steps_out: int, qmin: int, qmax: int, tau: float, constant: bool,
                       surrogate: Surrogate) -> tuple[Tensor, Tensor]:
    """The differentiable loop of :func:`multibit_dynamics` (see there)."""
    spikes: list[Tensor] = []
    levels = qmax - qmin
    if qmin >= 0:  # unsigned: w = v + 1/2 and S = clip(floor(w)): steps at w = qmin + 1, ..., qmax
        def fire_floor(w: Tensor) -> Tensor:
            return torch.floor(w).clamp_(qmin, qmax)

        def slope_floor(w: Tensor) -> Tensor:
            return staircase_grad(surrogate, w, qmin + 1.0, levels)

        w = torch.full_like(x[0], 0.5)
        for t in range(steps_out):
            if tau != 1:
                w = (w - 0.5) / tau + 0.5
            w = w + x[0 if constant else t]
            if t:
                w = w - spikes[-1]
            spikes.append(spike(w, fire_floor, slope_floor))
        return torch.stack(spikes), w - 0.5

    def fire_round(v: Tensor) -> Tensor:  # steps at v = k + 1/2, k = qmin, ..., qmax - 1
        return round_spikes(v, qmin, qmax)

    def slope_round(v: Tensor) -> Tensor:
        return staircase_grad(surrogate, v, qmin + 0.5, levels)

    v = torch.zeros_like(x[0])
    for t in range(steps_out):
        if tau != 1:
            v = v / tau
        v = v + x[0 if constant else t]
        if t:
            v = v - spikes[-1]
        spikes.append(spike(v, fire_round, slope_round))
    return torch.stack(spikes), v


@serializable
class MultiBitNeuron(SpikingNeuron):
    """A layer of multi-bit spiking neurons (eqs 13-16); ``threshold`` has one entry per layer
    or per channel (channel axis 1 of a frame). ``learn_threshold`` sets its ``requires_grad``
    (frozen by default, like the quantizers' scales); ``surrogate`` (default straight-through)
    is the rounding's backward when gradients are needed."""

    serial_params = ("steps_in", "steps_out", "bits", "signed", "tau", "squeeze", "channels", "surrogate",
                     "learn_threshold")

    def __init__(self, steps_in: int, steps_out: int, bits: int = 4, signed: bool = False,
                 tau: float = 1.0, squeeze: bool = False, channels: int = 1,
                 surrogate: str = "straight-through", learn_threshold: bool = False) -> None:
        super().__init__(steps_in, steps_out)
        self.bits, self.signed, self.tau, self.squeeze = int(bits), bool(signed), float(tau), bool(squeeze)
        self.surrogate = get_surrogate(surrogate).spec
        # frozen outside fine-tuning (like the quantizers' scales); requires_grad_(True) learns it
        self.threshold = nn.Parameter(torch.ones(channels), requires_grad=bool(learn_threshold))

    @property
    def learn_threshold(self) -> bool:
        """Whether ``threshold`` is trained (its ``requires_grad``)."""
        return self.threshold.requires_grad

    @property
    def channels(self) -> int:
        return self.threshold.numel()

    @property
    def qmin(self) -> int:
        return spike_range(self.bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        return spike_range(self.bits, self.signed)[1]

    @property
    def squeezes(self) -> bool:
        """Whether this layer averages its input over time (eq 13)."""
        return self.squeeze or self.steps_in != self.steps_out

    def _theta(self, dims: int, channel_axis: int) -> Tensor:
        if self.threshold.numel() == 1:
            return self.threshold.reshape(())
        shape = [1] * dims
        shape[channel_axis] = -1
        return self.threshold.view(shape)

    def dynamics(self, inputs: Tensor) -> Tensor:
        spikes, _ = multibit_dynamics(inputs, self._theta(inputs.dim(), 2), steps_out=self.steps_out,
                                      qmin=self.qmin, qmax=self.qmax, tau=self.tau, squeeze=self.squeeze,
                                      surrogate=self.surrogate)
        return spikes

    def make_trainable(self, *, learn_threshold: bool, learn_leak: bool, channels: Callable[[], int] | None,
                       dtype: torch.dtype, device: torch.device) -> None:
        """The existing ``threshold`` (the spike amplitude) gets ``requires_grad``, expanded to
        one entry per channel when ``channels`` is given; no leak (``tau`` stays fixed)."""
        if not learn_threshold:
            return
        theta = self.threshold.detach()
        if channels is not None and theta.numel() == 1:
            theta = theta.expand(channels()).clone()
        self.threshold = nn.Parameter(theta.clone(), requires_grad=True)

    def forward(self, frames: Tensor) -> Tensor:
        spikes = super().forward(frames)  # integer spikes, recorded as such
        theta = self._theta(spikes.dim(), 1).to(spikes.dtype)
        return spikes * theta if spikes.requires_grad or theta.requires_grad else spikes.mul_(theta)

    def extra_repr(self) -> str:
        return (f"steps_in={self.steps_in}, steps_out={self.steps_out}, bits={self.bits}, "
                f"signed={self.signed}, tau={self.tau:g}, squeeze={self.squeeze}, channels={self.channels}")


class InputStage:
    """What the multi-bit input neurons (fixed and learned widths) do to the image before it is a
    current: pad the border with ``pad`` (the folded normalization's values) and subtract the
    ``center`` buffer (the signed neuron's centring, eq 16). Mixed into an ``nn.Module``."""

    center: Tensor
    pad: PadWithValues | None

    def _init_input_stage(self, in_channels: int, padding: tuple[int, int, int, int] | None) -> None:
        self.in_channels = int(in_channels)
        self.register_buffer("center", torch.zeros(in_channels))  # type: ignore[attr-defined]
        self.pad = PadWithValues(padding, torch.zeros(in_channels)) if padding is not None else None

    @property
    def padding(self) -> tuple[int, int, int, int] | None:
        return self.pad.padding if self.pad is not None else None

    def centered(self, x: Tensor) -> Tensor:
        """``pad(x) - center`` of an image batch (channels on axis 1)."""
        if self.pad is not None:
            x = self.pad(x)
        return x - self.center.to(x.dtype).view((1, -1) + (1,) * (x.dim() - 2))


@serializable
class MultiBitEncoder(InputStage, MultiBitNeuron):
    """Input neurons (paper §5.2.6: spiking neurons before the first layer): the image, padded
    with ``pad`` and shifted by ``center`` (:class:`InputStage`), is a constant current for
    ``steps_out`` steps of a multi-bit layer, unsigned (eq 15) or signed (eq 16)."""

    serial_params = ("steps_out", "bits", "signed", "tau", "channels", "in_channels", "padding", "surrogate",
                     "learn_threshold")

    def __init__(self, steps_out: int, bits: int = 4, signed: bool = False, tau: float = 1.0,
                 channels: int = 1, in_channels: int = 3,
                 padding: tuple[int, int, int, int] | None = None, surrogate: str = "straight-through",
                 learn_threshold: bool = False) -> None:
        super().__init__(1, steps_out, bits, signed, tau, False, channels, surrogate, learn_threshold)
        self._init_input_stage(in_channels, padding)

    def dynamics(self, inputs: Tensor) -> Tensor:
        return super().dynamics(self.centered(inputs[0]).unsqueeze(0))

    def make_trainable(self, *, learn_threshold: bool, learn_leak: bool, channels: Callable[[], int] | None,
                       dtype: torch.dtype, device: torch.device) -> None:
        """As a multi-bit layer; per channel means per input channel (the image's)."""
        super().make_trainable(learn_threshold=learn_threshold, learn_leak=learn_leak,
                               channels=None if channels is None else (lambda: self.in_channels),
                               dtype=dtype, device=device)


@serializable
class TemporalSqueeze(nn.Module):
    """Mean of ``steps_in`` frames, repeated ``steps_out`` times (eq 13): joins branches that
    ran different numbers of steps (e.g. at a residual add)."""

    snn_kind = "linear"
    serial_params = ("steps_in", "steps_out")

    def __init__(self, steps_in: int, steps_out: int) -> None:
        super().__init__()
        self.steps_in, self.steps_out = int(steps_in), int(steps_out)

    def forward(self, frames: Tensor) -> Tensor:
        mean = unfold_time(frames, self.steps_in).mean(dim=0, keepdim=True)
        return fold_time(mean.expand(self.steps_out, *mean.shape[1:]))

    def extra_repr(self) -> str:
        return f"steps_in={self.steps_in}, steps_out={self.steps_out}"
