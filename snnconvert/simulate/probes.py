"""Measure what a spiking network's synapses receive during a run (for OPF and energy)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from snnconvert.neurons.base import nonzero_per_row
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import SynapseConv2d, SynapseLinear


@dataclass
class SynapseLoad:
    """One conv/linear synapse layer, per sample: its dense MACs (the ANN's operations for the
    same layer) and the non-zero inputs it received over all frames."""

    name: str
    macs: float  # per sample, one dense pass
    input_size: int  # input elements per sample per frame
    input_events: float  # non-zero inputs per sample over all frames
    frames: int

    @property
    def rate(self) -> float:
        """r_l: non-zero inputs per input element per inference (all frames and lanes)."""
        return self.input_events / max(self.input_size, 1)

    @property
    def synaptic_ops(self) -> float:
        """#SNN_ops = r_l * #ANN_ops (eq 11 of the M-LIF paper)."""
        return self.rate * self.macs


def _macs(module: nn.Module, inputs: Tensor, output: Tensor) -> float:
    per_sample_out = output[0].numel()
    if isinstance(module, SynapseConv2d):
        kh, kw = module.kernel_size
        return float(per_sample_out * (module.in_channels // module.groups) * kh * kw)
    return float(per_sample_out * module.in_features)


@contextmanager
def synapse_probe(snn: SpikingNetwork) -> Iterator[dict[str, SynapseLoad]]:
    """Within the block, accumulate :class:`SynapseLoad` per synapse (averaged per sample)."""
    loads: dict[str, SynapseLoad] = {}
    samples: dict[str, int] = {}
    frames = int(snn.info.get("frames", 1))
    hooks = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            x = inputs[0]
            steps = module.frame_bias_gain.numel() if hasattr(module, "frame_bias_gain") else frames
            batch = x.shape[0] // steps
            events = float(nonzero_per_row(x.reshape(x.shape[0], -1)).sum())
            load = loads.get(name)
            if load is None:
                load = loads[name] = SynapseLoad(name, _macs(module, x, output), x[0].numel(), 0.0, steps)
                samples[name] = 0
            total = load.input_events * samples[name] + events
            samples[name] += batch
            load.input_events = total / samples[name]
        return hook

    def attention_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            # products of two spiking tensors: dense MACs vs the accumulates binary spikes need
            # (SpikingAttention.products); input_size = dense MACs, so rate * macs = accumulates
            batch = inputs[0].shape[0] // frames
            dense, adds = module.products(*inputs)
            load = loads.get(name)
            if load is None:
                load = loads[name] = SynapseLoad(name, dense, max(int(dense), 1), 0.0, frames)
                samples[name] = 0
            total = load.input_events * samples[name] + adds
            samples[name] += batch
            load.input_events = total / samples[name]
        return hook

    from snnconvert.graph.attention import SpikingAttention

    for name, module in snn.body.named_modules():
        if isinstance(module, (SynapseConv2d, SynapseLinear)):
            hooks.append(module.register_forward_hook(make_hook(name)))
        elif isinstance(module, SpikingAttention):
            hooks.append(module.register_forward_hook(attention_hook(name)))
    try:
        with torch.no_grad():
            yield loads
    finally:
        for h in hooks:
            h.remove()
