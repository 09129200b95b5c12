"""Spike statistics recorded by neuron modules: event counts and magnitudes per step."""

from __future__ import annotations

import torch

from snnconvert.neurons.base import nonzero_per_row, unfold_time
from snnconvert.neurons.integrate_fire import IFNeuron
from snnconvert.neurons.tsa import TSANeuron


def test_nonzero_per_row_counts_by_hand() -> None:
    flat = torch.tensor([[0.0, 1.0, -1.0, 0.0, 0.0], [2.0, 0.0, 0.0, -3.0, 0.5]])
    assert nonzero_per_row(flat).tolist() == [2.0, 3.0]
    ternary = torch.tensor([[0.0, 1.0, -1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    assert nonzero_per_row(ternary, unit=True).tolist() == [2.0, 3.0]
    assert nonzero_per_row(ternary).dtype == torch.float64


def test_recorded_events_and_magnitudes_match_the_spikes() -> None:
    g = torch.Generator().manual_seed(0)
    for neuron, frames in [
        (TSANeuron(Tc=4, Ts=1, qmax=15.0), torch.randint(-12, 13, (4 * 3, 2, 5, 5), generator=g).double()),
        (IFNeuron(6), torch.rand(6 * 3, 2, 5, 5, generator=g, dtype=torch.float64)),
    ]:
        neuron.recording = True
        out = unfold_time(neuron(frames), neuron.steps_out)
        expected = (out != 0).flatten(1).sum(1).double()
        assert set(out.unique().tolist()) <= {-1.0, 0.0, 1.0} and neuron.unit_spikes
        assert torch.equal(neuron.events_per_step, expected)
        assert torch.equal(neuron.magnitude_per_step, out.abs().flatten(1).sum(1).double())
        assert int(neuron.samples) == 3 and int(neuron.neurons) == 2 * 5 * 5
        neuron.reset_stats()
        assert float(neuron.events_per_step.sum()) == 0.0
