"""Models as data: fx graphs and modules to JSON-compatible specs and back, without pickle.

Only operations and module classes on explicit allow-lists can be written or read, so loading
an artifact never imports or runs anything that is not part of snnconvert or torch.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from snnconvert.errors import SnnConvertError

_FUNCTIONS: dict[str, Callable] = {
    "operator.add": operator.add,
    "operator.iadd": operator.iadd,
    "operator.mul": operator.mul,
    "operator.truediv": operator.truediv,
    "operator.floordiv": operator.floordiv,
    "operator.sub": operator.sub,
    "operator.getitem": operator.getitem,
    "builtins.getattr": getattr,
    "torch.add": torch.add,
    "torch.mul": torch.mul,
    "torch.cat": torch.cat,
    "torch.concat": torch.concat,
    "torch.flatten": torch.flatten,
    "torch.reshape": torch.reshape,
    "torch.mean": torch.mean,
    "torch.relu": torch.relu,
    "torch.clamp": torch.clamp,
    "F.pad": F.pad,
    "F.relu": F.relu,
    "F.relu6": F.relu6,
    "F.avg_pool2d": F.avg_pool2d,
    "F.adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "F.max_pool2d": F.max_pool2d,
}
_FUNCTION_NAMES = {id(f): name for name, f in _FUNCTIONS.items()}
_METHODS = {
    "view", "reshape", "flatten", "contiguous", "mean", "size", "dim", "add", "mul", "div",
    "squeeze", "unsqueeze", "relu", "clamp", "clamp_min", "permute", "transpose",
}


class ModuleCodec:
    """How to rebuild one module class from a JSON config (values come from the state dict)."""

    def __init__(self, cls: type[nn.Module], to_config: Callable[[nn.Module], dict],
                 from_config: Callable[[dict], nn.Module]) -> None:
        self.cls, self.to_config, self.from_config = cls, to_config, from_config


_CODECS: dict[str, ModuleCodec] = {}


def register_module(name: str, cls: type[nn.Module], to_config: Callable[[nn.Module], dict],
                    from_config: Callable[[dict], nn.Module]) -> None:
    """Add a module class to the allow-list (called once per class at import time)."""
    known = _CODECS.get(name)
    if known is not None and known.cls is not cls:
        raise ValueError(f"serializable module name {name!r} is taken by {known.cls.__module__}.{known.cls.__name__}")
    _CODECS[name] = ModuleCodec(cls, to_config, from_config)


def register_simple(cls: type[nn.Module], *attrs: str, name: str | None = None) -> None:
    """Register a class whose constructor takes exactly ``attrs`` as keyword arguments."""
    register_module(
        name or cls.__name__,
        cls,
        lambda m: {a: _jsonable(getattr(m, a)) for a in attrs},
        lambda c: cls(**{k: _from_json(v) for k, v in c.items()}),
    )


def _codec_name(module: nn.Module) -> str:
    for name, codec in _CODECS.items():
        if type(module) is codec.cls:
            return name
    raise SnnConvertError(
        f"cannot save a model containing {type(module).__name__}: it is not a module snnconvert knows"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"tuple": [_jsonable(v) for v in value]}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": str(value)}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {"dict": {k: _jsonable(v) for k, v in value.items()}}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "tuple" in value:
            return tuple(_from_json(v) for v in value["tuple"])
        if "float" in value:
            return float(value["float"])
        if "dtype" in value:
            dtype = getattr(torch, value["dtype"], None)
            if not isinstance(dtype, torch.dtype):
                raise SnnConvertError(f"unknown dtype {value['dtype']!r} in artifact")
            return dtype
        if "dict" in value:
            return {k: _from_json(v) for k, v in value["dict"].items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


# ---------------------------------------------------------------------------- graph IR


def _encode_arg(arg: Any) -> Any:
    if isinstance(arg, fx.Node):
        return {"node": arg.name}
    if isinstance(arg, slice):
        return {"slice": [_encode_arg(arg.start), _encode_arg(arg.stop), _encode_arg(arg.step)]}
    if arg is Ellipsis:
        return {"ellipsis": True}
    if isinstance(arg, tuple):
        return {"tuple": [_encode_arg(a) for a in arg]}
    if isinstance(arg, list):
        return [_encode_arg(a) for a in arg]
    if isinstance(arg, dict):
        return {"dict": {k: _encode_arg(v) for k, v in arg.items()}}
    if arg is None or isinstance(arg, (bool, int, str)):
        return arg
    if isinstance(arg, float):
        return arg if math.isfinite(arg) else {"float": str(arg)}
    if isinstance(arg, torch.dtype):
        return {"dtype": str(arg).removeprefix("torch.")}
    raise SnnConvertError(f"cannot save graph argument of type {type(arg).__name__}")


def _decode_arg(arg: Any, nodes: dict[str, fx.Node]) -> Any:
    if isinstance(arg, list):
        return [_decode_arg(a, nodes) for a in arg]
    if not isinstance(arg, dict):
        return arg
    if "node" in arg:
        return nodes[arg["node"]]
    if "slice" in arg:
        return slice(*(_decode_arg(a, nodes) for a in arg["slice"]))
    if "ellipsis" in arg:
        return Ellipsis
    if "tuple" in arg:
        return tuple(_decode_arg(a, nodes) for a in arg["tuple"])
    if "dict" in arg:
        return {k: _decode_arg(v, nodes) for k, v in arg["dict"].items()}
    return _from_json(arg)


def _encode_graph(gm: fx.GraphModule) -> list[dict]:
    out = []
    for node in gm.graph.nodes:
        target: Any = node.target
        if node.op == "call_function":
            if id(target) not in _FUNCTION_NAMES:
                raise SnnConvertError(f"cannot save graph op {getattr(target, '__name__', target)}")
            target = _FUNCTION_NAMES[id(target)]
        elif node.op == "call_method" and target not in _METHODS:
            raise SnnConvertError(f"cannot save graph method call .{target}()")
        elif node.op == "get_attr":
            raise SnnConvertError("cannot save graphs with get_attr nodes")
        out.append(
            {
                "name": node.name,
                "op": node.op,
                "target": target,
                "args": _encode_arg(node.args),
                "kwargs": _encode_arg(dict(node.kwargs)),
            }
        )
    return out


def _decode_graph(items: list[dict]) -> fx.Graph:
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for item in items:
        op, target = item["op"], item["target"]
        if op == "call_function":
            if target not in _FUNCTIONS:
                raise SnnConvertError(f"artifact uses an operation snnconvert does not allow: {target}")
            target = _FUNCTIONS[target]
        elif op == "call_method" and target not in _METHODS:
            raise SnnConvertError(f"artifact uses a method snnconvert does not allow: {target}")
        elif op not in ("placeholder", "output", "call_module", "call_method"):
            raise SnnConvertError(f"artifact has a graph node of unknown kind {op!r}")
        args = _decode_arg(item["args"], nodes)
        kwargs = _decode_arg(item["kwargs"], nodes)
        nodes[item["name"]] = graph.create_node(op, target, tuple(args), kwargs, name=item["name"])
    return graph


# ---------------------------------------------------------------------------- modules


def module_spec(module: nn.Module) -> dict:
    """A JSON-compatible description of ``module``'s structure (no tensor values)."""
    if isinstance(module, fx.GraphModule):
        leaves = {}
        for node in module.graph.nodes:
            if node.op == "call_module" and node.target not in leaves:
                leaves[node.target] = module_spec(module.get_submodule(node.target))
        return {"type": "GraphModule", "graph": _encode_graph(module), "modules": leaves}
    name = _codec_name(module)
    spec: dict[str, Any] = {"type": name, "config": _CODECS[name].to_config(module)}
    children = getattr(module, "serial_children", None)
    if children:
        spec["children"] = {c: module_spec(getattr(module, c)) for c in children}
    return spec


def module_from_spec(spec: dict) -> nn.Module:
    """Rebuild the structure described by :func:`module_spec` (values still to be loaded)."""
    kind = spec.get("type")
    if kind == "GraphModule":
        modules = {target: module_from_spec(s) for target, s in spec["modules"].items()}
        return fx.GraphModule(modules, _decode_graph(spec["graph"]))
    if kind not in _CODECS:
        raise SnnConvertError(f"artifact contains a module type snnconvert does not know: {kind!r}")
    module = _CODECS[kind].from_config(spec.get("config", {}))
    for child, child_spec in spec.get("children", {}).items():
        setattr(module, child, module_from_spec(child_spec))
    return module


def _register_builtins() -> None:
    def conv_config(m: nn.Conv2d) -> dict:
        return {
            "in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": _jsonable(m.kernel_size), "stride": _jsonable(m.stride),
            "padding": _jsonable(m.padding), "dilation": _jsonable(m.dilation),
            "groups": m.groups, "bias": m.bias is not None, "padding_mode": m.padding_mode,
        }

    register_module("Conv2d", nn.Conv2d, conv_config, lambda c: nn.Conv2d(**{k: _from_json(v) for k, v in c.items()}))
    register_module(
        "Linear", nn.Linear,
        lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
        lambda c: nn.Linear(**c),
    )
    register_simple(nn.ReLU)
    register_simple(nn.ReLU6)
    register_simple(nn.Identity)
    register_simple(nn.Flatten, "start_dim", "end_dim")
    register_simple(nn.MaxPool2d, "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    register_simple(nn.AvgPool2d, "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
    register_simple(nn.AdaptiveAvgPool2d, "output_size")
    register_simple(nn.ZeroPad2d, "padding")
    register_simple(nn.Dropout, "p")
    register_simple(nn.Hardtanh, "min_val", "max_val")
    for bn in (nn.BatchNorm2d, nn.BatchNorm1d):
        register_simple(bn, "num_features", "eps", "momentum")


_register_builtins()
