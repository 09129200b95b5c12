"""Time gating: layers that run only their first steps, and what the engine skips for them.

A *gate* is any module with ``gates_steps = True`` and a ``kept_steps() -> int`` method: at
inference it zeroes every frame from step ``kept_steps()`` on and tags its output with that
count (:func:`mark_active`). Synapses and attention read the tag (:func:`active_steps`) and run
only the kept frames, so the skipped work is never executed; the operation counts use
:func:`gated_state_ops` for the membrane updates. A pooling neuron class (``pools = True``, a
max-pool between a neuron layer and its gate) runs on the same steps as the layer it reads.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, fx, nn

ACTIVE_ATTR = "_snn_active_steps"
"""Attribute a gate sets on its (time-folded) output at inference: frames ``>= k`` are zero."""


def active_steps(frames: Tensor) -> int | None:
    """The number of leading frames a gate kept in ``frames`` (None: unknown, all may be live)."""
    return getattr(frames, ACTIVE_ATTR, None)


def mark_active(frames: Tensor, steps: int | None) -> Tensor:
    """Tag ``frames`` with the kept step count (no-op for None)."""
    if steps is not None:
        setattr(frames, ACTIVE_ATTR, int(steps))
    return frames


def is_gate(module: Any) -> bool:
    """Whether ``module`` gates the steps of the neuron layer feeding it."""
    return bool(getattr(module, "gates_steps", False)) and callable(getattr(module, "kept_steps", None))


def gated_steps(snn: nn.Module) -> dict[str, int]:
    """Steps each neuron layer really needs in a gated SNN: ``kept_steps()`` of the gate on its
    output (a pooling layer between them shares it), by the names of
    ``SpikingNetwork.neurons()``. Layers without a gate are left out (they run every step)."""
    body = getattr(snn, "body", None)
    if not isinstance(body, fx.GraphModule):
        return {}
    found: dict[str, int] = {}
    for node in body.graph.nodes:
        if node.op != "call_module" or not is_gate(gate := body.get_submodule(node.target)):
            continue
        kept = int(gate.kept_steps())
        src = node.args[0] if node.args else None
        while isinstance(src, fx.Node) and src.op == "call_module":
            module = body.get_submodule(src.target)
            if getattr(module, "snn_kind", None) != "neuron":
                break
            found[str(src.target)] = kept
            if not getattr(module, "pools", False) or not src.args:
                break
            src = src.args[0]
    return found


def gated_state_ops(snn: nn.Module, ops: dict[str, float]) -> dict[str, float]:
    """Per-layer state operations (a coding's ``state_ops``, counted at every layer's
    ``steps_out``) with each gated layer's scaled to its kept steps ``T_l / steps_out``: the
    skipped steps' membrane updates are not done."""
    kept = gated_steps(snn)
    if not kept:
        return dict(ops)
    neurons = {name: m for name, m in snn.named_modules() if hasattr(m, "steps_out")}
    out = {}
    for name, value in ops.items():
        module = neurons.get(name) or neurons.get(f"body.{name}")
        total = getattr(module, "steps_out", 0)
        out[name] = value * kept[name] / total if name in kept and total else value
    return out
