"""The spiking network container and the time-folded, layer-by-layer engine that runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, fx, nn

from snnconvert.neurons.base import SpikeStats, SpikingNeuron
from snnconvert.registry import serializable
from snnconvert.simulate.chunks import chunked_forward

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""Simulation precisions by name (``--dtype``, coding ``dtype`` options)."""


@serializable
class SpikingNetwork(nn.Module):
    """A converted SNN: ``encoder`` (image -> input frames), ``body`` (an fx graph of synapses,
    neurons and linear ops on time-folded frames) and ``decoder`` (output frames -> logits).

    Running it is the time-folded engine: fx executes the body layer by layer, each synapse
    processes all its frames in one batched call, each neuron loops only its own dynamics over
    time, and intermediate frames are freed as soon as their last consumer has run (so the live
    set is one layer's frames plus the residual branches still needed).

    ``info`` holds coding-specific facts (latency, time steps, options) as JSON-compatible data.

    Rate-type networks run in time chunks (:mod:`snnconvert.simulate.chunks`): the body sees a
    few steps at a time, the largest folded activation of a chunk at most ``time_chunk_bytes``
    bytes (None: :data:`~snnconvert.simulate.memory.CHUNK_BYTES`, 32 MiB, on the CPU and
    :data:`~snnconvert.simulate.memory.DEVICE_CHUNK_BYTES`, 256 MiB, on accelerators; 0
    folds all T frames at once), with the same results.
    """

    serial_children = ("encoder", "body", "decoder")
    serial_params = ("coding", "info")

    def __init__(self, coding: str, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.coding = coding
        self.info: dict[str, Any] = dict(info or {})
        self.encoder: nn.Module = nn.Identity()
        self.body: fx.GraphModule | nn.Module = nn.Identity()
        self.decoder: nn.Module = nn.Identity()
        self.time_chunk_bytes: int | None = None  # None: the device's default; 0: off
        self.time_window: tuple[int, int] | None = None  # steps of the chunk running now
        self.chunk_elements: dict[tuple, int] = {}  # largest activation per image shape (a cache)
        self.chunk_min_frames: dict[tuple, int] = {}  # fewest frames per chunk, per image shape (a cache)

    def serial_config(self) -> dict[str, Any]:
        return {"coding": self.coding, "info": json.dumps(self.info)}

    @classmethod
    def from_serial(cls, coding: str, info: str) -> SpikingNetwork:
        return cls(coding, json.loads(info))

    def forward(self, images: Tensor) -> Tensor:
        images = images.to(self.compute_dtype())
        out = chunked_forward(self, images)
        return out if out is not None else self.decoder(self.body(self.encoder(images)))

    def compute_dtype(self) -> torch.dtype:
        for p in self.body.parameters():
            return p.dtype
        return torch.float32

    def neurons(self) -> dict[str, SpikingNeuron]:
        """All neuron layers (the encoder first when it spikes), by name: ``"encoder"`` or the
        module path inside the body (the name of the activation the neuron replaced)."""
        found = {}
        for name, m in self.named_modules():
            if isinstance(m, SpikingNeuron):
                found[name.removeprefix("body.")] = m
        return found

    def reset_stats(self) -> None:
        for neuron in self.neurons().values():
            neuron.reset_stats()
        for m in self.modules():  # synapses that count their own work (e.g. PoTConv2d.reset_work)
            if hasattr(m, "reset_work"):
                m.reset_work()

    @contextmanager
    def recording(self, detail: bool = True) -> Iterator[SpikingNetwork]:
        """Record spike statistics of every neuron while inside the block; ``detail`` also the
        statistics only a coding's own reports read (the TSA residual histograms: about 10 % of
        an SWS evaluation's time)."""
        neurons = self.neurons().values()
        for n in neurons:
            n.recording, n.recording_detail = True, detail
        try:
            yield self
        finally:
            for n in neurons:
                n.recording, n.recording_detail = False, True

    def spike_stats(self) -> list[SpikeStats]:
        return [n.stats(name) for name, n in self.neurons().items()]
