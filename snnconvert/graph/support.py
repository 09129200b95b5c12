"""Whole-graph support check: one error that lists every unsupported node before any rewrite,
with a one-line summary grouped by cause (what the CLI prints without ``-v``)."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable

import torch
from torch import fx

from snnconvert.errors import UnsupportedGraphError
from snnconvert.graph.capture import location_of
from snnconvert.graph.ops import Kind, describe, hint_for, kind_of

NodeRule = Callable[[fx.GraphModule, fx.Node], "str | None"]

_PRODUCTS = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_MATMULS = {torch.matmul, torch.bmm, operator.matmul, "matmul", "bmm"}


def is_attention_product(node: fx.Node) -> bool:
    """``matmul`` / ``bmm`` of two activations (attention's Q K^T and A V; a scale is a scalar
    ``mul``, already supported). Per folded frame it is a product per time step, which the
    time-folded engine runs as is; ``graph.attention.SpikingAttention`` is the form whose
    operations OPF and energy count."""
    return (node.op in ("call_function", "call_method") and node.target in _MATMULS
            and len(node.args) >= 2 and all(isinstance(a, fx.Node) and a.op != "get_attr" for a in node.args[:2]))


def cause_of(gm: fx.GraphModule, node: fx.Node) -> str:
    """A short name for why ``node`` is unsupported, shared by every node of the same cause
    (``SiLU``, ``squeeze-excitation product``, ``LayerNorm``...)."""
    op = describe(gm, node)
    if node.target in _PRODUCTS and node.op in ("call_function", "call_method"):
        if any(isinstance(a, fx.Node) and a.op == "get_attr" for a in node.args[:2]):
            return "layer scale (mul by a parameter)"
        return "squeeze-excitation / gating product (mul)"
    if op == "layer_norm":
        return "LayerNorm"
    return op


_CAUSE_HINTS = {
    "layer scale (mul by a parameter)": "a multiplication by a learned tensor (layer scale) is not supported yet; "
    "fold it into the preceding layer's weights",
}


def _problems(gm: fx.GraphModule, extra_rules: tuple[NodeRule, ...]) -> list[tuple[str, str]]:
    """``(cause, description)`` of every offending node, in graph order."""
    found: list[tuple[str, str]] = []
    for node in gm.graph.nodes:
        op = describe(gm, node)
        if kind_of(gm, node) is Kind.UNSUPPORTED and not is_attention_product(node):
            cause = cause_of(gm, node)
            found.append((cause, f"{op} at {location_of(node)}: {_CAUSE_HINTS.get(cause) or hint_for(op)}"))
            continue
        for rule in extra_rules:
            problem = rule(gm, node)
            if problem:
                found.append((f"{op}: {problem.split(';')[0][:60]}", f"{op} at {location_of(node)}: {problem}"))
    return found


def unsupported_nodes(gm: fx.GraphModule, extra_rules: tuple[NodeRule, ...] = ()) -> list[str]:
    """Describe every node that the passes cannot handle (empty list when the graph is fine).

    ``extra_rules`` let a coding add its own constraints; each returns a problem text or None.
    """
    return [text for _, text in _problems(gm, extra_rules)]


def summarize(causes: list[str], *, stage: str = "conversion", shown: int = 6) -> str:
    """One line: ``90 unsupported nodes for conversion: 49 SiLU, 16 Sigmoid, ...`` (most common first)."""
    counts = Counter(causes).most_common()
    parts = [f"{n} {cause}" for cause, n in counts[:shown]]
    if len(counts) > shown:
        parts.append(f"{sum(n for _, n in counts[shown:])} of {len(counts) - shown} other kinds")
    noun = "node" if len(causes) == 1 else "nodes"
    return f"{len(causes)} unsupported {noun} for {stage}: " + ", ".join(parts)


def check_supported(
    gm: fx.GraphModule, extra_rules: tuple[NodeRule, ...] = (), *, stage: str = "conversion"
) -> None:
    """Raise :class:`UnsupportedGraphError` listing all offending nodes at once; its ``summary``
    is one line grouped by cause."""
    found = _problems(gm, extra_rules)
    if found:
        problems = [text for _, text in found]
        error = UnsupportedGraphError(
            problems,
            hint=f"Nothing was changed. Fix these {len(problems)} node(s) for {stage}, "
            "or see `snnconvert models --check` for architectures known to convert.",
        )
        error.summary = summarize([cause for cause, _ in found], stage=stage)  # type: ignore[attr-defined]
        raise error
