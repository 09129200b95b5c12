"""Per-layer quantization parameters (C_i, Z_i, C_o, Z_o, C_w, Z_w and bits: table 3 of the SWS
paper), read off a finalized quantized graph."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, fx

from snnconvert.graph.ops import Kind, kind_of, module_of
from snnconvert.quantize.modules import ActQuant, QConv2d, QLinear

_PASS_THROUGH = {Kind.LINEAR, Kind.MAXPOOL, Kind.SHAPE, Kind.ACTIVATION}


@dataclass
class QuantRef:
    """One activation quantizer: its module name, scale C and zero point Z (first channel when
    per channel), and whether it is per channel."""

    name: str
    scale: float
    zero_point: float
    per_channel: bool


@dataclass
class LayerQuantRecord:
    """What conversion needs to know about one weighted layer."""

    name: str
    op: str
    weight_bits: int
    weight_scale_min: float  # C_w ranges over output channels
    weight_scale_max: float
    weight_zero_point: int  # Z_w (symmetric: 0)
    inputs: list[QuantRef]  # C_i, Z_i of every quantizer feeding the layer
    output: QuantRef | None  # C_o, Z_o (None for the classifier, which outputs logits)
    act_bits: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def _ref(gm: fx.GraphModule, node: fx.Node) -> QuantRef:
    q: ActQuant = module_of(gm, node)
    return QuantRef(
        node.target, float(q.scale.detach()[0]), float(q.zero_point[0]), q.per_channel
    )


def input_quantizers(gm: fx.GraphModule, node: fx.Node) -> list[fx.Node]:
    """Activation quantizers whose output reaches ``node`` through value-linear ops only."""
    found: list[fx.Node] = []
    stack = [a for a in node.all_input_nodes]
    seen: set[fx.Node] = set()
    while stack:
        cur = stack.pop()
        if cur in seen:
            continue
        seen.add(cur)
        kind = kind_of(gm, cur)
        if kind is Kind.QUANT:
            found.append(cur)
        elif kind in _PASS_THROUGH:
            stack.extend(cur.all_input_nodes)
    return sorted(found, key=lambda n: n.name)


def output_quantizer(gm: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The first activation quantizer downstream of ``node`` through linear ops and a ReLU."""
    frontier = list(node.users)
    seen: set[fx.Node] = set()
    while frontier:
        cur = frontier.pop(0)
        if cur in seen:
            continue
        seen.add(cur)
        kind = kind_of(gm, cur)
        if kind is Kind.QUANT:
            return cur
        if kind in (Kind.LINEAR, Kind.ACTIVATION):
            frontier.extend(cur.users)
    return None


def layer_records(gm: fx.GraphModule) -> list[LayerQuantRecord]:
    """One record per conv/linear layer, in graph order."""
    records = []
    for node in gm.graph.nodes:
        mod = module_of(gm, node)
        if not isinstance(mod, (QConv2d, QLinear)):
            continue
        out = output_quantizer(gm, node)
        out_ref = _ref(gm, out) if out is not None else None
        scale: Tensor = mod.w_scale
        records.append(
            LayerQuantRecord(
                name=node.target,
                op=type(mod).__name__,
                weight_bits=mod.w_bits,
                weight_scale_min=float(scale.min()),
                weight_scale_max=float(scale.max()),
                weight_zero_point=0,
                inputs=[_ref(gm, n) for n in input_quantizers(gm, node)],
                output=out_ref,
                act_bits=module_of(gm, out).bits if out is not None else None,
            )
        )
    return records


def integer_weights(gm: fx.GraphModule) -> dict[str, Tensor]:
    """``{layer: integer weight tensor}`` (int8 when the bit width allows)."""
    result = {}
    for name, mod in gm.named_modules():
        if isinstance(mod, (QConv2d, QLinear)):
            w = mod.integer_weight()
            result[name] = w.to(torch.int8 if mod.w_bits <= 8 else torch.int16)
    return result
