"""Latency along a graph: the step at which each node's first frame appears."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import fx, nn

from snnconvert.graph.ops import Kind, kind_of, module_of


@dataclass
class PathLatency:
    """Delay (in steps) at which each node's first frame appears, and the critical path."""

    delays: dict[str, int]
    neuron_layers_on_path: int
    output_delay: int
    alignments: list[dict]  # per residual add / concat: delays of its inputs


def _no_layer(_module: nn.Module | None) -> bool:
    return False


def path_latency(gm: fx.GraphModule, added_delay: Callable[[fx.Node, nn.Module | None], int], *,
                 counts_as_layer: Callable[[nn.Module | None], bool] = _no_layer) -> PathLatency:
    """Propagate delays through ``gm``: each node starts when its latest input has started,
    plus ``added_delay(node, module)`` (a neuron's silent period, the frames a temporal squeeze
    waits for, ...). ``counts_as_layer`` marks the modules counted in
    ``neuron_layers_on_path`` (the deepest count of such layers on any path to the output).

    Multi-input ops (residual adds, concatenations) wait for their latest input; the earlier
    branches are delayed to match, which the folded engine does implicitly by aligning frames.
    """
    delays: dict[str, int] = {}
    depth: dict[str, int] = {}
    alignments = []
    for node in gm.graph.nodes:
        inputs = node.all_input_nodes
        d = max((delays[i.name] for i in inputs), default=0)
        n = max((depth[i.name] for i in inputs), default=0)
        mod = module_of(gm, node)
        d += int(added_delay(node, mod))
        n += int(counts_as_layer(mod))
        tensor_inputs = [i for i in inputs if kind_of(gm, i) is not Kind.SHAPE]
        if len({delays[i.name] for i in tensor_inputs}) > 1:
            alignments.append(
                {"node": node.name, "input_delays": {i.name: delays[i.name] for i in tensor_inputs},
                 "added_delay": {i.name: d - delays[i.name] for i in tensor_inputs}}
            )
        delays[node.name] = d
        depth[node.name] = n
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return PathLatency(delays, depth[out.name], delays[out.name], alignments)


def attribute_delay(name: str) -> Callable[[fx.Node, nn.Module | None], int]:
    """An ``added_delay`` that reads the integer attribute ``name`` of each module (0 where a
    module has none), e.g. ``attribute_delay("Ts")`` for silent periods."""

    def delay(_node: fx.Node, module: nn.Module | None) -> int:
        value = getattr(module, name, 0) if module is not None else 0
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0

    return delay
