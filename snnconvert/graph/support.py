"""Whole-graph support check: one error that lists every unsupported node before any rewrite."""

from __future__ import annotations

from collections.abc import Callable

from torch import fx

from snnconvert.errors import UnsupportedGraphError
from snnconvert.graph.capture import location_of
from snnconvert.graph.ops import Kind, describe, hint_for, kind_of

NodeRule = Callable[[fx.GraphModule, fx.Node], "str | None"]


def unsupported_nodes(gm: fx.GraphModule, extra_rules: tuple[NodeRule, ...] = ()) -> list[str]:
    """Describe every node that the passes cannot handle (empty list when the graph is fine).

    ``extra_rules`` let a coding add its own constraints; each returns a problem text or None.
    """
    problems: list[str] = []
    for node in gm.graph.nodes:
        op = describe(gm, node)
        if kind_of(gm, node) is Kind.UNSUPPORTED:
            problems.append(f"{op} at {location_of(node)}: {hint_for(op)}")
            continue
        for rule in extra_rules:
            problem = rule(gm, node)
            if problem:
                problems.append(f"{op} at {location_of(node)}: {problem}")
    return problems


def check_supported(
    gm: fx.GraphModule, extra_rules: tuple[NodeRule, ...] = (), *, stage: str = "conversion"
) -> None:
    """Raise :class:`UnsupportedGraphError` listing all offending nodes at once."""
    problems = unsupported_nodes(gm, extra_rules)
    if problems:
        raise UnsupportedGraphError(
            problems,
            hint=f"Nothing was changed. Fix these {len(problems)} node(s) for {stage}, "
            "or see `snnconvert models` for architectures known to convert.",
        )
