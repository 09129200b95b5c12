"""Run an exported NIR file in the tools that read NIR (norse, SpikingJelly, sinabs), the way
their documentation says, and compare with snnconvert's simulator.

Each runner loads the file with the tool's own ``from_nir`` (nothing in the file edited), feeds
the image as a constant input for ``T`` steps, averages the output over the steps (the file's
``decoder``) and counts the spikes of every neuron node. What each tool does with NIR's ``IF``
(read from their sources, norse 1.1.0, SpikingJelly 2.0.0, sinabs 3.1.3):

* **norse** ``from_nir(graph, dt=...)``: ``v += I``, spike when ``v > v_threshold``, reset to 0;
  reads ``SumPool2d`` (as a 1-norm pool) but not ``AvgPool2d``; LIF ``v += dt/tau (v_leak - v + I)``.
* **SpikingJelly** ``import_from_nir(graph, dt=...)``: needs ``r = 1/dt`` and one threshold and
  reset per layer; ``v += I``, spike when ``v >= v_threshold``, reset to ``v_reset``; reads
  ``AvgPool2d`` but not ``SumPool2d``; LIF with ``r = 1`` as ``v += (I - v)/tau``. A file whose
  metadata says ``reset: subtract ...`` (``--nir-reset subtract``) runs with ``v_reset = None``
  on every neuron, SpikingJelly's soft reset, as :meth:`NirExport.how_to_run` tells a user.
* norse's IF (``IAFCell``) always resets to ``v_reset``: it runs such a file with the hard reset.
* **sinabs** ``from_nir(graph, batch_size=B)``: every IF becomes ``IAFSqueeze`` with
  ``MultiSpike`` (``floor(v / theta)`` spikes per step), reset by subtraction and the membrane
  clipped below at ``-theta``: a different neuron from NIR's (and from the simulator's), so
  :func:`run_consumer` with ``sinabs_as_nir=True`` sets the loaded layers to one spike per step
  (in the membrane's dtype, so that sinabs also runs in float64), the file's reset and no lower
  bound before running (three attributes after loading; the file is still unedited). Reads
  ``SumPool2d``, not ``AvgPool2d``. Its multi-spike neuron returns float32 spikes, so as read it
  runs in float32 only.

The tools are test-only dependencies (``requirements/nir-consumers.txt``, installed with
``--no-deps``: sinabs pins an older ``nir`` that cannot read today's files, SpikingJelly pulls
torchaudio and its own torch).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snnconvert.export.nir import states_subtraction

CONSUMERS = ("norse", "spikingjelly", "sinabs")
"""The tools :func:`run_consumer` runs, by the name of their Python package."""


@dataclass
class ConsumerRun:
    """One tool's result on a NIR file: the logits (mean output over the T steps, (B, classes))
    and the spikes each neuron node emitted over all steps and images."""

    consumer: str
    logits: np.ndarray
    spike_counts: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The tools' import warnings and log lines silenced for the duration (restored after)."""
    previous = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def _count_spikes(module: torch.nn.Module, names: set[str]) -> tuple[dict[str, float], list[Any]]:
    counts: dict[str, float] = dict.fromkeys(names, 0.0)

    def hook(name: str):
        def record(_module, _inputs, output) -> None:
            out = output[0] if isinstance(output, tuple) else output
            counts[name] += float(out.detach().double().sum())
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in module.named_children() if name in names]
    return counts, handles


def _neuron_nodes(graph: Any) -> set[str]:
    import nir

    return {name for name, node in graph.nodes.items() if isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF))}


def _stepped(module: torch.nn.Module, images: torch.Tensor, steps: int) -> np.ndarray:
    """Mean over ``steps`` of a stateful ``module(x, state) -> (out, state)`` fed ``images`` each step."""
    state, total = None, None
    with torch.no_grad():
        for _ in range(steps):
            out, state = module(images, state)
            total = out.double() if total is None else total + out.double()
    return (total / steps).numpy()


def run_consumer(consumer: str, path: str | Path, images: torch.Tensor, T: int, *, dt: float = 1e-4,
                 sinabs_as_nir: bool = False, dtype: torch.dtype = torch.float32) -> ConsumerRun:
    """Load ``path`` with ``consumer`` (one of :data:`CONSUMERS`) and run ``images`` (B, C, H, W)
    for ``T`` steps of ``dt`` in ``dtype`` (the tools' default float32; float64 makes a comparison
    independent of the summation order of the machine's kernels); raises the tool's own error
    when it cannot load or run the file."""
    import nir

    graph = nir.read(str(path))
    names = _neuron_nodes(graph)
    images = images.to(dtype)
    with _quiet():
        if consumer == "norse":
            from norse.torch import from_nir

            module = from_nir(graph, dt=dt).to(dtype)
            counts, handles = _count_spikes(module, names)
            logits = _stepped(module, images, T)
        elif consumer == "spikingjelly":
            from spikingjelly.activation_based.nir_exchange import import_from_nir

            module = import_from_nir(graph, dt=dt, dtype=dtype)
            if states_subtraction(graph.metadata):  # the file's stated convention: SpikingJelly's soft reset
                from spikingjelly.activation_based.neuron import BaseNode

                for layer in module.modules():
                    if isinstance(layer, BaseNode):
                        layer.v_reset = None
            counts, handles = _count_spikes(module, names)
            logits = _stepped(module, images, T)
        elif consumer == "sinabs":
            counts, handles, logits = _run_sinabs(graph, names, images, T, sinabs_as_nir)
        else:
            raise ValueError(f"consumer must be one of {CONSUMERS}, not {consumer!r}")
    for handle in handles:
        handle.remove()
    return ConsumerRun(consumer, logits, counts)


SINABS_FRAMES = 2048
"""Frames (images x T) sinabs runs in one pass: it folds the steps into the batch, so a whole
evaluation at once would hold every step's activations (200 ResNet-20 images x 32 steps in
float64: over 20 GB)."""


def _run_sinabs(graph: Any, names: set[str], images: torch.Tensor, T: int,
                as_nir: bool) -> tuple[dict[str, float], list[Any], np.ndarray]:
    """sinabs on ``images`` in passes of at most :data:`SINABS_FRAMES` frames (each pass a module
    built for its batch size, as ``from_nir`` requires); counts summed over the passes."""
    counts: dict[str, float] = dict.fromkeys(names, 0.0)
    logits = []
    per_pass = max(1, SINABS_FRAMES // max(T, 1))
    spike_fn = _single_spike_in_dtype() if as_nir else None
    for chunk in images.split(per_pass):
        part, handles, out = _sinabs_pass(graph, names, chunk, T, spike_fn)
        for handle in handles:
            handle.remove()
        for name, value in part.items():
            counts[name] += value
        logits.append(out)
    return counts, [], np.concatenate(logits)


def _single_spike_in_dtype() -> type:
    """sinabs' one spike per step, in the membrane's dtype (sinabs' own ``SingleSpike`` returns float32)."""
    from sinabs.activation import SingleSpike

    class SingleSpikeInDtype(SingleSpike):
        @staticmethod
        def forward(ctx, v_mem, spike_threshold, surrogate_grad_fn):  # noqa: ANN001, ANN205 - sinabs' signature
            return SingleSpike.forward(ctx, v_mem, spike_threshold, surrogate_grad_fn).to(v_mem.dtype)

    return SingleSpikeInDtype


def _sinabs_pass(graph: Any, names: set[str], images: torch.Tensor, T: int,
                 spike_fn: type | None) -> tuple[dict[str, float], list[Any], np.ndarray]:
    """One sinabs pass; ``spike_fn`` set: its layers set to the file's neuron (one spike a step
    with ``spike_fn``, the file's reset, no lower bound)."""
    import sinabs
    from sinabs.activation import MembraneReset, MembraneSubtract

    batch = images.shape[0]
    module = sinabs.from_nir(graph, batch_size=batch).to(images.dtype)
    if spike_fn is not None:
        for name, layer in module.named_children():
            if name in names:
                node = graph.nodes[name]
                layer.spike_fn = spike_fn
                layer.min_v_mem = None
                soft = node.metadata.get("reset") == "subtract" or states_subtraction(graph.metadata)
                layer.reset_fn = MembraneSubtract() if soft else MembraneReset(reset_value=0.0)
    counts, handles = _count_spikes(module, names)
    frames = images.unsqueeze(1).expand(batch, T, *images.shape[1:]).reshape(batch * T, *images.shape[1:])
    with torch.no_grad():
        out = module(frames)
    out = out[0] if isinstance(out, tuple) else out
    logits = out.double().reshape(batch, T, -1).mean(dim=1).numpy()
    return counts, handles, logits


def simulator_run(snn: Any, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> ConsumerRun:
    """snnconvert's own logits and spike counts per neuron node (fx node names, as in the file),
    on a copy of ``snn`` in ``dtype``."""
    import copy

    from torch import fx

    net = copy.deepcopy(snn).to(dtype).eval()
    body = net.body
    targets = {str(n.target): n.name for n in body.graph.nodes if n.op == "call_module"} \
        if isinstance(body, fx.GraphModule) else {}
    counts: dict[str, float] = {}
    handles = []
    for target, neuron in net.neurons().items():
        name = targets.get(target, target)
        counts[name] = 0.0

        def record(_m, _i, out, name=name) -> None:
            counts[name] += float(out.detach().double().sum())
        handles.append(neuron.register_forward_hook(record))
    try:
        with torch.no_grad():
            logits = net(images.to(dtype)).double().numpy()
    finally:
        for handle in handles:
            handle.remove()
    return ConsumerRun("snnconvert", logits, counts)
