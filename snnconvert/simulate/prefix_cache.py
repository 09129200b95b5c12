"""Repeated evaluation of one SNN on fixed images while a few neuron layers change.

A search over per-layer settings (``--Ts auto``) evaluates the same network on the same images
dozens of times, and each candidate changes one layer or a few. Everything the body computes
before the first changed layer is the same as in the last evaluation, so :class:`PrefixRunner`
keeps it: at every *cut* of the body (a point in the node order where exactly one computed value
is still needed later), it stores that value per batch, tagged with the settings of every neuron
layer before the cut. A later evaluation starts from the deepest cut whose tag matches the
current settings and re-runs only the nodes after it. Values that are exactly integers (spike
trains) are stored as int8, the rest as they are; the cache stops growing at ``max_bytes``.

Results are those of running the whole network: the nodes after the cut are the same modules on
the same inputs (tested to be bit-identical). The runner also stops an evaluation early once
more predictions disagree with the reference than ``max_mismatches`` allows; the caller then
knows only that the target failed and an upper bound on the agreement. With ``head`` the first
batch holds only the first ``head`` images: a search puts the images that disagreed before there,
so a candidate that fails on them stops after one small batch, and it can rank candidates on that
batch alone (``evaluate(..., batches=1)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

_DEAD = object()  # stands for values before the cut that nothing after it reads


@dataclass
class Evaluation:
    """One evaluation: how many images were compared, how many disagreed, whether it stopped early."""

    images: int
    mismatches: int
    stopped_early: bool
    total: int
    mismatched: tuple[int, ...] = ()  # positions (in the runner's image order) of the images that disagreed

    @property
    def agreement(self) -> float:
        """The agreement on all images; an upper bound when the evaluation stopped early."""
        return 1.0 - self.mismatches / max(self.total, 1)


def _pack(value: Tensor) -> Tensor:
    small = value.to(torch.int8)
    return small if torch.equal(small.to(value.dtype), value) else value.clone()


class _FromCut(fx.Interpreter):
    """Runs the body from a cut, recording the live value at each later cut it passes."""

    def __init__(self, module: fx.GraphModule, on_cut: Callable[[int, Tensor], None], cut_index: dict[fx.Node, int],
                 cut_live: dict[int, fx.Node]) -> None:
        super().__init__(module, garbage_collect_values=True)
        self.on_cut, self.cut_index, self.cut_live = on_cut, cut_index, cut_live

    def run_node(self, n: fx.Node) -> Any:
        index = self.cut_index.get(n)
        if index is not None:
            self.on_cut(index, self.env[self.cut_live[index]])
        return super().run_node(n)


class PrefixRunner:
    """Predictions of ``snn`` on ``images`` (``batch`` at a time) that reuse the unchanged prefix.

    ``neuron_names`` maps each neuron layer to its body module path; the tag of a cut is the
    tuple of ``setting(module)`` of the neuron layers before it (for SWS: the silent period).
    """

    def __init__(self, snn: nn.Module, images: Tensor, neuron_names: list[str], setting: Callable[[nn.Module], Any],
                 *, dtype: torch.dtype = torch.float32, batch: int = 250, max_bytes: int = 4 << 30,
                 head: int = 0) -> None:
        self.snn, self.images, self.dtype, self.batch = snn, images, dtype, batch
        total = len(images)
        head = min(max(head, 0), total)
        starts = ([0] if head else []) + list(range(head, total, batch))
        self.bounds = [(a, min(b, total)) for a, b in zip(starts, [*starts[1:], total], strict=True)]
        self.setting, self.max_bytes, self.bytes = setting, max_bytes, 0
        body = snn.body
        self.body: fx.GraphModule | None = body if isinstance(body, fx.GraphModule) else None
        self.cache: dict[tuple[int, int], tuple[tuple, Tensor]] = {}
        self.evaluations = 0
        self.nodes_run = 0  # body nodes executed, against the nodes_full that whole runs would have executed
        self.nodes_full = 0
        if self.body is None:
            return
        nodes = list(self.body.graph.nodes)
        position = {n: i for i, n in enumerate(nodes)}
        last_use = {n: max((position[u] for u in n.users), default=position[n]) for n in nodes}
        self.nodes = nodes
        # neuron layers in node order, and the cuts: before node i exactly one earlier value is read at or after i
        modules = dict(self.body.named_modules())
        self.neuron_positions = [(position[n], n.target) for n in nodes
                                 if n.op == "call_module" and n.target in set(neuron_names)]
        self.neuron_modules = {target: modules[target] for _, target in self.neuron_positions}
        self.cut_live: dict[int, fx.Node] = {}
        for i, node in enumerate(nodes):
            if node.op == "output" or i == 0:
                continue
            live = [m for m in nodes[:i] if last_use[m] >= i]
            if len(live) == 1 and live[0].op != "placeholder":
                self.cut_live[i] = live[0]
        self.cut_index = {nodes[i]: i for i in self.cut_live}

    def _tag(self, cut: int) -> tuple:
        return tuple(self.setting(self.neuron_modules[t]) for pos, t in self.neuron_positions if pos < cut)

    def _store(self, cut: int, batch_index: int, value: Tensor, tag: tuple) -> None:
        key = (cut, batch_index)
        old = self.cache.get(key)
        if old is not None and old[0] == tag:
            return
        packed = _pack(value)
        size = packed.numel() * packed.element_size()
        freed = old[1].numel() * old[1].element_size() if old is not None else 0
        if self.bytes - freed + size > self.max_bytes:
            return
        self.cache[key] = (tag, packed)
        self.bytes += size - freed

    @torch.no_grad()
    def _predict_batch(self, batch_index: int, images: Tensor) -> Tensor:
        snn = self.snn
        if self.body is None:
            return snn(images.to(self.dtype)).argmax(1)
        self.nodes_full += len(self.nodes)
        tags = {cut: self._tag(cut) for cut in self.cut_live}
        start = None
        for cut in sorted(self.cut_live, reverse=True):
            hit = self.cache.get((cut, batch_index))
            if hit is not None and hit[0] == tags[cut]:
                start = cut
                break

        def on_cut(cut: int, value: Tensor) -> None:
            if cut != start:
                self._store(cut, batch_index, value, tags[cut])

        runner = _FromCut(self.body, on_cut, self.cut_index, self.cut_live)
        if start is None:
            frames = snn.encoder(images.to(self.dtype))
            out = runner.run(frames)
            self.nodes_run += len(self.nodes)
        else:
            live = self.cut_live[start]
            stored = self.cache[(start, batch_index)][1]
            env: dict[fx.Node, Any] = {n: _DEAD for n in self.nodes[:start]}
            env[live] = stored.to(self.dtype) if stored.dtype == torch.int8 else stored
            out = runner.run(None, initial_env=env)
            self.nodes_run += len(self.nodes) - start
        return snn.decoder(out).argmax(1)

    @property
    def share_run(self) -> float:
        """The share of body nodes executed, against running the whole body every time."""
        return self.nodes_run / self.nodes_full if self.nodes_full else 1.0

    def evaluate(self, reference: Tensor, max_mismatches: int | None = None,
                 batches: int | None = None) -> Evaluation:
        """Compare the predictions with ``reference`` batch by batch; stop once the mismatches
        exceed ``max_mismatches`` (None: never), or after the first ``batches`` batches."""
        self.evaluations += 1
        mismatched: list[int] = []
        seen, total = 0, len(self.images)
        for b, (i, j) in enumerate(self.bounds):
            if batches is not None and b >= batches:
                return Evaluation(seen, len(mismatched), True, total, tuple(mismatched))
            wrong = self._predict_batch(b, self.images[i:j]) != reference[i:j]
            mismatched += (torch.nonzero(wrong).flatten() + i).tolist()
            seen += j - i
            if max_mismatches is not None and len(mismatched) > max_mismatches and seen < total:
                return Evaluation(seen, len(mismatched), True, total, tuple(mismatched))
        return Evaluation(seen, len(mismatched), False, total, tuple(mismatched))
