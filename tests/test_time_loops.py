"""The neuron time loops: column chunks, torch's thread count untouched, the same floats whatever the chunking."""

from __future__ import annotations

import pytest
import torch

import snnconvert.neurons.base as base
from snnconvert.methods.rate.neuron import if_dynamics, running_max_pool, running_max_pool_chunk
from snnconvert.methods.sws.neuron import tsa_dynamics
from snnconvert.neurons.base import time_chunks


def test_chunks_cover_every_column_once_on_the_cpu_and_are_one_chunk_elsewhere(monkeypatch) -> None:
    monkeypatch.setattr(base, "TIME_LOOP_CHUNK", 7)
    flat, chunks = time_chunks(torch.zeros(3, 2, 10))
    assert flat.shape == (3, 20)
    assert [(c.start, c.stop) for c in chunks] == [(0, 7), (7, 14), (14, 20)]
    _, chunks = time_chunks(torch.empty(3, 2, 10, device="meta"))
    assert [(c.start, c.stop) for c in chunks] == [(0, 20)]


def test_neuron_loops_never_change_torchs_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's thread count is process-wide: the time loops (fast and differentiable paths, time
    chunks) never set it. (Forcing one thread was slower on this 2-core machine:
    bench/neuron_loop_threads.py.)"""
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    frames = torch.rand(6, 2, 3, 4, 4)
    tsa_dynamics(frames, Ts=2, beta=2.0, qmax=255.0)
    if_dynamics(frames)
    running_max_pool(frames, dict(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False))
    running_max_pool_chunk(frames[:3], dict(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False), None)
    assert calls == []


@pytest.mark.parametrize("beta, qmax", [(2.0, 255.0), (3.0, 255.0), (2.5, 40.0)])
def test_chunk_size_does_not_change_a_float(monkeypatch, beta: float, qmax: float) -> None:
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(-60, 300, (6, 4, 5, 7), generator=g).float() / beta ** torch.arange(6).view(-1, 1, 1, 1)
    whole = tsa_dynamics(frames, Ts=2, beta=beta, qmax=qmax)
    rate = if_dynamics(frames.abs() / 300)
    monkeypatch.setattr(base, "TIME_LOOP_CHUNK", 11)  # 140 neurons: 13 chunks, the last one short
    assert all(torch.equal(a, b) for a, b in zip(tsa_dynamics(frames, Ts=2, beta=beta, qmax=qmax), whole, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(if_dynamics(frames.abs() / 300), rate, strict=True))
