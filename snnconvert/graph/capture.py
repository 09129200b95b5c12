"""Capture a model as a torch.fx graph, with source locations and tensor shapes on every node."""

from __future__ import annotations

import copy
import os
import re

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from snnconvert.errors import SnnConvertError


class _LocatingTracer(fx.Tracer):
    """A tracer that records where in the user's code each node was created."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # snnconvert's own ops (e.g. graph.attention.SpikingAttention) declare their kind: one node each
        return getattr(type(m), "snn_kind", None) is not None or super().is_leaf_module(m, module_qualified_name)


def capture(model: nn.Module, example_shape: tuple[int, ...]) -> fx.GraphModule:
    """Trace ``model`` (which is not modified) into a GraphModule with shapes propagated."""
    model = copy.deepcopy(model).eval()
    tracer = _LocatingTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is reported to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SnnConvertError(
            f"torch.fx could not trace {type(model).__name__}: {first} "
            "(data-dependent control flow in forward() is not traceable; make branches static)"
        ) from exc
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    propagate_shapes(gm, example_shape)
    return gm


def propagate_shapes(gm: fx.GraphModule, example_shape: tuple[int, ...]) -> fx.GraphModule:
    """Annotate every tensor-valued node with ``meta['tensor_meta']`` (in place)."""
    for node in gm.graph.nodes:
        node.meta.pop("tensor_meta", None)
    param = next(iter(gm.parameters()), None)
    if param is None:
        param = next(iter(gm.buffers()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    with torch.no_grad():
        try:
            ShapeProp(gm).propagate(torch.zeros(example_shape, dtype=dtype))
        except Exception as exc:  # noqa: BLE001
            raise SnnConvertError(
                f"the model does not run on an input of shape {tuple(example_shape)}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
    return gm


def location_of(node: fx.Node) -> str:
    """Where a node comes from: the module path and the user's source line, if known."""
    where = f"module '{node.target}'" if node.op == "call_module" else f"node '{node.name}'"
    frame = _user_frame(node.meta.get("stack_trace") or "")
    return f"{where} ({frame})" if frame else where


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


def _user_frame(trace: str) -> str:
    """``file.py:LINE: code`` of the last stack frame outside torch itself."""
    lines = [ln.strip() for ln in trace.strip().splitlines()]
    found = ""
    for i, line in enumerate(lines):
        match = _FRAME.match(line)
        if not match or f"{os.sep}torch{os.sep}" in match["file"]:
            continue
        code = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("File ") else ""
        found = f"{os.path.basename(match['file'])}:{match['line']}" + (f": {code}" if code else "")
    return found
