"""QDQ ingest: an ONNX model with QuantizeLinear/DequantizeLinear pairs becomes a quantized model
directly (its scales and zero points are the C/Z parameters SWS needs; nothing is re-quantized).

Mapping (exact up to the rounding of ties, which ONNX rounds to even and snnconvert half up):

* the Q/DQ pair on the model input becomes the input quantizer ``input_quant`` (scale C, zero
  point Z; signed types are shifted to the unsigned range, ``Z' = Z - qmin``);
* a Q/DQ pair after a ReLU/Clip becomes an :class:`ActQuant` after it (a non-zero ``Z'`` becomes
  the activation's upper bound ``(2^n - 1 - Z') C``);
* any other Q/DQ pair ``C * (clamp(round(x / C) + Z', 0, 2^n - 1) - Z')`` is written as
  ``shift(+Z' C) -> ReLU -> ActQuant(C, 0) -> shift(-Z' C)``, which is the same function, so
  signed activations and non-zero zero points convert exactly (the shift folds into the bias of a
  conv/linear that feeds only the quantizer);
* ``x - v -> zero pad -> + v`` between the input and its Q/DQ pair (a border padded with ``v``,
  as a folded input normalization pads) becomes the input quantizer followed by a
  :class:`PadWithValues` with ``v`` snapped to the grid (quantization is elementwise, so it
  commutes with the pad);
* a Q/DQ pair whose input is already on the same grid (max-pool, flatten, ... of a quantized
  tensor) is the identity and is dropped;
* dequantized integer weights become :class:`QConv2d`/:class:`QLinear` with per-channel scales
  (per-tensor scales are repeated; a weight zero point ``Z_w`` is subtracted, widening the
  integer range when needed).
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import fx, nn

from snnconvert.graph.modules import BoundedReLU, ChannelAffine, PadWithValues, conv_args
from snnconvert.ingest.onnx_base import Grid, QConst, _attrs, _Pending, _Unsupported
from snnconvert.quantize.modules import ActQuant, QConv2d, QLinear
from snnconvert.quantize.quantizer import INPUT_QUANT

if TYPE_CHECKING:
    from snnconvert.ingest.onnx import _Builder

_RANGES = {  # numpy dtype name -> (qmin, qmax)
    "uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
}


def pending_quant(builder: _Builder, node: Any) -> _Pending:
    """Check an activation QuantizeLinear and remember its parameters until its DequantizeLinear."""
    a = _attrs(node)
    if a.get("block_size", 0):
        raise _Unsupported("blocked quantization is not supported")
    scale = builder.const(node, 1, "scale").astype(np.float64)
    if scale.size != 1:
        raise _Unsupported("per-channel activation quantization is not supported (one scale per tensor)")
    zp_arr = builder.optional_const(node, 2)
    dtype = zp_arr.dtype.name if zp_arr is not None else "uint8"
    if dtype not in _RANGES:
        raise _Unsupported(f"{dtype} activations are not supported (uint8, int8, uint16, int16)")
    qmin, qmax = _RANGES[dtype]
    zp = int(zp_arr.reshape(-1)[0]) if zp_arr is not None else 0
    users = builder.consumers.get(node.output[0], [])
    others = sorted({u.op_type for u in users if u.op_type != "DequantizeLinear"})
    if others:
        raise _Unsupported(f"its integers feed {', '.join(others)} (operator-oriented quantization); "
                           "quantize with QuantFormat.QDQ")
    builder.tensor(node.input[0])  # surfaces problems upstream
    bits = int(round(math.log2(qmax - qmin + 1)))
    return _Pending(node.input[0], float(scale.reshape(-1)[0]), zp - qmin, bits, qmin)


def dequantize(builder: _Builder, node: Any, pend: _Pending) -> fx.Node:
    """The node computing ``DequantizeLinear(QuantizeLinear(x))`` (``x`` itself in a float graph)."""
    scale = builder.const(node, 1, "scale").astype(np.float64).reshape(-1)
    zp_arr = builder.optional_const(node, 2)
    zp = int(zp_arr.reshape(-1)[0]) if zp_arr is not None else 0
    if scale.size != 1 or float(scale[0]) != pend.scale or zp - pend.qmin != pend.zero_point:
        raise _Unsupported("its scale or zero point differs from the QuantizeLinear before it")
    src = builder.tensor(pend.source)
    if not builder.quantized:
        if pend.zero_point == 0 and not _nonnegative(builder, src):
            # a quantizer whose range starts at 0 is the model's ReLU (QDQ tools fold Relu into it)
            return builder.add_module(f"{pend.source}_relu", nn.ReLU(), (src,))
        return src
    grid = Grid(pend.scale, pend.zero_point, pend.bits)
    if builder.grids.get(src) == grid:
        return src
    if src is builder.placeholder:
        return _input_quant(builder, grid)
    padded = _pad_with_values(builder, src)
    if padded is not None:  # x - v -> zero pad -> + v: a border of value v; Q commutes with it
        padding, values = padded
        quant_node = _input_quant(builder, grid)
        quant: ActQuant = builder.root.get_submodule(INPUT_QUANT)
        with torch.no_grad():
            snapped = quant(values.view(1, -1, 1, 1)).view(-1)
        out = builder.add_module(f"{pend.source}_input_pad", PadWithValues(padding, snapped), (quant_node,))
        builder.grids[out] = grid
        return out
    builder.act_bits.append(pend.bits)
    single = len(builder.consumers.get(pend.source, [])) == 1
    mod = builder.root.get_submodule(src.target) if src.op == "call_module" else None
    qmax = 2**pend.bits - 1
    if isinstance(mod, (nn.ReLU, BoundedReLU)) and single:
        if pend.zero_point > 0:
            upper = (qmax - pend.zero_point) * pend.scale
            if isinstance(mod, BoundedReLU):
                upper = min(upper, mod.upper)
            setattr(builder.root, src.target, BoundedReLU(upper))
        out = _act_quant(builder, src, pend, upper=getattr(builder.root.get_submodule(src.target), "upper", None))
        builder.grids[out] = grid
        return out
    shift = pend.zero_point * pend.scale
    channels = _channels(builder, pend.source)
    x = src
    if shift and not (single and _fold_into_bias(builder, src, shift)):
        x = builder.add_module(f"{pend.source}_shift", _shift(channels, shift), (x,))
    x = builder.add_module(f"{pend.source}_relu", nn.ReLU(), (x,))
    x = _act_quant(builder, x, pend, upper=None)
    if shift:
        x = builder.add_module(f"{pend.source}_unshift", _shift(channels, -shift), (x,))
    builder.grids[x] = grid
    return x


def _pad_with_values(builder: _Builder, node: fx.Node) -> tuple[tuple[int, int, int, int], torch.Tensor] | None:
    """``(padding, values)`` when ``node`` is ``pad0(x - v) + v`` of the model input (a per-channel
    border, as a folded input normalization pads), else None."""
    if getattr(builder, "_input_quant", None) is not None:
        return None
    chain = []
    cur = node
    for _ in range(3):
        if cur.op != "call_module" or len(cur.users) > 1 and cur is not node:
            return None
        chain.append(builder.root.get_submodule(cur.target))
        cur = cur.args[0]
    if cur is not builder.placeholder:
        return None
    add, pad, sub = (_affine_params(chain[0]), chain[1], _affine_params(chain[2]))
    if add is None or sub is None or not isinstance(pad, nn.ZeroPad2d):
        return None
    if not (torch.all(add[0] == 1) and torch.all(sub[0] == 1) and torch.equal(add[1], -sub[1])):
        return None
    return tuple(int(p) for p in pad.padding), add[1].detach().clone()


def _affine_params(mod: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, shift)`` of the per-channel affine modules the importer builds (a ChannelAffine in
    quantized graphs, an identity-statistics batch-norm in float graphs)."""
    if isinstance(mod, ChannelAffine):
        return mod.scale, mod.shift
    if isinstance(mod, nn.BatchNorm2d) and mod.eps == 0 and torch.all(mod.running_var == 1) \
            and torch.all(mod.running_mean == 0):
        return mod.weight.detach(), mod.bias.detach()
    return None


_PASS_THROUGH = (nn.MaxPool2d, nn.Flatten, nn.ZeroPad2d)


def _nonnegative(builder: _Builder, node: fx.Node) -> bool:
    """True when ``node`` is the input, a ReLU-type output, or one of those passed through
    max-pooling, flattening, slicing or zero padding (so a ReLU would change nothing)."""
    while True:
        if node is builder.placeholder:
            return True
        if node.op == "call_module":
            mod = builder.root.get_submodule(node.target)
            if isinstance(mod, (nn.ReLU, BoundedReLU)):
                return True
            if not isinstance(mod, _PASS_THROUGH):
                return _pad_with_values(builder, node) is not None
        elif not (node.op == "call_function" and node.target in (operator.getitem, torch.nn.functional.pad)) and \
                not (node.op == "call_method" and node.target == "reshape"):
            return False
        node = node.args[0]


def _channels(builder: _Builder, name: str) -> int:
    shape = builder.shape(name)
    return shape[1] if len(shape) > 1 else 1


def _shift(channels: int, value: float) -> ChannelAffine:
    return ChannelAffine(torch.ones(channels), torch.full((channels,), float(value)))


def _fold_into_bias(builder: _Builder, src: fx.Node, shift: float) -> bool:
    if src.op != "call_module":
        return False
    mod = builder.root.get_submodule(src.target)
    if not isinstance(mod, (nn.Conv2d, nn.Linear)):
        return False
    if mod.bias is None:
        mod.bias = nn.Parameter(torch.zeros(mod.weight.shape[0]))
    with torch.no_grad():
        mod.bias.copy_((mod.bias.double() + shift).float())
    return True


def _act_quant(builder: _Builder, x: fx.Node, pend: _Pending, upper: float | None) -> fx.Node:
    quant = ActQuant(pend.bits, 1, upper=upper)
    with torch.no_grad():
        quant.scale.fill_(pend.scale)
        quant.zero_point.zero_()
    return builder.add_module(f"{pend.source}_quant", quant, (x,))


def _input_quant(builder: _Builder, grid: Grid) -> fx.Node:
    existing = getattr(builder, "_input_quant", None)
    if existing is not None:
        node, known = existing
        if known != grid:
            raise _Unsupported("the model input is quantized twice with different parameters")
        return node
    quant = ActQuant(grid.bits, 1)
    with torch.no_grad():
        quant.scale.fill_(grid.scale)
        quant.zero_point.fill_(float(grid.zero_point))
    builder.root.add_module(INPUT_QUANT, quant)
    with builder.graph.inserting_after(builder.placeholder):
        node = builder.graph.call_module(INPUT_QUANT, (builder.placeholder,))
    builder._input_quant = (node, grid)
    builder.grids[node] = grid
    builder.act_bits.append(grid.bits)
    return node


def quantized_layer(layer: nn.Conv2d | nn.Linear, qc: QConst, out_axis: int,
                    transpose: bool) -> tuple[nn.Module, int]:
    """The QConv2d/QLinear computing with the dequantized integer weights ``qc``."""
    values = qc.values.astype(np.int64)
    if qc.axis is not None and qc.axis != out_axis:
        raise _Unsupported(f"weights quantized per channel along axis {qc.axis}, not the output axis {out_axis}")
    shape = [1] * values.ndim
    if qc.axis is not None:
        shape[qc.axis] = -1
    centered = values - qc.zero_point.reshape(shape)
    scale = np.broadcast_to(qc.scale.reshape(shape), values.shape)
    if transpose:
        centered, scale = centered.T, scale.T
    out = centered.shape[0]
    per_out = scale.reshape(out, -1)[:, 0].astype(np.float64)
    bits = max(2, int(math.ceil(math.log2(int(np.abs(centered).max(initial=0)) + 1))) + 1)
    if isinstance(layer, nn.Conv2d):
        q: nn.Module = QConv2d(**conv_args(layer), w_bits=bits)
    else:
        q = QLinear(layer.in_features, layer.out_features, layer.bias is not None, w_bits=bits)
    view = (-1,) + (1,) * (centered.ndim - 1)
    weight = torch.from_numpy(np.ascontiguousarray(centered)).double() * torch.from_numpy(per_out).view(view)
    with torch.no_grad():
        q.weight.copy_(weight.float())
        if layer.bias is not None:
            q.bias.copy_(layer.bias)
        q.w_scale.copy_(torch.from_numpy(per_out).float())
    q.w_scale_frozen = True
    return q, bits
