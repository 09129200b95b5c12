"""The hard-reset LIF neuron (threshold units)::

    u[t] = decay * u[t-1] + z[t]        (u[-1] = 0)
    s[t] = 1 if u[t] >= theta else 0    (theta = 1, or the learned ``threshold``)
    u[t] <- u[t] * (1 - s[t])           (hard reset to 0)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from snnconvert.neurons.base import SpikingNeuron, StepState
from snnconvert.neurons.surrogates import get_surrogate, spike
from snnconvert.registry import serializable


@serializable
class HardResetLIF(SpikingNeuron):
    """A layer of hard-reset LIF neurons; ``learn_threshold`` adds a ``threshold`` parameter."""

    unit_spikes = True
    serial_params = ("T", "decay", "surrogate", "channels", "learn_threshold")

    def __init__(self, T: int, decay: float = 1.0, surrogate: str = "triangular:1.0", channels: int = 1,
                 learn_threshold: bool = False) -> None:
        super().__init__(T, T)
        self.T, self.decay = int(T), float(decay)
        self.surrogate = get_surrogate(surrogate).spec
        self.init_learnable(learn_threshold, False, channels, 1.0)

    def _theta(self, frame_dims: int) -> Tensor | float:
        theta = self.per_channel(self.threshold, frame_dims)
        return 1.0 if theta is None else theta

    def _fire(self, u: Tensor, theta: Tensor | float, grad: bool) -> Tensor:
        ratio = u / theta
        if not grad:
            return (ratio >= 1.0).to(u.dtype)
        slope = get_surrogate(self.surrogate).grad
        return spike(ratio - 1.0, lambda x: (x >= 0.0).to(x.dtype), slope)

    def dynamics(self, inputs: Tensor) -> Tensor:
        theta = self._theta(inputs.dim() - 1)
        grad = self.needs_grad(inputs)
        u = torch.zeros_like(inputs[0])
        spikes = []
        for t in range(inputs.shape[0]):
            u = u * self.decay + inputs[t]
            s = self._fire(u, theta, grad)
            u = u * (1.0 - s)
            spikes.append(s)
        return torch.stack(spikes)

    def step_states(self) -> tuple[StepState, ...]:
        return (StepState("membrane", 0.0),)

    def step(self, frame: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        u = state["membrane"] * self.decay + frame
        s = self._fire(u, self._theta(frame.dim()), False)
        return s, {"membrane": u * (1.0 - s)}

    def make_trainable(self, *, learn_threshold: bool, learn_leak: bool, channels: Callable[[], int] | None,
                       dtype: torch.dtype, device: torch.device) -> None:
        """A learnable threshold (init 1); the decay stays fixed."""
        self.add_threshold_leak(learn_threshold=learn_threshold, learn_leak=False, channels=channels,
                                dtype=dtype, device=device, leak=self.decay)
