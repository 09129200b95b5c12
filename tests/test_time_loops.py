"""The neuron time loops: column chunks, one thread inside, the same floats whatever the chunking."""

from __future__ import annotations

import pytest
import torch

import snnconvert.neurons.base as base
from snnconvert.neurons.base import loop_threads, time_chunks
from snnconvert.neurons.integrate_fire import if_dynamics
from snnconvert.neurons.tsa import tsa_dynamics


def test_chunks_cover_every_column_once_on_the_cpu_and_are_one_chunk_elsewhere(monkeypatch) -> None:
    monkeypatch.setattr(base, "TIME_LOOP_CHUNK", 7)
    flat, chunks = time_chunks(torch.zeros(3, 2, 10))
    assert flat.shape == (3, 20)
    assert [(c.start, c.stop) for c in chunks] == [(0, 7), (7, 14), (14, 20)]
    _, chunks = time_chunks(torch.empty(3, 2, 10, device="meta"))
    assert [(c.start, c.stop) for c in chunks] == [(0, 20)]


def test_loop_threads_runs_on_one_thread_and_restores() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with loop_threads(torch.zeros(1)):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), loop_threads(torch.zeros(1)):
            raise RuntimeError("inside the loop")
        assert torch.get_num_threads() == 2
        with loop_threads(torch.empty(1, device="meta")):  # not the CPU: left alone
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("beta, qmax", [(2.0, 255.0), (3.0, 255.0), (2.5, 40.0)])
def test_chunk_size_does_not_change_a_float(monkeypatch, beta: float, qmax: float) -> None:
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(-60, 300, (6, 4, 5, 7), generator=g).float() / beta ** torch.arange(6).view(-1, 1, 1, 1)
    whole = tsa_dynamics(frames, Ts=2, beta=beta, qmax=qmax)
    rate = if_dynamics(frames.abs() / 300)
    monkeypatch.setattr(base, "TIME_LOOP_CHUNK", 11)  # 140 neurons: 13 chunks, the last one short
    assert all(torch.equal(a, b) for a, b in zip(tsa_dynamics(frames, Ts=2, beta=beta, qmax=qmax), whole, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(if_dynamics(frames.abs() / 300), rate, strict=True))
