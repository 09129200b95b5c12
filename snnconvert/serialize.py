"""Models as data: fx graphs and modules to JSON-compatible specs and back, without pickle.

Only operations and module classes on explicit allow-lists can be written or read, so loading
an artifact never imports or runs anything that is not part of snnconvert or torch.
"""

from __future__ import annotations

import keyword
import math
import operator
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from snnconvert.errors import SnnConvertError
from snnconvert.graph.modules import conv_args
from snnconvert.limits import shorten
from snnconvert.registry import MODULE_CLASSES

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
    """How to write one module class as a JSON config and rebuild it (values come from the
    state dict afterwards)."""

    def __init__(self, cls: type[nn.Module], to_config: Callable[[nn.Module], dict],
                 from_config: Callable[[dict], nn.Module]) -> None:
        self.cls, self.to_config, self.from_config = cls, to_config, from_config


def _declared_codec(cls: type[nn.Module]) -> ModuleCodec:
    """The codec of a class that declares itself: ``serial_params`` names the constructor
    arguments (read as attributes), or ``serial_config()`` returns them; the class rebuilds with
    ``cls(**config)`` or its ``from_serial(**config)``."""
    params = tuple(getattr(cls, "serial_params", ()))

    def to_config(m: nn.Module) -> dict:
        config = m.serial_config() if hasattr(m, "serial_config") else {p: getattr(m, p) for p in params}
        return {k: _jsonable(v) for k, v in config.items()}

    def from_config(c: dict) -> nn.Module:
        if not isinstance(c, dict):
            raise SnnConvertError(f"artifact config of {cls.__name__} is not a mapping")
        build = getattr(cls, "from_serial", cls)
        try:
            return build(**{k: _from_json(v) for k, v in c.items()})
        except (TypeError, ValueError) as exc:
            raise SnnConvertError(f"artifact config of {cls.__name__} does not fit it: {exc}") from None

    return ModuleCodec(cls, to_config, from_config)


def _torch_codecs() -> dict[str, ModuleCodec]:
    """torch.nn classes an artifact may hold (they cannot declare ``serial_params``)."""
    def simple(cls: type[nn.Module], *attrs: str) -> ModuleCodec:
        return ModuleCodec(cls, lambda m: {a: _jsonable(getattr(m, a)) for a in attrs},
                           lambda c: cls(**{k: _from_json(v) for k, v in c.items()}))

    codecs = {
        "Conv2d": ModuleCodec(nn.Conv2d, lambda m: {k: _jsonable(v) for k, v in conv_args(m).items()},
                              lambda c: nn.Conv2d(**{k: _from_json(v) for k, v in c.items()})),
        "Linear": ModuleCodec(nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                                    "bias": m.bias is not None}, lambda c: nn.Linear(**c)),
        "ReLU": simple(nn.ReLU), "ReLU6": simple(nn.ReLU6), "Identity": simple(nn.Identity),
        "Flatten": simple(nn.Flatten, "start_dim", "end_dim"),
        "MaxPool2d": simple(nn.MaxPool2d, "kernel_size", "stride", "padding", "dilation", "ceil_mode"),
        "AvgPool2d": simple(nn.AvgPool2d, "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
        "AdaptiveAvgPool2d": simple(nn.AdaptiveAvgPool2d, "output_size"),
        "ZeroPad2d": simple(nn.ZeroPad2d, "padding"),
        "Dropout": simple(nn.Dropout, "p"), "Dropout2d": simple(nn.Dropout2d, "p"),
        "Hardtanh": simple(nn.Hardtanh, "min_val", "max_val"),
    }
    for bn in (nn.BatchNorm2d, nn.BatchNorm1d):
        codecs[bn.__name__] = simple(bn, "num_features", "eps", "momentum")
    return codecs


def codec_table() -> dict[str, ModuleCodec]:
    """The one table of serializable module classes, by the name artifacts store."""
    table = _torch_codecs()
    for cls in MODULE_CLASSES.items().values():
        known = table.get(cls.__name__)
        if known is not None and known.cls is not cls:
            raise ValueError(f"serializable module name {cls.__name__!r} is taken by {known.cls.__module__}")
        table[cls.__name__] = _declared_codec(cls)
    return table


def _codec_name(module: nn.Module, table: dict[str, ModuleCodec]) -> str:
    name = type(module).__name__
    if name in table and table[name].cls is type(module):
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

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}\Z")
"""ASCII Python identifiers of at most 200 characters: the only strings a stored graph may carry
into positions that torch.fx writes into generated Python source unquoted (node names,
placeholder targets, module paths, keyword-argument keys)."""


def _identifier(text: Any, field: str) -> str:
    """``text`` if it is a plain ASCII identifier that is not a Python keyword; otherwise a
    one-line error naming ``field``. fx turns a graph into Python source, so this check is what
    keeps a crafted artifact from smuggling code into it."""
    if not isinstance(text, str) or not _IDENTIFIER.match(text) or keyword.iskeyword(text) \
            or text.startswith("__"):
        raise SnnConvertError(f"artifact graph field {field} is not a plain identifier: {shorten(text, 60)}")
    return text


_PATH_PART = re.compile(r"[A-Za-z0-9_]{1,200}\Z")


def _module_path(text: Any, field: str) -> str:
    """A dotted module path (``layer1.0.conv1``, ``0_input_pad``): parts of ASCII letters, digits and
    underscores only, so that fx's ``self.part`` or ``getattr(self, "part")`` cannot be broken out of."""
    if not isinstance(text, str) or not text or len(text) > 1000 \
            or not all(_PATH_PART.match(part) and not part.startswith("__") for part in text.split(".")):
        raise SnnConvertError(f"artifact graph field {field} is not a module path: {shorten(text, 60)}")
    return text


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


_ARG_TAGS = {"node", "slice", "ellipsis", "tuple", "dict", "float", "dtype"}
"""The one-key mappings :func:`_encode_arg` writes; any other mapping in a stored graph is refused."""


def _decode_arg(arg: Any, nodes: dict[str, fx.Node]) -> Any:
    if isinstance(arg, list):
        return [_decode_arg(a, nodes) for a in arg]
    if not isinstance(arg, dict):
        return arg
    if len(arg) != 1 or next(iter(arg)) not in _ARG_TAGS:
        raise SnnConvertError(f"artifact graph holds an argument of unknown form: {shorten(arg, 60)}")
    if "node" in arg:
        if not isinstance(arg["node"], str) or arg["node"] not in nodes:
            raise SnnConvertError("artifact graph uses a node before defining it")
        return nodes[arg["node"]]
    if "slice" in arg:
        return slice(*(_decode_arg(a, nodes) for a in arg["slice"]))
    if "ellipsis" in arg:
        return Ellipsis
    if "tuple" in arg:
        return tuple(_decode_arg(a, nodes) for a in arg["tuple"])
    if "dict" in arg:
        if not isinstance(arg["dict"], dict):
            raise SnnConvertError("artifact graph holds a mapping argument that is not a mapping")
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


def _decode_graph(items: list[dict], modules: dict[str, nn.Module]) -> fx.Graph:
    """Rebuild a graph from its stored nodes. Every string that fx would write into Python source
    unquoted is checked first (:func:`_identifier`); operations come from allow-lists and module
    calls from ``modules`` (the artifact's own), so nothing outside them can be reached."""
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    outputs = 0
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "op", "target")) \
                or not isinstance(item.get("args"), (list, dict)) or not isinstance(item.get("kwargs"), dict):
            raise SnnConvertError("artifact has a graph node without name, op, target, args and kwargs")
        name = _identifier(item["name"], "'name' of a node")
        if name in nodes:
            raise SnnConvertError(f"artifact has two graph nodes named {name!r}")
        op, target = item["op"], item["target"]
        if op == "call_function":
            if target not in _FUNCTIONS:
                raise SnnConvertError(f"artifact uses an operation snnconvert does not allow: {shorten(target, 60)}")
            target = _FUNCTIONS[target]
        elif op == "call_method":
            if target not in _METHODS:
                raise SnnConvertError(f"artifact uses a method snnconvert does not allow: {shorten(target, 60)}")
        elif op == "placeholder":
            _identifier(target, f"'target' of input {name!r}")
        elif op == "call_module":
            if _module_path(target, f"'target' of node {name!r}") not in modules:
                raise SnnConvertError(f"artifact graph node {name!r} calls a module it does not store: "
                                      f"{shorten(target, 60)}")
        elif op == "output":
            outputs += 1
            if target != "output" or outputs > 1:
                raise SnnConvertError("artifact graph has an output node that is not its one 'output'")
        else:
            raise SnnConvertError(f"artifact has a graph node of unknown kind {shorten(op, 40)}")
        args = _decode_arg(item["args"], nodes)
        kwargs = _decode_arg(item["kwargs"], nodes)
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
            raise SnnConvertError(f"artifact graph node {name!r} has malformed arguments")
        for key in kwargs:  # decoded: fx writes these keys into source as `key = value`
            _identifier(key, f"keyword argument of node {name!r}")
        nodes[name] = graph.create_node(op, target, tuple(args), kwargs, name=name)
    if outputs != 1:
        raise SnnConvertError("artifact graph has no output node")
    return graph


# ---------------------------------------------------------------------------- modules


def module_spec(module: nn.Module, table: dict[str, ModuleCodec] | None = None) -> dict:
    """A JSON-compatible description of ``module``'s structure (no tensor values)."""
    table = table if table is not None else codec_table()
    if isinstance(module, fx.GraphModule):
        leaves = {}
        for node in module.graph.nodes:
            if node.op == "call_module" and node.target not in leaves:
                leaves[node.target] = module_spec(module.get_submodule(node.target), table)
        return {"type": "GraphModule", "graph": _encode_graph(module), "modules": leaves}
    name = _codec_name(module, table)
    spec: dict[str, Any] = {"type": name, "config": table[name].to_config(module)}
    children = getattr(module, "serial_children", None)
    if children:
        spec["children"] = {c: module_spec(getattr(module, c), table) for c in children}
    return spec


def module_from_spec(spec: dict, table: dict[str, ModuleCodec] | None = None) -> nn.Module:
    """Rebuild the structure described by :func:`module_spec` (values still to be loaded)."""
    table = table if table is not None else codec_table()
    kind = spec.get("type")
    if kind == "GraphModule":
        modules = {_module_path(target, "module name"): module_from_spec(s, table)
                   for target, s in spec["modules"].items()}
        return fx.GraphModule(modules, _decode_graph(spec["graph"], modules))
    if kind not in table:
        raise SnnConvertError(f"artifact contains a module type snnconvert does not know: {kind!r}")
    module = table[kind].from_config(spec.get("config", {}))
    declared = tuple(getattr(type(module), "serial_children", None) or getattr(module, "serial_children", ()) or ())
    for child, child_spec in spec.get("children", {}).items():
        if child not in declared:
            raise SnnConvertError(f"artifact gives a {kind} a part it does not have: {shorten(child, 60)}")
        setattr(module, child, module_from_spec(child_spec, table))
    return module
