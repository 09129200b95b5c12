"""The trainable copy of a converted SNN, and optional gradient checkpointing of neuron layers.

Surrogate gradients live in :mod:`snnconvert.neurons.trainable` (``make_trainable`` returns a
deep copy whose forward is bit-exact with the converted network).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from snnconvert.finetune.config import FinetuneConfig
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.neurons.trainable import make_trainable, neuron_parameters
from snnconvert.simulate.network import SpikingNetwork


def trainable_copy(snn: SpikingNetwork, config: FinetuneConfig) -> tuple[SpikingNetwork, dict[str, list[nn.Parameter]]]:
    """A deep copy of ``snn`` that trains, and its parameters by group (threshold, leak, other)."""
    model = make_trainable(snn, surrogate=config.surrogate, learn_threshold=config.learn_threshold,
                           learn_leak=config.learn_leak, per_channel=config.per_channel)
    for m in model.modules():  # synapse weights and biases always train (also after a reload)
        if not isinstance(m, SpikingNeuron):
            for p in m.parameters(recurse=False):
                p.requires_grad_(p.is_floating_point())
    return model, neuron_parameters(model)


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
