"""The rate coding's hard reset (``reset="zero"``): the IF neuron that NIR's ``IF`` describes."""

from __future__ import annotations

import pytest
import torch

from snnconvert.errors import ConfigError
from snnconvert.methods.rate.config import RateConfig
from snnconvert.methods.rate.neuron import IFNeuron, if_dynamics, if_dynamics_autograd


def test_a_constant_input_loses_its_residue_at_every_hard_reset() -> None:
    """z = 0.75 (exact in binary), u0 = 0, T = 10: the membrane runs 0.75, 1.5 (spike, then 0), ... so a
    spike every second step: 5 spikes, where the soft reset gives floor(10 * 0.75) = 7."""
    inputs = torch.full((10, 1), 0.75, dtype=torch.float64)
    hard, hard_u = if_dynamics(inputs.clone(), init=0.0, reset="zero")
    soft, _ = if_dynamics(inputs.clone(), init=0.0, reset="subtract")
    assert hard[:, 0].tolist() == [0, 1] * 5
    assert int(soft.sum()) == 7
    assert float(hard_u) == 0.0  # the tenth step fired and reset to 0


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_every_path_runs_the_same_hard_and_soft_reset(reset: str) -> None:
    torch.manual_seed(3)
    inputs = torch.rand(12, 2, 3, dtype=torch.float64) * 1.6 - 0.3
    fast, _ = if_dynamics(inputs.clone(), init=0.5, reset=reset)
    autograd, _ = if_dynamics_autograd(inputs.clone(), init=0.5, reset=reset)
    neuron = IFNeuron(12, 0.5, reset=reset)
    state = {"membrane": torch.full((2, 3), 0.5, dtype=torch.float64)}
    stepped = []
    for t in range(12):
        frame, state = neuron.step(inputs[t], state)
        stepped.append(frame)
    assert torch.equal(fast, autograd)
    assert torch.equal(fast, torch.stack(stepped))
    assert torch.equal(fast, neuron(inputs.reshape(12 * 2, 3)).reshape(12, 2, 3))


def test_the_hard_reset_passes_gradients_through_the_kept_membrane() -> None:
    inputs = torch.full((4, 1), 0.6, dtype=torch.float64, requires_grad=True)
    spikes, _ = if_dynamics_autograd(inputs, init=0.0, reset="zero")
    spikes.sum().backward()
    assert inputs.grad is not None and torch.isfinite(inputs.grad).all() and float(inputs.grad.abs().sum()) > 0


def test_an_unknown_reset_is_refused_by_field() -> None:
    with pytest.raises(ConfigError, match="reset 'soft'"):
        RateConfig(reset="soft").validate()
    with pytest.raises(ValueError, match="reset must be one of"):
        IFNeuron(4, reset="soft")
