"""Spike statistics recorded by neuron modules: event counts and magnitudes per step."""

from __future__ import annotations

import pytest
import torch

from snnconvert.methods.rate.neuron import IFNeuron
from snnconvert.methods.sws.neuron import TSANeuron
from snnconvert.neurons.base import EXACT_COUNT, nonzero_per_row, nonzero_total, unfold_time


def test_nonzero_per_row_counts_by_hand() -> None:
    flat = torch.tensor([[0.0, 1.0, -1.0, 0.0, 0.0], [2.0, 0.0, 0.0, -3.0, 0.5]])
    assert nonzero_per_row(flat).tolist() == [2.0, 3.0]
    ternary = torch.tensor([[0.0, 1.0, -1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    assert nonzero_per_row(ternary, unit=True).tolist() == [2.0, 3.0]
    assert nonzero_per_row(ternary).dtype == torch.float64
    assert nonzero_per_row(flat.half()).tolist() == [2.0, 3.0]  # not float32/64: the generic path
    assert nonzero_total(flat.view(5, 2)) == 5.0


def test_nonzero_counts_past_what_a_float32_sum_holds() -> None:
    # 2^24 + 3 ones: above 2^24 a float32 holds even integers only, so one float32 sum is off
    ones = torch.ones(1, EXACT_COUNT + 3)
    assert nonzero_per_row(ones, unit=True).tolist() == [EXACT_COUNT + 3.0]
    ones[0, :7] = -2.5
    assert nonzero_per_row(ones).tolist() == [EXACT_COUNT + 3.0]
    assert nonzero_total(ones.view(-1)) == EXACT_COUNT + 3.0


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


def test_additive_stats_are_the_counters_ranks_sum() -> None:
    neuron = TSANeuron(Tc=4, Ts=1, qmax=15.0)
    neuron.recording = True
    neuron(torch.randint(-12, 13, (4 * 2, 2, 3, 3)).float())
    stats = neuron.additive_stats()
    assert "neurons" not in stats and {"events_per_step", "samples", "residual_hist", "clamped_count"} <= set(stats)
    doubled = {name: value * 2 for name, value in stats.items()}
    for name, value in doubled.items():
        neuron.set_stat(name, value.float())  # (as an all-reduce in float32 would return it)
    assert all(torch.equal(neuron.additive_stats()[n], doubled[n]) for n in doubled)
    assert neuron.events_per_step.dtype == torch.float64
    with pytest.raises(KeyError, match="nothing"):
        neuron.set_stat("nothing", torch.zeros(1))
