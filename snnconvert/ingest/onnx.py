"""ONNX ingest: read, validate and import an ``.onnx`` file as a torch.fx GraphModule.

The importer is snnconvert's own (no onnx2torch). It runs ``onnx.checker`` and strict shape
inference first, folds constant subgraphs, and maps the supported operators
(:data:`SUPPORTED_OPS`) onto the modules and functions the graph passes understand. Every node
it cannot import is listed in one :class:`~snnconvert.errors.UnsupportedGraphError`.
External-data files are read only from the model's own folder.

Quantized (QDQ) models are imported by :mod:`snnconvert.ingest.onnx_qdq` through the same
builder; :func:`load_onnx` gives the float model of any file (Q/DQ pairs dropped).
"""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from snnconvert.data.input_spec import InputSpec
from snnconvert.errors import SnnConvertError, UnsupportedGraphError
from snnconvert.graph.capture import propagate_shapes
from snnconvert.graph.modules import BoundedReLU, ChannelAffine
from snnconvert.ingest.onnx_base import Grid, QConst, _attrs, _Pending, _Unsupported
from snnconvert.ingest.onnx_qdq_ops import dequantize, pending_quant, quantized_layer
from snnconvert.ingest.types import LoadedModel
from snnconvert.limits import MAX_ONNX_BYTES, require_regular_file, shorten
from snnconvert.options import opt
from snnconvert.safe_zip import memory_cap, size_text

MIN_OPSET = 11
SUPPORTED_OPS = (
    "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
    "GlobalAveragePool", "ReduceMean", "Add", "Sum", "Sub", "Mul", "Div", "Concat", "Flatten", "Reshape", "Pad",
    "Slice", "Identity", "Constant", "Dropout", "QuantizeLinear", "DequantizeLinear",
)
"""Operators the importer maps (Sub/Div only with a constant operand; Q/DQ for quantized models).
Any other operator is accepted only inside a constant subgraph, which is folded at import."""

META_MEAN = "snnconvert.mean"
META_STD = "snnconvert.std"
_INT64_MAX = 2**62
_HINTS = {
    "Softmax": "drop the softmax before export: classification uses the logits",
    "Sigmoid": "gating activations have no spiking equivalent; remove the gate",
    "HardSigmoid": "gating activations have no spiking equivalent; remove the gate",
    "HardSwish": "not a ReLU-type activation; replace it with ReLU and fine-tune",
    "Gelu": "not a ReLU-type activation; replace it with ReLU and fine-tune",
    "LeakyRelu": "not a ReLU-type activation; replace it with ReLU and fine-tune",
    "QLinearConv": "operator-oriented (QOperator) quantization; quantize with QuantFormat.QDQ instead",
    "QLinearMatMul": "operator-oriented (QOperator) quantization; quantize with QuantFormat.QDQ instead",
}


def _class_name(stem: str) -> str:
    """An ASCII identifier for the imported GraphModule's class, from the file name."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")
    return f"onnx_{name}" if not name or name[0].isdigit() else name


class _Poisoned(Exception):
    """A node whose input could not be imported (already reported)."""


# --------------------------------------------------------------------------- reading and checks


def read_onnx(path: str | Path) -> Any:
    """Load and validate an ONNX file: parse, external data (model folder only), checker, opset,
    strict shape inference. Returns the ``onnx.ModelProto`` with shapes inferred; every problem is a
    one-line :class:`SnnConvertError`."""
    import onnx

    path = Path(path).expanduser()
    if not path.exists():
        raise SnnConvertError(f"ONNX file {path} does not exist; check the path")
    if path.is_dir():
        raise SnnConvertError(f"{path} is a directory; pass the .onnx file itself")
    data = _read_bounded(path)
    if not data:
        raise SnnConvertError(f"ONNX file {path} is empty; export the model again")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise SnnConvertError(
            f"ONNX file {path} is truncated or corrupt ({_first_line(exc) or type(exc).__name__}); export it again"
        ) from None
    if not model.graph.node:
        raise SnnConvertError(f"ONNX file {path} holds no graph (truncated or not an ONNX model); export it again")
    _load_external_data(model, path.parent.resolve(), path)
    _check_opset(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError and friends
        raise SnnConvertError(f"ONNX file {path} is not a valid model: {_first_line(exc)}") from None
    _fix_batch_dim(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001
        raise SnnConvertError(f"ONNX shape inference failed on {path}: {_first_line(exc)}") from None
    return model


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip() and not ln.strip().startswith("==>")]
    text = lines[0] if lines else ""
    return re.sub(r"^\[ONNXRuntimeError\].*?:\s*", "", text)[:200]


def _read_bounded(path: Path) -> bytes:
    """The bytes of the ``.onnx`` file ``path``: a regular file (a named pipe or a device is
    refused before it is opened) of at most :data:`MAX_ONNX_BYTES` that fits in memory."""
    require_regular_file(path, "ONNX file")
    shown = shorten(str(path), 200)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_ONNX_BYTES:
                raise SnnConvertError(f"ONNX file {shown} is {size / 2**30:.1f} GiB, more than the 2 GiB an ONNX file "
                                      "can hold; keep large weights in external data files")
            cap = memory_cap()
            if cap is not None and size > cap:
                raise SnnConvertError(f"ONNX file {shown} is {size_text(size)}, more than the {size_text(cap)} of "
                                      "memory available to read it")
            return handle.read(min(size, MAX_ONNX_BYTES) + 1)
    except OSError as exc:
        raise SnnConvertError(f"ONNX file {shown} cannot be read ({exc.strerror or type(exc).__name__})") from None


def _external_int(path: Path, tensor: Any, info: dict[str, str], key: str) -> int | None:
    """``offset``/``length`` of a tensor's external data: a non-negative integer, or None if absent."""
    text = info.get(key)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise SnnConvertError(f"ONNX file {shorten(str(path), 200)}: tensor '{shorten(tensor.name)}' gives its "
                              f"external data the {key} {shorten(text, 40)}, not a byte count; export it again")
    return value


def _load_external_data(model: Any, folder: Path, path: Path) -> None:
    """Read external tensor data, only from regular files inside ``folder`` (no absolute paths,
    no ``..``, no symlink leading out, no pipe or device), each range within the file's real size
    and all of them together within the available memory, checked before anything is read."""
    from onnx import TensorProto

    planned: list[tuple[Any, Path, int, int]] = []
    total = 0
    cap = memory_cap()
    for tensor in _all_tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        name = shorten(tensor.name)
        try:
            target = (folder / location).resolve()
            outside = not location or os.path.isabs(location) or ".." in Path(location).parts \
                or not target.is_relative_to(folder)
        except (OSError, ValueError, RuntimeError):
            outside = True
        if outside:
            raise SnnConvertError(
                f"ONNX file {path}: tensor '{name}' points to external data '{shorten(location)}' outside the model's "
                "folder; external data must sit next to the .onnx file"
            )
        if not target.exists():
            raise SnnConvertError(
                f"ONNX file {path}: external data file '{shorten(location)}' of tensor '{name}' is missing; copy it "
                "next to the .onnx file"
            )
        require_regular_file(target, f"ONNX file {path}: external data file")
        offset = _external_int(path, tensor, info, "offset") or 0
        length = _external_int(path, tensor, info, "length")
        size = target.stat().st_size
        end = size if length is None else offset + length
        if offset > size or end > size:
            raise SnnConvertError(
                f"ONNX file {path}: tensor '{name}' asks for bytes {offset}..{end} of external data file "
                f"'{shorten(location)}', which holds {size} bytes; the file is truncated or the model crafted"
            )
        total += end - offset
        if cap is not None and total > cap:
            raise SnnConvertError(
                f"ONNX file {path}: its external data needs {size_text(total)} of memory, more than the "
                f"{size_text(cap)} available"
            )
        planned.append((tensor, target, offset, end - offset))
    for tensor, target, offset, length in planned:
        try:
            with open(target, "rb") as handle:
                handle.seek(offset)
                raw = handle.read(length)
        except OSError as exc:
            raise SnnConvertError(f"ONNX file {path}: external data file {shorten(str(target), 200)} cannot be read "
                                  f"({exc.strerror or type(exc).__name__})") from None
        if len(raw) != length:
            raise SnnConvertError(
                f"ONNX file {path}: external data file '{shorten(str(target.name))}' is shorter than tensor "
                f"'{shorten(tensor.name)}' needs"
            )
        tensor.raw_data = raw
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]


def _all_tensors(model: Any):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


def _check_opset(model: Any, path: Path) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None:
        raise SnnConvertError(f"ONNX file {path} declares no default-domain opset; export it again")
    if not MIN_OPSET <= version <= newest:
        raise SnnConvertError(
            f"ONNX file {path} uses opset {version}; snnconvert reads opsets {MIN_OPSET} to {newest}: re-export "
            f"with opset_version={min(max(version, MIN_OPSET), newest)} (or convert it with onnx.version_converter)"
        )


def _fix_batch_dim(model: Any) -> None:
    """Give a symbolic batch dimension the size 1, so shapes (and Shape ops) are static."""
    init = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in init:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1


def default_opset(model: Any) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def is_quantized(model: Any) -> bool:
    """True if the model has QuantizeLinear/DequantizeLinear nodes (a QDQ model)."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


# --------------------------------------------------------------------------- constants


def _fold_constants(model: Any, shapes: dict[str, tuple[int, ...]]) -> tuple[dict, dict, set]:
    """Evaluate every node whose inputs are all constant. Returns ``(consts, qconsts, folded
    node names)``; DequantizeLinear of a constant also records its integers in ``qconsts``."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    consts: dict[str, np.ndarray] = {}
    for t in model.graph.initializer:
        try:
            consts[t.name] = numpy_helper.to_array(t)
        except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # dims that do not fit the data
            raise SnnConvertError(f"ONNX initializer {shorten(str(t.name), 60)} is damaged "
                                  f"({shorten(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)})") \
                from None
    qconsts: dict[str, QConst] = {}
    folded: set[str] = set()
    opset = default_opset(model)
    for node in model.graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant":
            value = ReferenceEvaluator(node).run(None, {})[0]
            consts[node.output[0]] = np.asarray(value)
        elif node.op_type == "Shape" and node.input[0] in shapes and node.input[0] not in consts:
            shape = np.array(shapes[node.input[0]], dtype=np.int64)
            consts[node.output[0]] = _slice_shape(node, shape)
        elif inputs and all(i in consts for i in inputs):
            if node.op_type == "Identity":
                consts[node.output[0]] = consts[inputs[0]]
            else:
                try:
                    values = _evaluate(node, {i: consts[i] for i in inputs}, opset)
                except Exception:  # noqa: BLE001 - left for the importer to report
                    continue
                for name, value in zip(node.output, values, strict=False):
                    if name:
                        consts[name] = np.asarray(value)
            if node.op_type == "DequantizeLinear":
                qconsts[node.output[0]] = _qconst(node, consts)
        else:
            continue
        folded.add(node.name or node.output[0])
    return consts, qconsts, folded


def _evaluate(node: Any, feeds: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Run one node on constants with onnx's reference evaluator, at the model's opset."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.shape(v))
              for k, v in feeds.items()]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        return ReferenceEvaluator(model).run(None, feeds)
    except RuntimeError:  # no reference kernel at this opset (e.g. Q/DQ before 19): the newest one
        return ReferenceEvaluator(node).run(None, feeds)


def _without_folded(model: Any, consts: dict[str, np.ndarray], folded: set[str]) -> Any:
    """A copy of ``model`` with the folded nodes replaced by initializers, shapes re-inferred
    (shapes behind computed constants, e.g. the pads of a Pad, become known)."""
    import onnx
    from onnx import numpy_helper

    if not folded:
        return model
    result = onnx.ModelProto()
    result.CopyFrom(model)
    kept = [n for n in model.graph.node if (n.name or n.output[0]) not in folded]
    have = {t.name for t in model.graph.initializer}
    needed = {i for n in kept for i in n.input if i in consts and i not in have}
    del result.graph.node[:]
    result.graph.node.extend(kept)
    result.graph.initializer.extend(numpy_helper.from_array(np.asarray(consts[name]), name) for name in sorted(needed))
    del result.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(result, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001
        raise SnnConvertError(f"ONNX shape inference failed after folding constants: {_first_line(exc)}") from None


def _slice_shape(node: Any, shape: np.ndarray) -> np.ndarray:
    attrs = _attrs(node)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return shape[start:end]


def _qconst(node: Any, consts: dict[str, np.ndarray]) -> QConst:
    x = consts[node.input[0]].astype(np.int64)
    scale = consts[node.input[1]].astype(np.float64)
    zp = consts[node.input[2]].astype(np.int64) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
    axis = _attrs(node).get("axis", 1) if scale.size > 1 else None
    if axis is not None and axis < 0:
        axis += x.ndim
    return QConst(x, scale, zp.astype(np.int64), axis)


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


# --------------------------------------------------------------------------- graph builder


@dataclass
class ImportedGraph:
    """What the builder produced."""

    module: fx.GraphModule
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    opset: int
    quantized: bool
    act_bits: list[int] = field(default_factory=list)
    weight_bits: list[int] = field(default_factory=list)


class _Builder:
    """Turns the (validated, shape-inferred) ONNX graph into a torch.fx GraphModule.

    ``quantized=False``: Q/DQ pairs are dropped (the float model). ``quantized=True``: weights
    dequantized from integers become QConv2d/QLinear, activation Q/DQ pairs become ActQuant
    modules (see :mod:`snnconvert.ingest.onnx_qdq`).
    """

    def __init__(self, model: Any, path: Path, *, quantized: bool) -> None:
        self.path, self.quantized = path, quantized
        self.consts, self.qconsts, self.folded = _fold_constants(model, _shapes(model))
        self.model = _without_folded(model, self.consts, self.folded)
        self.shapes = _shapes(self.model)
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.env: dict[str, fx.Node] = {}
        self.poisoned: set[str] = set()
        self.pending: dict[str, _Pending] = {}
        self.grids: dict[fx.Node, Grid] = {}
        self.problems: list[str] = []
        self.consumers: dict[str, list[Any]] = {}
        self.act_bits: list[int] = []
        self.weight_bits: list[int] = []
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.placeholder: fx.Node | None = None
        self.causes: list[str] = []

    # ---------------------------------------------------------------- helpers

    def add_module(self, base: str, module: nn.Module, args: tuple) -> fx.Node:
        if isinstance(base, bytes):  # a node name that is not UTF-8 (a damaged or crafted file)
            base = base.decode("utf-8", "replace")
        name = re.sub(r"[^A-Za-z0-9_]+", "_", str(base)).strip("_").lower() or "layer"
        if name[0].isdigit():
            name = f"n_{name}"
        candidate, i = name, 1
        while hasattr(self.root, candidate):
            candidate, i = f"{name}_{i}", i + 1
        self.root.add_module(candidate, module)
        return self.graph.call_module(candidate, args)

    def tensor(self, name: str) -> fx.Node:
        if name in self.poisoned:
            raise _Poisoned(name)
        if name in self.env:
            return self.env[name]
        if name in self.consts:
            raise _Unsupported(f"input '{name}' is a constant where an activation is expected")
        if name in self.pending:
            raise _Unsupported(f"input '{name}' is a quantized tensor used without DequantizeLinear "
                               "(operator-oriented quantization); quantize with QuantFormat.QDQ")
        raise _Unsupported(f"input '{name}' is not produced by any node (missing initializer?)")

    def const(self, node: Any, index: int, what: str) -> np.ndarray:
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            raise _Unsupported(f"needs its {what} input")
        if name not in self.consts:
            raise _Unsupported(f"its {what} must be a constant (initializer)")
        return self.consts[name]

    def optional_const(self, node: Any, index: int) -> np.ndarray | None:
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            return None
        if name not in self.consts:
            raise _Unsupported(f"input {index} ('{name}') must be a constant")
        return self.consts[name]

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            raise _Unsupported(f"the shape of '{name}' is not known after shape inference")
        return self.shapes[name]

    # ---------------------------------------------------------------- build

    def build(self) -> ImportedGraph:
        graph = self.model.graph
        inits = {t.name for t in graph.initializer}
        inputs = [v for v in graph.input if v.name not in inits]
        if len(inputs) != 1:
            raise SnnConvertError(f"ONNX file {self.path} has {len(inputs)} inputs; snnconvert takes image "
                                  "classifiers with one input")
        if len(graph.output) != 1:
            raise SnnConvertError(f"ONNX file {self.path} has {len(graph.output)} outputs; export only the logits")
        in_name = inputs[0].name
        in_shape = self.shapes.get(in_name)
        if in_shape is None or len(in_shape) != 4:
            raise SnnConvertError(f"ONNX file {self.path}: input '{in_name}' must be an image batch N x C x H x W "
                                  f"with fixed C, H, W (got {in_shape or 'a dynamic shape'})")
        self.placeholder = self.graph.placeholder("x")
        self.env[in_name] = self.placeholder
        for node in graph.node:
            if (node.name or node.output[0]) in self.folded:
                continue
            handler = getattr(self, f"op_{node.op_type}", None) if node.domain in ("", "ai.onnx") else None
            label = f"{node.op_type} '{node.name or node.output[0]}'"
            try:
                if handler is None:
                    domain = f" (domain {node.domain})" if node.domain not in ("", "ai.onnx") else ""
                    raise _Unsupported(_HINTS.get(node.op_type, f"operator not supported by snnconvert{domain}"))
                handler(node)
            except _Unsupported as exc:
                self.problems.append(f"{label}: {exc}")
                self.causes.append(f"{node.op_type} ({str(exc).split(';')[0][:60]})")
                self.poisoned.update(o for o in node.output if o)
            except _Poisoned:
                self.poisoned.update(o for o in node.output if o)
        out_name = graph.output[0].name
        if not self.problems and out_name not in self.env:
            self.problems.append(f"output '{out_name}' is not computed from the input")
        if self.problems:
            from snnconvert.graph.support import summarize

            error = UnsupportedGraphError(
                self.problems,
                hint=f"Nothing was imported from {self.path.name}. Supported operators: "
                f"{', '.join(SUPPORTED_OPS[:-2])} (and QuantizeLinear/DequantizeLinear pairs).",
            )
            causes = self.causes + ["unreachable output"] * (len(self.problems) - len(self.causes))
            error.summary = summarize(causes, stage=f"ONNX import of {self.path.name}")  # type: ignore[attr-defined]
            raise error
        self.graph.output(self.env[out_name])
        gm = fx.GraphModule(self.root, self.graph, _class_name(self.path.stem))
        gm.graph.eliminate_dead_code()
        gm.delete_all_unused_submodules()
        gm.graph.lint()
        gm.recompile()
        gm.eval()
        out_shape = self.shapes.get(out_name, ())
        return ImportedGraph(gm, in_shape, out_shape, default_opset(self.model), self.quantized,
                             self.act_bits, self.weight_bits)

    def alias(self, node: Any, value: fx.Node) -> None:
        self.env[node.output[0]] = value

    # ---------------------------------------------------------------- weighted layers

    def _weight(self, node: Any, index: int, what: str) -> tuple[np.ndarray, QConst | None]:
        name = node.input[index] if index < len(node.input) else ""
        value = self.const(node, index, what)
        return value.astype(np.float32), self.qconsts.get(name)

    def _weighted(self, float_layer: nn.Module, qc: QConst | None, out_axis: int, node: Any,
                  transpose: bool = False) -> nn.Module:
        if not self.quantized or qc is None:
            return float_layer
        layer, bits = quantized_layer(float_layer, qc, out_axis, transpose)
        self.weight_bits.append(bits)
        return layer

    def op_Conv(self, node: Any) -> None:
        a = _attrs(node)
        w, qc = self._weight(node, 1, "weight")
        if w.ndim != 4:
            raise _Unsupported(f"only 2-D convolutions are supported (weight has {w.ndim - 2} spatial dims)")
        in_shape = self.shape(node.input[0])
        k = tuple(w.shape[2:])
        strides = tuple(a.get("strides", (1, 1)))
        dil = tuple(a.get("dilations", (1, 1)))
        pads = _pads(a, in_shape[2:], k, strides, dil)
        bias = self.optional_const(node, 2)
        group = int(a.get("group", 1))
        symmetric = pads[0] == pads[2] and pads[1] == pads[3]
        conv = nn.Conv2d(w.shape[1] * group, w.shape[0], k, strides, (pads[0], pads[1]) if symmetric else 0, dil,
                         group, bias=bias is not None)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
            if bias is not None:
                conv.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        layer = self._weighted(conv, qc, 0, node)
        x = self.tensor(node.input[0])
        if not symmetric:
            x = self.add_module(f"{node.name}_pad", nn.ZeroPad2d((pads[1], pads[3], pads[0], pads[2])), (x,))
        self.alias(node, self.add_module(node.name or "conv", layer, (x,)))

    def _linear(self, node: Any, w: np.ndarray, bias: np.ndarray | None, qc: QConst | None, out_axis: int,
                transpose: bool) -> None:
        lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            if bias is not None:
                lin.bias.copy_(torch.from_numpy(np.broadcast_to(bias, (w.shape[0],)).astype(np.float32)))
        layer = self._weighted(lin, qc, out_axis, node, transpose)
        x = self.tensor(node.input[0])
        self.alias(node, self.add_module(node.name or "linear", layer, (x,)))

    def op_Gemm(self, node: Any) -> None:
        a = _attrs(node)
        if a.get("transA", 0):
            raise _Unsupported("transA=1 is not supported (the input must be N x features)")
        w, qc = self._weight(node, 1, "weight B")
        if w.ndim != 2:
            raise _Unsupported("weight B must be 2-D")
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        trans = bool(a.get("transB", 0))
        c = self.optional_const(node, 2)
        weight = (w if trans else w.T) * alpha
        if qc is not None and alpha != 1.0:
            qc = QConst(qc.values, qc.scale * alpha, qc.zero_point, qc.axis)
        bias = None if c is None else np.broadcast_to(c.astype(np.float32) * beta, (weight.shape[0],))
        self._linear(node, weight, bias, qc, 0 if trans else 1, not trans)

    def op_MatMul(self, node: Any) -> None:
        w, qc = self._weight(node, 1, "second operand (weight)")
        if w.ndim != 2:
            raise _Unsupported("the weight must be a 2-D constant")
        if len(self.shape(node.input[0])) != 2:
            raise _Unsupported("only N x features inputs are supported (flatten first)")
        self._linear(node, w.T, None, qc, 1, True)

    def op_BatchNormalization(self, node: Any) -> None:
        a = _attrs(node)
        if a.get("training_mode", 0):
            raise _Unsupported("training_mode=1; export the model in eval mode")
        scale, b, mean, var = (self.const(node, i, what).astype(np.float32)
                               for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
        rank = len(self.shape(node.input[0]))
        cls = nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d
        bn = cls(scale.size, eps=float(a.get("epsilon", 1e-5)))
        with torch.no_grad():
            for t, v in ((bn.weight, scale), (bn.bias, b), (bn.running_mean, mean), (bn.running_var, var)):
                t.copy_(torch.from_numpy(v))
        bn.eval()
        self.alias(node, self.add_module(node.name or "bn", bn, (self.tensor(node.input[0]),)))

    # ---------------------------------------------------------------- activations and pooling

    def op_Relu(self, node: Any) -> None:
        self.alias(node, self.add_module(node.name or "relu", nn.ReLU(), (self.tensor(node.input[0]),)))

    def op_Clip(self, node: Any) -> None:
        a = _attrs(node)
        lo = self.optional_const(node, 1)
        hi = self.optional_const(node, 2)
        lo = float(lo) if lo is not None else a.get("min")
        hi = float(hi) if hi is not None else a.get("max")
        if lo is None or lo != 0.0:
            raise _Unsupported(f"Clip with min={lo} is not a ReLU-type activation (min must be 0)")
        module = nn.ReLU() if hi is None or np.isinf(hi) else BoundedReLU(float(hi))
        self.alias(node, self.add_module(node.name or "clip", module, (self.tensor(node.input[0]),)))

    def _pool_args(self, node: Any) -> tuple[tuple, tuple, tuple, bool]:
        a = _attrs(node)
        if len(self.shape(node.input[0])) != 4:
            raise _Unsupported("only 2-D pooling is supported")
        k = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", (1, 1)))
        dil = tuple(a.get("dilations", (1, 1)))
        pads = _pads(a, self.shape(node.input[0])[2:], k, strides, dil)
        if pads[0] != pads[2] or pads[1] != pads[3]:
            raise _Unsupported(f"asymmetric pooling pads {list(pads)} are not supported")
        if any(2 * p > kk for p, kk in zip(pads[:2], k, strict=True)):
            raise _Unsupported("pooling pads larger than half the kernel are not supported")
        return k, strides, (pads[0], pads[1]), bool(a.get("ceil_mode", 0))

    def op_MaxPool(self, node: Any) -> None:
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise _Unsupported("max-pooling indices have no spiking equivalent")
        k, s, p, ceil = self._pool_args(node)
        dil = tuple(_attrs(node).get("dilations", (1, 1)))
        x = self.tensor(node.input[0])
        out = self.add_module(node.name or "maxpool", nn.MaxPool2d(k, s, p, dil, ceil_mode=ceil), (x,))
        if x in self.grids:
            self.grids[out] = self.grids[x]
        self.alias(node, out)

    def op_AveragePool(self, node: Any) -> None:
        k, s, p, ceil = self._pool_args(node)
        if tuple(_attrs(node).get("dilations", (1, 1))) != (1, 1):
            raise _Unsupported("dilated average pooling is not supported")
        include = bool(_attrs(node).get("count_include_pad", 0))
        pool = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include)
        self.alias(node, self.add_module(node.name or "avgpool", pool, (self.tensor(node.input[0]),)))

    def op_GlobalAveragePool(self, node: Any) -> None:
        if len(self.shape(node.input[0])) != 4:
            raise _Unsupported("only N x C x H x W inputs are supported")
        self.alias(node, self.add_module(node.name or "gap", nn.AdaptiveAvgPool2d(1), (self.tensor(node.input[0]),)))

    def op_ReduceMean(self, node: Any) -> None:
        """The mean over the spatial axes of an N x C x H x W tensor: global average pooling (what
        ``torch.onnx.export(dynamo=True)`` writes for ``adaptive_avg_pool2d(x, 1)``)."""
        shape = self.shape(node.input[0])
        attrs = _attrs(node)
        axes = attrs.get("axes")
        if len(node.input) > 1 and node.input[1]:  # opset 18: axes is an input
            axes = self.const(node, 1, "axes").reshape(-1).tolist()
        if axes is None or len(axes) == 0:
            if int(attrs.get("noop_with_empty_axes", 0)):
                self.alias(node, self.tensor(node.input[0]))
                return
            axes = list(range(len(shape)))
        rank = len(shape)
        reduced = sorted({int(a) % rank for a in axes}) if rank else []
        if rank != 4 or reduced != [2, 3]:
            raise _Unsupported(f"a mean over axes {reduced} of a rank-{rank} tensor; only the spatial mean of "
                               "N x C x H x W (global average pooling) is supported")
        out = self.add_module(node.name or "gap", nn.AdaptiveAvgPool2d(1), (self.tensor(node.input[0]),))
        if not int(attrs.get("keepdims", 1)):
            out = self.add_module(f"{node.name or 'gap'}_flatten", nn.Flatten(1), (out,))
        self.alias(node, out)

    # ---------------------------------------------------------------- arithmetic

    def op_Sum(self, node: Any) -> None:
        """n-ary sum of activations (a chain of adds); with a constant among two inputs it is Add."""
        names = [n for n in node.input if n]
        if not names:
            raise _Unsupported("has no inputs")
        if any(n in self.consts for n in names):
            if len(names) != 2:
                raise _Unsupported("a sum of more than two inputs with constants is not supported")
            self.op_Add(node)
            return
        total = self.tensor(names[0])
        for name in names[1:]:
            total = self.graph.call_function(torch.add, (total, self.tensor(name)))
        self.alias(node, total)

    def _affine(self, node: Any, x_name: str, scale: np.ndarray, shift: np.ndarray) -> None:
        shape = self.shape(x_name)
        channels = shape[1] if len(shape) > 1 else 1
        s, b = (_per_channel(v, shape) for v in (scale, shift))
        if s is None or b is None:
            raise _Unsupported("only scalar or per-channel constants are supported")
        s, b = np.broadcast_to(s, (channels,)), np.broadcast_to(b, (channels,))
        x = self.tensor(x_name)
        if np.all(b == 0) and np.all(s == s[0]):
            self.alias(node, self.graph.call_function(torch.mul, (x, float(s[0]))))
            return
        self.alias(node, self.add_module(node.name or "affine", _affine_module(s, b, len(shape), self.quantized),
                                         (x,)))

    def _binary(self, node: Any) -> tuple[str | None, np.ndarray | None, int]:
        """``(tensor input, constant, index of the constant)``; both tensors -> constant None."""
        names = list(node.input[:2])
        consts = [n in self.consts for n in names]
        if all(consts):
            raise _Unsupported("both operands are constants")
        if not any(consts):
            return None, None, -1
        idx = consts.index(True)
        return names[1 - idx], self.consts[names[idx]].astype(np.float64), idx

    def op_Add(self, node: Any, sign: float = 1.0) -> None:
        x_name, c, idx = self._binary(node)
        if c is None:
            a, b = (self.tensor(n) for n in node.input[:2])
            if sign < 0:
                raise _Unsupported("the difference of two activations is not supported")
            self.alias(node, self.graph.call_function(torch.add, (a, b)))
            return
        if sign < 0 and idx == 0:  # c - x
            self._affine(node, x_name, np.array(-1.0), c)
            return
        x = self.env.get(x_name)
        if sign > 0 and x is not None and self._fuse_bias(x, x_name, c):
            self.alias(node, x)
            return
        self._affine(node, x_name, np.array(1.0), sign * c)

    def _fuse_bias(self, x: fx.Node, x_name: str, c: np.ndarray) -> bool:
        """MatMul + Add(bias) -> one Linear with a bias."""
        if x.op != "call_module" or len(self.consumers.get(x_name, [])) != 1:
            return False
        mod = getattr(self.root, x.target)
        if not isinstance(mod, nn.Linear) or mod.bias is not None:
            return False
        try:
            bias = np.broadcast_to(c, (1, mod.out_features)).reshape(-1)
        except ValueError:
            return False
        mod.bias = nn.Parameter(torch.from_numpy(bias.astype(np.float32)).clone())
        return True

    def op_Sub(self, node: Any) -> None:
        self.op_Add(node, sign=-1.0)

    def op_Mul(self, node: Any, invert: bool = False) -> None:
        x_name, c, idx = self._binary(node)
        if c is None:
            raise _Unsupported("a product of two activations (e.g. squeeze-excitation) cannot be computed by "
                               "accumulate-only spiking synapses")
        if invert:
            if idx == 0:
                raise _Unsupported("dividing a constant by an activation is not supported")
            c = 1.0 / c
        self._affine(node, x_name, c, np.array(0.0))

    def op_Div(self, node: Any) -> None:
        self.op_Mul(node, invert=True)

    # ---------------------------------------------------------------- shape ops

    def op_Concat(self, node: Any) -> None:
        rank = len(self.shape(node.output[0]))
        axis = int(_attrs(node)["axis"]) % rank
        if axis == 0:
            raise _Unsupported("concatenation along the batch axis is not supported")
        xs = [self.tensor(n) for n in node.input]
        out = self.graph.call_function(torch.cat, (xs,), {"dim": axis})
        grids = [self.grids.get(x) for x in xs]
        if grids[0] is not None and all(g == grids[0] for g in grids):
            self.grids[out] = grids[0]
        self.alias(node, out)

    def op_Flatten(self, node: Any) -> None:
        rank = len(self.shape(node.input[0]))
        axis = int(_attrs(node).get("axis", 1)) % max(rank, 1)
        if axis != 1:
            raise _Unsupported(f"Flatten(axis={axis}) mixes the batch axis; only axis=1 is supported")
        self._shape_op(node, self.add_module(node.name or "flatten", nn.Flatten(1), (self.tensor(node.input[0]),)))

    def _shape_op(self, node: Any, out: fx.Node) -> None:
        src = self.env.get(node.input[0])
        if src in self.grids:
            self.grids[out] = self.grids[src]
        self.alias(node, out)

    def op_Reshape(self, node: Any) -> None:
        self.const(node, 1, "shape")
        in_shape, out_shape = self.shape(node.input[0]), self.shape(node.output[0])
        if not out_shape or out_shape[0] != in_shape[0]:
            raise _Unsupported(f"reshape {list(in_shape)} -> {list(out_shape)} mixes the batch axis")
        x = self.tensor(node.input[0])
        if len(out_shape) == 2 and out_shape[1] == int(np.prod(in_shape[1:])):
            out = self.add_module(node.name or "flatten", nn.Flatten(1), (x,))
        else:
            out = self.graph.call_method("reshape", (x, (-1, *out_shape[1:])))
        self._shape_op(node, out)

    def op_Pad(self, node: Any) -> None:
        a = _attrs(node)
        mode = a.get("mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            raise _Unsupported(f"{mode} padding is not supported (only constant zero padding)")
        pads = self.const(node, 1, "pads").astype(np.int64).tolist()
        value = self.optional_const(node, 2)
        if value is not None and value.size and float(value.reshape(-1)[0]) != 0.0:
            raise _Unsupported(f"padding with {float(value.reshape(-1)[0])} (only zero padding is supported)")
        rank = len(self.shape(node.input[0]))
        axes = self.optional_const(node, 3)
        axes = [int(v) % rank for v in axes] if axes is not None else list(range(rank))
        begin, end = pads[: len(axes)], pads[len(axes):]
        full = {ax: (b, e) for ax, b, e in zip(axes, begin, end, strict=True)}
        if any(v < 0 for v in pads):
            raise _Unsupported("negative pads (cropping) are not supported")
        if full.get(0, (0, 0)) != (0, 0):
            raise _Unsupported("padding the batch axis is not supported")
        torch_pads: list[int] = []
        for ax in range(rank - 1, 0, -1):
            torch_pads += list(full.get(ax, (0, 0)))
        while torch_pads and torch_pads[-2:] == [0, 0]:
            torch_pads = torch_pads[:-2]
        x = self.tensor(node.input[0])
        if not torch_pads:
            self._shape_op(node, x)
            return
        if rank == 4 and len(torch_pads) == 4:
            out = self.add_module(node.name or "pad", nn.ZeroPad2d(tuple(torch_pads)), (x,))
        else:
            out = self.graph.call_function(F.pad, (x, tuple(torch_pads)))
        self._shape_op(node, out)

    def op_Slice(self, node: Any) -> None:
        starts = self.const(node, 1, "starts").astype(np.int64).tolist()
        ends = self.const(node, 2, "ends").astype(np.int64).tolist()
        shape = self.shape(node.input[0])
        rank = len(shape)
        axes = self.optional_const(node, 3)
        axes = [int(v) % rank for v in axes] if axes is not None else list(range(len(starts)))
        steps = self.optional_const(node, 4)
        steps = steps.astype(np.int64).tolist() if steps is not None else [1] * len(starts)
        index: list[slice] = [slice(None)] * rank
        for ax, st, en, sp in zip(axes, starts, ends, steps, strict=True):
            if sp <= 0:
                raise _Unsupported("slices with non-positive steps are not supported")
            dim = shape[ax]
            st = max(0, st + dim if st < 0 else st)
            en = dim if en >= _INT64_MAX or en > dim else (en + dim if en < 0 else en)
            if ax == 0 and (st, en, sp) != (0, dim, 1):
                raise _Unsupported("slicing the batch axis is not supported")
            index[ax] = slice(st if st else None, en if en != dim else None, sp if sp != 1 else None)
        while len(index) > 1 and index[-1] == slice(None):
            index.pop()
        out = self.graph.call_function(operator.getitem, (self.tensor(node.input[0]), tuple(index)))
        self._shape_op(node, out)

    def op_Identity(self, node: Any) -> None:
        self.alias(node, self.tensor(node.input[0]))

    def op_Dropout(self, node: Any) -> None:
        self.alias(node, self.tensor(node.input[0]))

    # ---------------------------------------------------------------- quantization

    def op_QuantizeLinear(self, node: Any) -> None:
        self.pending[node.output[0]] = pending_quant(self, node)

    def op_DequantizeLinear(self, node: Any) -> None:
        pend = self.pending.get(node.input[0])
        if pend is None:
            if node.input[0] in self.poisoned:
                raise _Poisoned(node.input[0])
            raise _Unsupported("dequantizes a tensor that no QuantizeLinear produced (integer model input?)")
        self.alias(node, dequantize(self, node, pend))


def _pads(a: dict, size: tuple[int, ...], k: tuple, strides: tuple, dil: tuple) -> tuple[int, int, int, int]:
    """ONNX pads as ``(top, left, bottom, right)`` (auto_pad resolved)."""
    auto = a.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for n, kk, s, d in zip(size, k, strides, dil, strict=True):
            out = -(-n // s)
            total = max(0, (out - 1) * s + (kk - 1) * d + 1 - n)
            small = total // 2
            pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return pads[0][0], pads[1][0], pads[0][1], pads[1][1]
    if auto == "VALID":
        return 0, 0, 0, 0
    p = list(a.get("pads", (0, 0, 0, 0)))
    return p[0], p[1], p[2], p[3]


def _per_channel(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """A constant broadcast against ``shape`` as one value or one per channel (axis 1), else None."""
    value = np.asarray(value, dtype=np.float64)
    if value.size == 1:
        return value.reshape(1)
    channels = shape[1] if len(shape) > 1 else 0
    if value.ndim > len(shape):
        return None
    padded = (1,) * (len(shape) - value.ndim) + value.shape
    if value.size == channels and padded[1] == channels:
        return value.reshape(-1)
    return None


def _affine_module(scale: np.ndarray, shift: np.ndarray, rank: int, quantized: bool) -> nn.Module:
    """A per-channel ``x * scale + shift``: a batch-norm for float graphs (prepare fuses or keeps
    it), a ChannelAffine for quantized graphs (already in canonical form)."""
    s = torch.from_numpy(np.ascontiguousarray(scale, dtype=np.float32))
    b = torch.from_numpy(np.ascontiguousarray(shift, dtype=np.float32))
    if quantized:
        return ChannelAffine(s, b)
    bn = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(s.numel(), eps=0.0)
    with torch.no_grad():
        bn.weight.copy_(s)
        bn.bias.copy_(b)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
    return bn.eval()


# --------------------------------------------------------------------------- public API


def import_graph(model: Any, path: Path, *, quantized: bool) -> ImportedGraph:
    """Build the GraphModule of a validated model (see :func:`read_onnx`) with shapes propagated."""
    imported = _Builder(model, path, quantized=quantized).build()
    propagate_shapes(imported.module, (2, *imported.input_shape[1:]))
    return imported


def input_spec_of(model: Any, shape: tuple[int, ...], mean: tuple[float, ...] | None,
                  std: tuple[float, ...] | None) -> tuple[InputSpec, list[str]]:
    """The input spec: geometry from the graph, normalization from the arguments or from the
    file's metadata (``snnconvert.mean``/``snnconvert.std``), else none (raw pixels in [0, 1])."""
    notes = []
    meta = {p.key: p.value for p in model.metadata_props}
    if mean is None and META_MEAN in meta:
        mean = tuple(float(v) for v in meta[META_MEAN].split(","))
        std = tuple(float(v) for v in meta.get(META_STD, ",".join("1" for _ in mean)).split(","))
        notes.append("input normalization read from the file's metadata")
    elif mean is None:
        notes.append("no input normalization given: the model is assumed to take raw pixels in [0, 1]")
    if mean is not None and (std is None or len(mean) != shape[1] or len(std) != shape[1]):
        raise SnnConvertError(f"input normalization needs {shape[1]} mean and std values (one per channel)")
    return InputSpec(channels=shape[1], size=(shape[2], shape[3]), resize=None, mean=mean, std=std), notes


def load_onnx(path: str | Path, *, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
              num_classes: int | None = None) -> LoadedModel:
    """Import the float model of an ONNX file as a :class:`LoadedModel` (for ``quantize``).

    Q/DQ pairs of a quantized file are dropped (use :func:`snnconvert.ingest.onnx_qdq.quantized_from_onnx`
    to keep them). ``mean``/``std``: the normalization the model expects (default: from the file's
    metadata, else none).
    """
    path = Path(path).expanduser()
    model = read_onnx(path)
    imported = import_graph(model, path, quantized=False)
    spec, notes = input_spec_of(model, imported.input_shape, mean, std)
    classes = int(imported.output_shape[-1]) if imported.output_shape else None
    if num_classes is not None and classes is not None and num_classes != classes:
        raise SnnConvertError(f"{path.name} outputs {classes} classes, not {opt('quantize', 'num_classes')} "
                              f"{num_classes}")
    if imported.output_shape and len(imported.output_shape) != 2:
        raise SnnConvertError(
            f"{path.name} outputs shape {list(imported.output_shape)}; a classifier outputs N x classes")
    if is_quantized(model):
        notes.append("QuantizeLinear/DequantizeLinear pairs dropped: this is the float model")
    notes.insert(0, f"imported from ONNX opset {imported.opset}")
    return LoadedModel(module=imported.module, name=path.stem, source=f"onnx:{path.resolve()}", input_spec=spec,
                       num_classes=classes or num_classes or 0, notes=notes)
