"""Measure what a spiking network's synapses receive during a run (for OPF and energy)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from snnconvert.neurons.base import nonzero_total
from snnconvert.simulate.chunks import chunk_aware
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


def matmul_products(a: Tensor, b: Tensor, out: Tensor) -> tuple[float, float, int]:
    """``(dense MACs per row, non-zero products over all rows, rows)`` of ``out = a @ b``
    between two activations: a product adds ``a[..., i, l] * b[..., l, j]`` for every pair of
    non-zero operands, one accumulate each for spikes (as :meth:`SpikingAttention.products`).
    Rows are the folded (time step, sample) frames of dim 0 (one row for a 2-D product)."""
    inner = a.shape[-1]
    rows = out.shape[0] if out.dim() >= 3 else 1
    dense = float(out.numel() // max(rows, 1) * inner)
    nz_a, nz_b = a.ne(0).to(torch.float32), b.ne(0).to(torch.float32)
    return dense, float((nz_a @ nz_b).sum()), rows


_MATMUL_CALLS: dict[Any, Callable[[Tensor, Tensor], Tensor]] = {
    "matmul": torch.matmul, "bmm": torch.bmm, "__matmul__": torch.matmul,
}


@contextmanager
def counted_matmuls(gm: nn.Module, on_product: Callable[[str, Tensor, Tensor, Tensor], None]) -> Iterator[None]:
    """Within the block, every functional ``matmul`` / ``bmm`` / ``@`` between two activations
    in the fx graph ``gm`` (the attention products the support check lets through outside a
    :class:`~snnconvert.graph.attention.SpikingAttention`) also calls ``on_product(node name,
    a, b, out)``. The nodes are re-pointed to a counting wrapper and restored afterwards."""
    from snnconvert.graph.support import is_attention_product

    nodes = [n for n in gm.graph.nodes if is_attention_product(n)] if isinstance(gm, fx.GraphModule) else []
    if not nodes:
        yield
        return
    saved = [(n, n.op, n.target) for n in nodes]

    def wrapper(name: str, call: Callable[[Tensor, Tensor], Tensor]) -> Callable[..., Tensor]:
        def counted_matmul(a: Tensor, b: Tensor) -> Tensor:
            out = call(a, b)
            on_product(name, a, b, out)
            return out
        return counted_matmul

    for node in nodes:
        call = _MATMUL_CALLS.get(node.target, node.target) if node.op == "call_method" else node.target
        if call is operator.matmul:
            call = torch.matmul
        node.op, node.target = "call_function", wrapper(node.name, call)
    gm.recompile()
    try:
        yield
    finally:
        for node, op, target in saved:
            node.op, node.target = op, target
        gm.recompile()


@contextmanager
def synapse_probe(snn: SpikingNetwork) -> Iterator[dict[str, SynapseLoad]]:
    """Within the block, accumulate :class:`SynapseLoad` per synapse (averaged per sample)."""
    loads: dict[str, SynapseLoad] = {}
    samples: dict[str, int] = {}
    totals: dict[str, float] = {}  # events summed over all samples (exact: integers in float64)
    frames = int(snn.info.get("frames", 1))
    hooks = []

    def count(name: str, batch: int, events: float) -> None:
        # a time chunk after the first (snn.time_window) sees the samples the first one counted
        window = snn.time_window
        if window is None or window[0] == 0:
            samples[name] += batch
        totals[name] += events
        loads[name].input_events = totals[name] / max(samples[name], 1)

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            x = inputs[0]
            steps = module.frame_bias_gain.numel() if hasattr(module, "frame_bias_gain") else frames
            window = snn.time_window
            batch = x.shape[0] // (steps if window is None else window[1] - window[0])
            events = nonzero_total(x)
            if name not in loads:
                loads[name] = SynapseLoad(name, _macs(module, x, output), x[0].numel(), 0.0, steps)
                samples[name], totals[name] = 0, 0.0
            count(name, batch, events)
        return chunk_aware(hook)

    def attention_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            # products of two spiking tensors: dense MACs vs the accumulates binary spikes need
            # (SpikingAttention.products); input_size = dense MACs, so rate * macs = accumulates
            batch = inputs[0].shape[0] // frames
            dense, adds = module.products(*inputs)
            if name not in loads:
                loads[name] = SynapseLoad(name, dense, max(int(dense), 1), 0.0, frames)
                samples[name], totals[name] = 0, 0.0
            count(name, batch, adds)
        return hook

    def matmul_hook(name: str, a: Tensor, b: Tensor, out: Tensor) -> None:
        # a functional product of two activations: counted as SpikingAttention's are
        dense, adds, rows = matmul_products(a, b, out)
        window = snn.time_window  # per-frame products: a time chunk holds window[1] - window[0] steps
        batch = max(1, rows // (frames if window is None else window[1] - window[0]))
        if name not in loads:
            loads[name] = SynapseLoad(name, dense, max(int(dense), 1), 0.0, frames)
            samples[name], totals[name] = 0, 0.0
        count(name, batch, adds)

    from snnconvert.graph.attention import SpikingAttention

    for name, module in snn.body.named_modules():
        if isinstance(module, (SynapseConv2d, SynapseLinear)):
            hooks.append(module.register_forward_hook(make_hook(name)))
        elif isinstance(module, SpikingAttention):
            hooks.append(module.register_forward_hook(attention_hook(name)))
    try:
        with torch.no_grad(), counted_matmuls(snn.body, matmul_hook):
            yield loads
    finally:
        for h in hooks:
            h.remove()
