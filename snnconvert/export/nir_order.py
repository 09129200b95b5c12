"""A NIR graph that tools running its nodes in depth-first order still run in order.

norse 1.1 and sinabs 3.1 load NIR through ``nirtorch.load``, which executes the nodes in the
pre-order of a depth-first walk from the input, children in the order of the edges. On a branch
that walk reaches the node where the branches meet (a residual sum) from the first branch, before
the other branch has run, and that node then reads the other branch's output of the previous time
step (norse) or nothing at all (sinabs, one pass over all steps). SpikingJelly's
``nirtorch.nir_to_torch`` sorts the graph topologically and is not affected.

:func:`order_depth_first` makes the walk's pre-order equal the graph's topological order (the
order the exporter wrote the nodes in): for each node ``a`` and its successor ``b`` in that
order, the edge ``a -> b`` is moved to the front of ``a``'s edges; where there is no such edge,
a zero-weight node ``Z`` (a ``Conv2d`` or ``Linear`` from ``a``'s output shape to ``b``'s input
shape) and the edges ``a -> Z -> b`` are added instead. The walk then runs ``a``'s chain first,
which by induction visits every later node in order. ``Z`` adds exactly 0 to ``b``'s input, so
the graph computes what it did; a branching network gets one such node per branch, a chain none.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from snnconvert.errors import SnnConvertError

ORDERS = ("depth-first", "plain")
"""How the NIR export orders its graph: ``depth-first`` adds the ordering nodes and edges of
:func:`order_depth_first`; ``plain`` writes the graph as it is."""

ORDERING_METADATA = "snnconvert.ordering"
"""Metadata key of an ordering node (its value: what it is for)."""


def _pooled(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair(value: Any) -> tuple[int, int]:
    values = np.asarray(value).reshape(-1)
    return (int(values[0]), int(values[-1]))


def output_shape(primitive: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample output shape of a NIR ``primitive`` fed ``shape`` (no batch axis)."""
    import nir

    if isinstance(primitive, nir.Input):
        return tuple(int(s) for s in np.asarray(primitive.input_type["input"]).reshape(-1))
    if isinstance(primitive, nir.Conv2d):
        kh, kw = primitive.weight.shape[2:]
        (sh, sw), (ph, pw), (dh, dw) = _pair(primitive.stride), _pair(primitive.padding), _pair(primitive.dilation)
        return (int(primitive.weight.shape[0]), _pooled(shape[1], kh, sh, ph, dh), _pooled(shape[2], kw, sw, pw, dw))
    if isinstance(primitive, (nir.AvgPool2d, nir.SumPool2d)):
        (kh, kw), (sh, sw), (ph, pw) = (_pair(primitive.kernel_size), _pair(primitive.stride),
                                        _pair(primitive.padding))
        return (shape[0], _pooled(shape[1], kh, sh, ph), _pooled(shape[2], kw, sw, pw))
    if isinstance(primitive, nir.Flatten):
        rank = len(shape) + 1  # the dims count the batch axis when non-negative
        start = primitive.start_dim if primitive.start_dim < 0 else primitive.start_dim - rank
        end = primitive.end_dim if primitive.end_dim < 0 else primitive.end_dim - rank
        start, end = start + len(shape), end + len(shape)
        return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
    if isinstance(primitive, (nir.Affine, nir.Linear)):
        return (int(primitive.weight.shape[0]),)
    return shape  # neurons, Output: the shape of their input


def _axis(size_in: int, size_out: int) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a convolution that maps ``size_in`` to ``size_out`` positions
    (its weights are zero: only the size matters), with the smallest kernel."""
    for stride in range(1, size_in + 1):
        for kernel in range(1, stride + 1):
            for padding in range(kernel):
                if _pooled(size_in, kernel, stride, padding) == size_out:
                    return kernel, stride, padding
    for kernel in (1, 2):  # growing: stride 1 and padding (any padding is allowed then)
        padding = (size_out - size_in + kernel - 1) // 2
        if padding >= 0 and _pooled(size_in, kernel, 1, padding) == size_out:
            return kernel, 1, padding
    raise ValueError(f"no convolution maps {size_in} positions to {size_out}")


def zero_node(source: tuple[int, ...], target: tuple[int, ...], purpose: str) -> Any:
    """A NIR node with zero weights from per-sample shape ``source`` to ``target`` (3-d maps: a
    ``Conv2d``; flat: a ``Linear``), marked as an ordering node; None when no such node exists."""
    import nir

    if len(source) == 3 and len(target) == 3:
        (kh, sh, ph), (kw, sw, pw) = _axis(source[1], target[1]), _axis(source[2], target[2])
        node = nir.Conv2d(input_shape=np.array(source[1:]), weight=np.zeros((target[0], source[0], kh, kw),
                                                                             dtype=np.float32),
                          stride=np.array([sh, sw]), padding=np.array([ph, pw]), dilation=np.array([1, 1]), groups=1,
                          bias=np.zeros(target[0], dtype=np.float32))
    elif len(source) == 1 and len(target) == 1:
        node = nir.Linear(weight=np.zeros((target[0], source[0]), dtype=np.float32))
    else:
        return None
    node.metadata = {ORDERING_METADATA: purpose}
    return node


def order_depth_first(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> tuple[dict[str, Any],
                                                                                    list[tuple[str, str]], list[str]]:
    """``(nodes, edges, added)``: the graph with the ordering edges and zero nodes of the module
    docstring (``added``: the new nodes' names). ``nodes`` must list the graph in a topological
    order starting at the input, as the exporter writes it."""
    order = list(nodes)
    parents: dict[str, list[str]] = {name: [] for name in order}
    for source, target in edges:
        parents[target].append(source)
    shapes: dict[str, tuple[int, ...]] = {}
    for name in order:
        fed = shapes[parents[name][0]] if parents[name] else ()
        shapes[name] = output_shape(nodes[name], fed)
    new_nodes = dict(nodes)
    chain: list[tuple[str, str]] = []
    added: list[str] = []
    existing = set(edges)
    for a, b in zip(order, order[1:], strict=False):
        if (a, b) in existing:
            chain.append((a, b))
            continue
        if not parents[b]:
            raise SnnConvertError(f"NIR export: node {b} has no input")
        name, suffix = f"order_{a}_{b}", 0
        while name in new_nodes:
            suffix += 1
            name = f"order_{a}_{b}_{suffix}"
        node = zero_node(shapes[a], shapes[parents[b][0]], f"runs {b} after {a} in a depth-first walk; adds 0")
        if node is None:
            raise SnnConvertError(f"NIR export cannot order {b} after {a} for depth-first readers (from "
                                  f"{len(shapes[a])}-d to {len(shapes[parents[b][0]])}-d frames): export with the "
                                  "plain order (SpikingJelly runs it; norse and sinabs would not)")
        new_nodes[name] = node
        added.append(name)
        chain += [(a, name), (name, b)]
    chained = set(chain)
    return new_nodes, chain + [e for e in edges if e not in chained], added
