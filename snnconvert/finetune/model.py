"""The trainable copy of a converted SNN, and optional gradient checkpointing of neuron layers.

Surrogate gradients live in :mod:`snnconvert.neurons.trainable` (``make_trainable`` returns a
deep copy whose forward is bit-exact with the converted network).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.neurons.trainable import make_trainable, neuron_parameters
from snnconvert.options import opt
from snnconvert.simulate.dropout import FrameDropout
from snnconvert.simulate.network import SpikingNetwork


def trainable_copy(snn: SpikingNetwork, config: FinetuneConfig) -> tuple[SpikingNetwork, dict[str, list[nn.Parameter]]]:
    """A deep copy of ``snn`` that trains, and its parameters by group (threshold, leak, other)."""
    model = make_trainable(snn, surrogate=config.surrogate, learn_threshold=config.learn_threshold,
                           learn_leak=config.learn_leak, per_channel=config.per_channel)
    for m in model.modules():  # synapse weights and biases always train (also after a reload)
        if not isinstance(m, SpikingNeuron):
            for p in m.parameters(recurse=False):
                p.requires_grad_(p.is_floating_point())
    set_dropout(model, config.dropout, (FrameDropout,))
    return model, neuron_parameters(model)


def set_dropout(model: nn.Module, p: float | None, kinds: tuple[type, ...]) -> int:
    """Set the drop probability of every dropout layer of ``model`` of the ``kinds`` to ``p``
    (None: leave them); returns how many there are. ``p`` for a model without one is an error."""
    layers = [m for m in model.modules() if isinstance(m, kinds)]
    if p is None:
        return len(layers)
    if not layers:
        raise SnnConvertError(f"{opt(FinetuneConfig, 'dropout')} {p:g}: this network has no dropout layer (conversion "
                              "keeps the ANN's nn.Dropout layers; its ANN has none)")
    for m in layers:
        m.p = float(p)
    return len(layers)


def _checkpointed_forward(neuron: nn.Module) -> Any:
    forward = type(neuron).forward

    def run(frames: Tensor) -> Tensor:
        if not frames.requires_grad:
            return forward(neuron, frames)
        return checkpoint(forward, neuron, frames, use_reentrant=False)

    return run


@contextmanager
def checkpointed_neurons(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Inside the block every neuron layer keeps only its input frames for the backward pass
    and recomputes its time loop there (``torch.utils.checkpoint``)."""
    neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)] if enabled else []
    for n in neurons:
        n.forward = _checkpointed_forward(n)
    try:
        yield model
    finally:
        for n in neurons:
            n.__dict__.pop("forward", None)


@torch.no_grad()
def probe_neurons(model: SpikingNetwork, images: Tensor) -> dict[str, tuple[float, Tensor]]:
    """Run ``images`` through ``model`` (no gradients) and return, per neuron layer, the share of
    its outputs that are spikes and the positive values of its input frames (at most 65,536, evenly
    strided)."""
    found: dict[str, tuple[float, Tensor]] = {}
    handles = []
    for name, neuron in model.neurons().items():
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor, name: str = name) -> None:
            x = inputs[0].detach().reshape(-1)
            positive = x[x > 0]
            step = max(1, positive.numel() // 65536)
            found[name] = (float((output != 0).sum()) / max(output.numel(), 1), positive[::step].float().cpu())

        handles.append(neuron.register_forward_hook(hook))
    try:
        model(images)
    finally:
        for h in handles:
            h.remove()
    return found


DEAD_QUANTILE = 0.99  # a re-initialised threshold lets the top 1 % of the positive inputs fire


def reinit_dead_layers(model: SpikingNetwork, images: Tensor, learn_threshold: bool) -> list[str]:
    """Give every layer with a movable threshold (``SpikingNeuron.reset_threshold``: M-LIF, IF)
    that emits no spike on ``images`` a threshold (threshold units) at the 99th percentile of its
    positive inputs; returns one note per layer looked at.

    The layer gets a ``threshold`` parameter if it has none (trained only with ``learn_threshold``);
    a layer whose inputs are never positive cannot fire at any threshold and is only reported."""
    notes = []
    for name, (rate, positive) in probe_neurons(model, images).items():
        neuron = model.neurons()[name]
        if rate > 0:
            continue
        if positive.numel() == 0:
            if type(neuron).reset_threshold is not SpikingNeuron.reset_threshold:
                notes.append(f"layer {name} never fired on the first {len(images)} training images and its input "
                             f"is never positive: no threshold can wake it")
            continue
        theta = float(torch.quantile(positive, DEAD_QUANTILE))
        if not neuron.reset_threshold(theta, trainable=learn_threshold, dtype=model.compute_dtype(),
                                      device=images.device):
            continue  # the layer has no threshold to move
        notes.append(f"layer {name} never fired on the first {len(images)} training images (largest input "
                     f"{float(positive.max()):.3g} below the threshold): threshold re-initialised to {theta:.3g} "
                     f"(99th percentile of its positive inputs)")
    return notes


class TrainingMonitor:
    """Per-epoch firing rates of every neuron layer (share of outputs that are spikes) and mean
    gradient norms of every module with parameters, accumulated on the device (no sync per step)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.neurons = {name.removeprefix("body."): m for name, m in model.named_modules()
                        if isinstance(m, SpikingNeuron)}
        self.params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.layers = sorted({name.rsplit(".", 1)[0] if "." in name else name for name, _ in self.params})
        self._layer_of = [self.layers.index(name.rsplit(".", 1)[0] if "." in name else name)
                          for name, _ in self.params]
        self._handles: list[Any] = []
        self.reset()

    def reset(self) -> None:
        self.spikes = {name: 0.0 for name in self.neurons}
        self.slots = {name: 0 for name in self.neurons}
        self.grad_sq: Tensor | None = None
        self.steps = 0

    def __enter__(self) -> TrainingMonitor:
        for name, neuron in self.neurons.items():
            def hook(module: nn.Module, inputs: Any, output: Tensor, name: str = name) -> None:
                self.spikes[name] = self.spikes[name] + (output.detach() != 0).sum()
                self.slots[name] += output.numel()

            self._handles.append(neuron.register_forward_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def record_grads(self) -> None:
        """Add this step's per-layer gradient norms (call after ``backward``, before clipping)."""
        norms = [p.grad.detach().float().pow(2).sum() if p.grad is not None else None for _, p in self.params]
        device = next((n.device for n in norms if n is not None), None)
        if device is None:
            return
        sq = torch.zeros(len(self.layers), device=device)
        for k, n in zip(self._layer_of, norms, strict=True):
            if n is not None:
                sq[k] += n
        step = sq.sqrt()
        self.grad_sq = step if self.grad_sq is None else self.grad_sq + step
        self.steps += 1

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"firing_rate": {layer: share}, "grad_norm": {layer: mean over steps}}``."""
        rates = {name: float(self.spikes[name]) / self.slots[name] for name in self.neurons if self.slots[name]}
        grads = {}
        if self.grad_sq is not None and self.steps:
            grads = dict(zip(self.layers, (self.grad_sq / self.steps).tolist(), strict=True))
        return {"firing_rate": rates, "grad_norm": grads}
