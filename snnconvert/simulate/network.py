"""The spiking network container and the time-folded, layer-by-layer engine that runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, fx, nn

from snnconvert.neurons.base import SpikeStats, SpikingNeuron

DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""Simulation precisions by name (``--dtype``, coding ``dtype`` options)."""


class SpikingNetwork(nn.Module):
    """A converted SNN: ``encoder`` (image -> input frames), ``body`` (an fx graph of synapses,
    neurons and linear ops on time-folded frames) and ``decoder`` (output frames -> logits).

    Running it is the time-folded engine: fx executes the body layer by layer, each synapse
    processes all its frames in one batched call, each neuron loops only its own dynamics over
    time, and intermediate frames are freed as soon as their last consumer has run (so the live
    set is one layer's frames plus the residual branches still needed).

    ``info`` holds coding-specific facts (latency, time steps, options) as JSON-compatible data.
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

    def serial_config(self) -> dict[str, Any]:
        return {"coding": self.coding, "info": json.dumps(self.info)}

    @classmethod
    def from_serial(cls, coding: str, info: str) -> SpikingNetwork:
        return cls(coding, json.loads(info))

    def forward(self, images: Tensor) -> Tensor:
        dtype = self.compute_dtype()
        return self.decoder(self.body(self.encoder(images.to(dtype))))

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

    @contextmanager
    def recording(self) -> Iterator[SpikingNetwork]:
        """Record spike statistics of every neuron while inside the block."""
        neurons = self.neurons().values()
        for n in neurons:
            n.recording = True
        try:
            yield self
        finally:
            for n in neurons:
                n.recording = False

    def spike_stats(self) -> list[SpikeStats]:
        return [n.stats(name) for name, n in self.neurons().items()]
