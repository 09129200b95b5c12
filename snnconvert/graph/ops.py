"""The operation vocabulary of snnconvert: what each fx node is, in the terms the passes use.

Every pass and every coding asks these predicates instead of matching op names itself, so
supporting a new spelling of an operation (``F.relu`` vs ``torch.relu`` vs ``x.relu()``) is a
change in one place.
"""

from __future__ import annotations

import inspect
import math
import operator
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import fx, nn

from snnconvert.graph.modules import BoundedReLU, ChannelAffine, PadWithValues


class Kind(str, Enum):
    """What role a node plays for conversion."""

    INPUT = "input"
    OUTPUT = "output"
    WEIGHTED = "weighted"  # conv / linear: the synapses
    NORM = "norm"  # batch-norm (fused away by prepare)
    ACTIVATION = "activation"  # ReLU and its clipped variants: becomes a spiking neuron
    MAXPOOL = "maxpool"
    LINEAR = "linear"  # value-linear ops without weights: pooling, add, cat, pad, reshape
    SHAPE = "shape"  # ops on shapes/ints (x.size(), getitem on sizes)
    REMOVABLE = "removable"  # dropout / identity at inference
    QUANT = "quant"  # fake-quantizer of activations (inserted by the quantizer)
    NEURON = "neuron"  # spiking neuron (inserted by a coding)
    PARAM = "param"  # get_attr
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Activation:
    upper: float | None  # None for a plain ReLU


_LINEAR_FUNCTIONS = {
    operator.add,
    operator.iadd,
    torch.add,
    torch.cat,
    torch.concat,
    torch.flatten,
    torch.reshape,
    F.pad,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    torch.mean,
}
_LINEAR_METHODS = {"view", "reshape", "flatten", "contiguous", "mean", "add", "add_", "squeeze", "unsqueeze"}
_SHAPE_METHODS = {"size", "dim"}
_MOVING_METHODS = {"transpose", "permute", "chunk", "split"}
_MOVING_FUNCTIONS = {torch.transpose, torch.permute, torch.chunk, torch.split}
"""Data movement that is linear per frame as long as it leaves the batch axis (frames are folded
into it: T*B in a spiking network) where it is: ``transpose``/``permute`` of other axes (a
channel shuffle), ``chunk``/``split`` along another axis."""
_LINEAR_MODULES = (
    nn.Dropout,  # kept: an identity at inference, active in SNN training (simulate/dropout.py)
    nn.Dropout2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.ZeroPad2d,
    PadWithValues,
    ChannelAffine,
)
_REMOVABLE_MODULES = (nn.Identity,)
_UNSUPPORTED_HINTS = {
    "Hardswish": "not a ReLU-type activation; replace it with ReLU and fine-tune",
    "SiLU": "not a ReLU-type activation; replace it with ReLU and fine-tune",
    "GELU": "not a ReLU-type activation; replace it with ReLU and fine-tune",
    "Sigmoid": "gating activations have no spiking equivalent here; remove the gate",
    "Hardsigmoid": "gating activations have no spiking equivalent here; remove the gate",
    "mul": "a product of two activations (e.g. squeeze-excitation) cannot be computed by "
    "accumulate-only spiking synapses; remove the block or replace it",
    "LayerNorm": "normalization over activations at run time is not linear; use BatchNorm",
    "layer_norm": "normalization over activations at run time is not linear; use BatchNorm",
    "Softmax": "drop the softmax: classification uses the logits",
    "MultiheadAttention": "attention multiplies activations with each other (query x key, weights x value); "
    "spiking synapses only accumulate, so attention blocks do not convert",
    "stochastic_depth": "stochastic depth in training mode; put the model in eval mode (it is then removed)",
    "transpose": "moves the batch axis (or an axis given by a negative index of unknown rank); move other axes only",
    "permute": "moves the batch axis (or an axis given by a negative index of unknown rank); keep axis 0 first",
    "chunk": "splits the batch axis (or an axis given by a negative index of unknown rank); split another axis",
    "split": "splits the batch axis (or an axis given by a negative index of unknown rank); split another axis",
}


def module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def activation_of(gm: fx.GraphModule, node: fx.Node) -> Activation | None:
    """The ReLU-type activation a node computes, or None."""
    mod = module_of(gm, node)
    if mod is not None:
        if isinstance(mod, nn.ReLU):
            return Activation(None)
        if isinstance(mod, nn.ReLU6):
            return Activation(6.0)
        if isinstance(mod, BoundedReLU):
            return Activation(mod.upper)
        if isinstance(mod, nn.Hardtanh) and mod.min_val == 0.0:
            return Activation(float(mod.max_val))
        return None
    if node.op == "call_function":
        if node.target in (F.relu, torch.relu, torch.relu_):
            return Activation(None)
        if node.target is F.relu6:
            return Activation(6.0)
        if node.target is F.hardtanh:
            lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
            hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
            return Activation(float(hi)) if lo == 0 else None
        if node.target in (torch.clamp, torch.clip, torch.clamp_min):
            return _clamp_activation(node, 1)
    if node.op == "call_method":
        if node.target in ("relu", "relu_"):
            return Activation(None)
        if node.target in ("clamp", "clip", "clamp_min", "clamp_", "clamp_min_"):
            return _clamp_activation(node, 1)
    return None


def _clamp_activation(node: fx.Node, first: int) -> Activation | None:
    args = list(node.args[1:])  # after the tensor
    lo = node.kwargs.get("min", args[0] if args else None)
    hi = node.kwargs.get("max", args[1] if len(args) > 1 else None)
    if str(node.target).startswith("clamp_min"):
        hi = None
    if not _is_number(lo) or lo != 0 or (hi is not None and not _is_number(hi)):
        return None
    return Activation(None if hi is None or math.isinf(hi) else float(hi))


def kind_of(gm: fx.GraphModule, node: fx.Node) -> Kind:
    """Classify one node (see :class:`Kind`)."""
    if node.op == "placeholder":
        return Kind.INPUT
    if node.op == "output":
        return Kind.OUTPUT
    if node.op == "get_attr":
        return Kind.PARAM
    if activation_of(gm, node) is not None:
        return Kind.ACTIVATION
    mod = module_of(gm, node)
    if mod is not None:
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            return Kind.WEIGHTED
        if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            return Kind.NORM
        if isinstance(mod, nn.MaxPool2d):
            return Kind.MAXPOOL
        if isinstance(mod, _LINEAR_MODULES):
            return Kind.LINEAR
        if isinstance(mod, _REMOVABLE_MODULES):
            return Kind.REMOVABLE
        return _custom_kind(mod)
    if node.op == "call_function":
        return _function_kind(node)
    if node.op == "call_method":
        if node.target in _SHAPE_METHODS:
            return Kind.SHAPE
        if node.target in _LINEAR_METHODS:
            return Kind.LINEAR
        if node.target in _MOVING_METHODS:
            return Kind.LINEAR if _keeps_batch_axis(node) else Kind.UNSUPPORTED
        if node.target in ("mul", "div") and _scalar_operand(node):
            return Kind.LINEAR
    return Kind.UNSUPPORTED


def _custom_kind(mod: nn.Module) -> Kind:
    kind = getattr(mod, "snn_kind", None)  # modules of later stages declare their own kind
    return Kind(kind) if kind is not None else Kind.UNSUPPORTED


def _function_kind(node: fx.Node) -> Kind:
    target = node.target
    if target is getattr:
        return Kind.SHAPE
    if target is operator.getitem:
        return Kind.LINEAR if _is_tensor_node(node.args[0]) else Kind.SHAPE
    if target in (F.max_pool2d,):
        return Kind.MAXPOOL
    if target in (F.dropout, F.dropout2d):
        return Kind.REMOVABLE
    if target is F.pad:
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        ok = mode == "constant" and value in (None, 0, 0.0)
        return Kind.LINEAR if ok else Kind.UNSUPPORTED
    if target in (operator.add, operator.iadd, torch.add):
        return Kind.LINEAR if all(_is_tensor_node(a) for a in node.args[:2]) else Kind.UNSUPPORTED
    if target in (operator.mul, operator.truediv, torch.mul) and _scalar_operand(node):
        return Kind.LINEAR
    if target in _LINEAR_FUNCTIONS:
        return Kind.LINEAR
    if target in _MOVING_FUNCTIONS:
        return Kind.LINEAR if _keeps_batch_axis(node) else Kind.UNSUPPORTED
    if target in (operator.floordiv, operator.mul, operator.sub) and not any(
        _is_tensor_node(a) for a in node.args
    ):
        return Kind.SHAPE
    return Kind.UNSUPPORTED


def traced_shape(node: object) -> tuple[int, ...] | None:
    """The shape shape propagation recorded for ``node`` (with the batch axis), or None."""
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _rank(node: fx.Node) -> int | None:
    shape = traced_shape(node)
    return len(shape) if shape is not None else None


def channel_concat_inputs(node: fx.Node) -> list | None:
    """The inputs of ``node`` when it is ``torch.cat`` along the channel axis (1, or its negative
    spelling with a traced rank), else None."""
    if not (node.op == "call_function" and node.target in (torch.cat, torch.concat)):
        return None
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    rank = _rank(node)
    if not isinstance(tensors, (list, tuple)) or not (dim == 1 or (rank is not None and dim == 1 - rank)):
        return None
    return list(tensors)


def _axis_is_batch(dim: object, rank: int | None) -> bool | None:
    """Whether ``dim`` names axis 0 (None: cannot tell, a negative dim without a known rank)."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        return None
    if dim >= 0:
        return dim == 0
    return None if rank is None else dim + rank == 0


def _keeps_batch_axis(node: fx.Node) -> bool:
    """Whether a transpose / permute / chunk / split node leaves axis 0 (the batch, and the folded
    time steps of a spiking network) in place and whole."""
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    source = node.args[0] if node.args else None
    rank = _rank(source) if isinstance(source, fx.Node) else None
    args = list(node.args[1:])  # after the tensor
    if name == "transpose":
        dims = [node.kwargs.get("dim0", args[0] if args else None), node.kwargs.get("dim1", args[1] if len(args) > 1
                                                                                   else None)]
        checks = [_axis_is_batch(d, rank) for d in dims]
        return all(c is False for c in checks)
    if name == "permute":
        dims = node.kwargs.get("dims", args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args)
        return bool(dims) and _axis_is_batch(dims[0], rank) is True
    if name in ("chunk", "split"):
        dim = node.kwargs.get("dim", args[1] if len(args) > 1 else 0)
        return _axis_is_batch(dim, rank) is False
    return False


def _is_shape_node(node: fx.Node) -> bool:
    """Nodes computing sizes/ints (``x.size()``, ``x.shape[1]``, arithmetic on those)."""
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function":
        if node.target is getattr:
            return True
        if node.target in (operator.getitem, operator.floordiv, operator.mul, operator.sub, operator.add):
            inputs = node.all_input_nodes
            return bool(inputs) and all(_is_shape_node(a) for a in inputs)
    return False


def _is_tensor_node(arg: object) -> bool:
    """True for nodes that produce a tensor (not a size or an int derived from sizes)."""
    return isinstance(arg, fx.Node) and arg.op != "get_attr" and not _is_shape_node(arg)


def _scalar_operand(node: fx.Node) -> bool:
    args = list(node.args[:2])
    tensors = [a for a in args if isinstance(a, fx.Node) and _is_tensor_node(a)]
    numbers = [a for a in args if _is_number(a)]
    return len(tensors) == 1 and len(numbers) == 1


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """Human-readable op name: module class, function or method name."""
    mod = module_of(gm, node)
    if mod is not None:
        return type(mod).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


def hint_for(op_name: str) -> str:
    """The hint for an unsupported op, matched on its whole name, case-insensitively (``silu`` is
    ``SiLU``, ``mul_`` is ``mul``; ``MultiheadAttention`` is not ``mul``)."""
    hints = {key.lower(): hint for key, hint in _UNSUPPORTED_HINTS.items()}
    name = op_name.lower()
    hint = hints.get(name) or hints.get(name.rstrip("_"))
    return hint or "this operation is not supported by snnconvert's converters"


def maxpool_params(gm: fx.GraphModule, node: fx.Node) -> dict:
    """``F.max_pool2d`` keyword arguments (kernel_size, stride, padding, dilation, ceil_mode,
    return_indices) of a max-pool module or functional call."""
    mod = module_of(gm, node)
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    if isinstance(mod, nn.MaxPool2d):
        return {k: getattr(mod, k) for k in names}
    bound = inspect.signature(F._max_pool2d).bind(*node.args, **node.kwargs)
    bound.apply_defaults()
    params = {k: bound.arguments[k] for k in names}
    if params["stride"] in (None, [], ()):
        params["stride"] = params["kernel_size"]
    return params
