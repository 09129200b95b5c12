"""Multi-bit neurons with learnable spike widths, per-step thresholds and learnable T (paper 002 §4.2-4.4).

A layer holds ``T_bound`` per-time-step thresholds ``V_th^{1,t}`` (step size = spike amplitude)
and spike widths ``B^_s^t`` (eq 15 with temporal-wise sharing), and a real-valued length ``T^``
(``T_l = round(clip(T^, 1, T_bound))``, eq 11). It receives one frame, the squeezed input current
(eq 13: the mean over the presynaptic steps), runs ``T_l`` steps of eqs 14-15::

    v^t = v^(t-1) / tau + I - V_th^(t-1) S^(t-1)
    S^t = clip(round(v^t / V_th^t), q_min, q_max^t)       (flooring option: floor, eq 5)

and emits one frame, ``(1 / T_l) sum_t V_th^t S^t``: the squeezed spike train of the post-squeezing
pipeline (A.6, fig A.1b). Synapses are linear, so the network computes exactly what the
frame-by-frame network with ``squeeze="always"`` computes, at one frame per layer whatever the
per-layer T (the test compares both). Gradients: spikes the clip STE of eq 21, widths eqs 17-18
(A.11 for the signed neuron), thresholds the LSQ gradient of A.6-A.7 with ``g = 1/sqrt(N q_max)``,
``T^`` through the ``1 / T_l`` of eq 13 (straight-through rounding). Integer spikes are recorded
per internal step (``stats`` reports the ``T_l`` active steps).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from snnconvert.methods.multibit.config import ROUNDINGS
from snnconvert.methods.multibit.learnable import grad_scale, qrange, quantize, renew, width
from snnconvert.methods.multibit.neuron import InputStage
from snnconvert.neurons.base import SpikeStats, SpikingNeuron, nonzero_per_row
from snnconvert.registry import serializable


@serializable
class AdaptiveMultiBitNeuron(SpikingNeuron):
    """Learnable-width multi-bit neurons on squeezed frames (see the module docstring)."""

    serial_params = ("bits_bound", "steps_bound", "signed", "tau", "rounding", "channels")

    def __init__(self, bits_bound: int = 6, steps_bound: int = 3, signed: bool = False, tau: float = 1.0,
                 rounding: str = "round", channels: int = 1, init_bits: float = 4.0, init_steps: float = 2.0) -> None:
        super().__init__(1, 1)
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding {rounding!r}: choose round or floor")
        self.bits_bound, self.steps_bound = int(bits_bound), int(steps_bound)
        self.signed, self.tau, self.rounding = bool(signed), float(tau), rounding
        self.threshold = nn.Parameter(torch.ones(self.steps_bound, int(channels)))  # V_th^{1,t}
        self.bits_hat = nn.Parameter(torch.full((self.steps_bound,), float(init_bits)))  # B^_s^t
        self.steps_hat = nn.Parameter(torch.tensor(float(init_steps)))  # T^
        self.register_buffer("elements", torch.tensor(1.0, dtype=torch.float64))  # neurons per sample
        self.register_buffer("recorded_bits", torch.zeros(self.steps_bound, dtype=torch.float64))  # B'
        self.register_buffer("run_max", torch.full((self.steps_bound,), -math.inf, dtype=torch.float64))
        self.register_buffer("run_min", torch.full((self.steps_bound,), math.inf, dtype=torch.float64))
        self.register_buffer("renewal", torch.tensor(1.0, dtype=torch.float64))
        # stats per internal step (the base registered them for one output frame)
        self.register_stat("events_per_step", self.steps_bound)
        self.register_stat("magnitude_per_step", self.steps_bound)
        self.observe_iterations = 0  # > 0: renew thresholds whose width changed (Algorithm 1), then 0
        self.observe_power = 2.0
        self.renewed: list[int] = []

    # ------------------------------------------------------------------ widths
    @property
    def channels(self) -> int:
        return self.threshold.shape[1]

    @property
    def steps(self) -> int:
        """``T_l`` (eq 11)."""
        return int(width(self.steps_hat.detach(), self.steps_bound))

    def step_bits(self) -> list[int]:
        """``B_s^t`` of every step up to ``T_bound`` (eq 10)."""
        return [int(b) for b in width(self.bits_hat.detach(), self.bits_bound)]

    def mean_bits(self) -> Tensor:
        """Mean spike width over the active steps, differentiable in ``B^_s`` (for eq 22)."""
        return width(self.bits_hat, self.bits_bound)[:self.steps].mean()

    def steps_value(self) -> Tensor:
        """``T_l`` differentiable in ``T^`` (straight-through)."""
        return width(self.steps_hat, self.steps_bound)

    @property
    def floor(self) -> bool:
        return self.rounding == "floor"

    # ------------------------------------------------------------------ dynamics
    def _theta(self, t: int, dims: int) -> Tensor:
        theta = self.threshold[t]
        return theta.reshape(()) if theta.numel() == 1 else theta.view((-1,) + (1,) * (dims - 2))

    def forward(self, frames: Tensor) -> Tensor:
        return self.run(frames)

    def run(self, current: Tensor) -> Tensor:
        """Eqs 14-15 over ``T_l`` steps on the constant (squeezed) ``current`` (B, ...); returns the
        squeezed output ``mean_t V_th^t S^t``."""
        steps = self.steps
        bits = width(self.bits_hat, self.bits_bound)
        per_sample = current[0].numel() if current.dim() > 0 else 1
        self.elements.fill_(per_sample)
        tracked = torch.is_grad_enabled() and (current.requires_grad or self.threshold.requires_grad)
        out: Tensor | None = None
        v: Tensor | None = None  # v^0 = 0
        spikes: list[Tensor] = []
        prev: Tensor | None = None
        for t in range(steps):
            b = int(bits[t].detach())
            qmax = qrange(b, self.signed)[1]
            g = 1.0 / math.sqrt(max(per_sample * qmax, 1))
            # eq 14: v^t = v^(t-1) / tau + I - V_th^(t-1) S^(t-1)
            v = current if v is None else (v / self.tau if self.tau != 1 else v) + current
            if prev is not None:
                v = v - prev
            recorded = int(self.recorded_bits[t])  # 0: never initialised from data (Algorithm A.9 line 2)
            if self.observe_iterations and b != recorded and (recorded == 0 or bool(self.renewal)):
                self._renew(t, b, v)
            theta = self._theta(t, current.dim())
            if tracked:
                theta_g = grad_scale(theta, g)
                s = quantize(v / theta_g, bits[t], signed=self.signed, floor=self.floor, g=g)
                prev = s * theta_g
            else:
                s = self._fire(v / theta, b)
                prev = s * theta
            spikes.append(s.detach())
            out = prev if out is None else out + prev
        self.observe_iterations = 0
        if self.recording:
            self._record_steps(spikes)
        assert out is not None
        t_l = self.steps_value().to(out.dtype) if tracked else float(steps)
        return out / t_l

    def _fire(self, u: Tensor, bits: int) -> Tensor:
        from snnconvert.methods.multibit.learnable import rounded

        qmin, qmax = qrange(bits, self.signed)
        return rounded(u, self.signed, self.floor).clamp_(qmin, qmax)

    @torch.no_grad()
    def _renew(self, t: int, bits: int, potential: Tensor) -> None:
        """Algorithm 1 for step ``t``: the data is the membrane potential ``v^t``."""
        self.recorded_bits[t] = bits
        theta = self.threshold[t]
        step = renew(potential, bits, float(theta.abs().mean()), self.run_max[t:t + 1], self.run_min[t:t + 1],
                     signed=self.signed, iterations=self.observe_iterations, power=self.observe_power,
                     floor=self.floor)
        theta.fill_(step)
        self.renewed.append(t)

    # ------------------------------------------------------------------ statistics
    @torch.no_grad()
    def _record_steps(self, spikes: list[Tensor]) -> None:
        batch = spikes[0].shape[0]
        for t, s in enumerate(spikes):
            flat = s.reshape(1, -1)
            self.events_per_step[t] += nonzero_per_row(flat)[0]
            self.magnitude_per_step[t] += flat.abs().sum().double()
        self.samples += batch
        self.neurons.fill_(spikes[0][0].numel())

    def stats(self, name: str) -> SpikeStats:
        n = max(float(self.samples), 1.0)
        active = max(self.steps, 1)
        return SpikeStats(name=name, neurons=int(self.neurons), lanes=1, samples=int(self.samples),
                          events_per_step=(self.events_per_step[:active] / n).tolist(),
                          magnitude_per_step=(self.magnitude_per_step[:active] / n).tolist())

    def extra_repr(self) -> str:
        return (f"T={self.steps}/{self.steps_bound}, bits={self.step_bits()[:self.steps]}/{self.bits_bound}, "
                f"signed={self.signed}, tau={self.tau:g}, rounding={self.rounding}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_multibit(cls, neuron: Any, *, bits_bound: int, steps_bound: int, init_bits: float,
                      init_steps: float, rounding: str, tau: float | None = None) -> AdaptiveMultiBitNeuron:
        """From a converted :class:`~snnconvert.methods.multibit.neuron.MultiBitNeuron`: its threshold,
        rescaled to keep its clip range ``theta q_max`` at the initial width, on every step."""
        new = cls(bits_bound, steps_bound, neuron.signed, neuron.tau if tau is None else tau, rounding,
                  neuron.threshold.numel(), init_bits, init_steps).to(neuron.threshold.dtype)
        old_q = qrange(neuron.bits, neuron.signed)[1]
        new_q = qrange(int(width(torch.tensor(float(init_bits)), bits_bound)), neuron.signed)[1]
        with torch.no_grad():
            theta = neuron.threshold.detach().reshape(1, -1) * (old_q / new_q)
            new.threshold.copy_(theta.expand(steps_bound, -1))  # recorded_bits stay 0: first batch initialises
        return new


@serializable
class AdaptiveMultiBitEncoder(InputStage, AdaptiveMultiBitNeuron):
    """Input neurons (§5.2.6) with learnable widths: the padded, centred image (:class:`InputStage`)
    is the current."""

    serial_params = ("bits_bound", "steps_bound", "signed", "tau", "rounding", "channels", "in_channels",
                     "padding")

    def __init__(self, bits_bound: int = 6, steps_bound: int = 3, signed: bool = False, tau: float = 1.0,
                 rounding: str = "round", channels: int = 1, in_channels: int = 3,
                 padding: tuple[int, int, int, int] | None = None, init_bits: float = 4.0,
                 init_steps: float = 2.0) -> None:
        super().__init__(bits_bound, steps_bound, signed, tau, rounding, channels, init_bits, init_steps)
        self._init_input_stage(in_channels, padding)

    def forward(self, frames: Tensor) -> Tensor:
        return self.run(self.centered(frames))

    @classmethod
    def from_multibit(cls, neuron: Any, **kwargs: Any) -> AdaptiveMultiBitEncoder:  # type: ignore[override]
        base = AdaptiveMultiBitNeuron.from_multibit(neuron, **kwargs)
        new = cls(base.bits_bound, base.steps_bound, base.signed, base.tau, base.rounding, base.channels,
                  neuron.in_channels, neuron.padding, float(base.bits_hat[0].detach()), float(base.steps_hat.detach()))
        new = new.to(neuron.threshold.dtype)
        state = {**base.state_dict(), "center": neuron.center.detach().clone()}
        if neuron.pad is not None:
            state["pad.values"] = neuron.pad.values.detach().clone()
        new.load_state_dict(state)
        return new
