"""QDQ ingest entry points: an ONNX model with QuantizeLinear/DequantizeLinear pairs becomes a
quantized model directly (the node mapping: :mod:`snnconvert.ingest.onnx_qdq_ops`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import fx

from snnconvert.data.input_spec import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.ingest.onnx import import_graph, input_spec_of, is_quantized, read_onnx
from snnconvert.limits import MAX_ONNX_BYTES
from snnconvert.quantize.quantizer import INPUT_QUANT
from snnconvert.safe_zip import memory_cap


@dataclass
class QDQImport:
    """A QDQ model read by :func:`import_qdq`: its float and quantized graphs and what they take."""

    float_model: fx.GraphModule
    model: fx.GraphModule
    name: str
    source: str
    input_spec: InputSpec
    num_classes: int
    act_bits: int
    weight_bits: int
    notes: list[str]


def import_qdq(path: str | Path) -> QDQImport:
    """Import a QDQ-quantized ONNX model: the quantized graph (Q/DQ pairs as quantizers, integer
    weights as QConv2d/QLinear) and the float graph (the same file with the Q/DQ pairs dropped).
    Refuses, with one line saying why, what cannot be converted exactly."""
    path = Path(path).expanduser()
    model = read_onnx(path)
    if not is_quantized(model):
        raise SnnConvertError(f"{path.name} has no QuantizeLinear/DequantizeLinear nodes; it is a float model: "
                              "calibrate it with `snnconvert quantize`")
    float_imp = import_graph(model, path, quantized=False)
    q_imp = import_graph(model, path, quantized=True)
    spec, notes = input_spec_of(model, q_imp.input_shape, None, None)
    if spec.mean is not None:
        raise SnnConvertError(
            f"{path.name} quantizes normalized inputs (metadata mean/std), but snnconvert's quantized models take raw "
            "pixels in [0, 1]; export the model with the normalization inside the graph before quantizing")
    if INPUT_QUANT not in dict(q_imp.module.named_children()):
        raise SnnConvertError(
            f"{path.name} does not quantize its input (no QuantizeLinear right after it, e.g. a normalization "
            "Sub/Div comes first), so its integers have no spiking input encoding; fold the normalization into the "
            "first convolution (a mean border x - mean -> Pad -> + mean is recognized) and quantize again")
    if not q_imp.output_shape or len(q_imp.output_shape) != 2:
        raise SnnConvertError(f"{path.name} outputs shape {list(q_imp.output_shape)}; a classifier outputs N x classes")
    notes = [f"QDQ model imported from ONNX opset {q_imp.opset}: scales and zero points taken from the file, "
             "nothing re-quantized", *notes]
    act_bits = max(q_imp.act_bits, default=8)
    return QDQImport(float_imp.module, q_imp.module, path.stem, f"onnx:{path.resolve()}", spec,
                     int(q_imp.output_shape[1]), act_bits, max(q_imp.weight_bits, default=act_bits), notes)


def is_qdq_file(path: str | Path) -> bool:
    """True for an existing ``.onnx`` file with Q/DQ nodes (reads only the graph, not the data)."""
    import onnx

    path = Path(path).expanduser()
    if path.suffix.lower() != ".onnx" or not path.is_file():  # is_file: a regular file (no pipe, no device)
        return False
    try:
        cap = memory_cap()
        if path.stat().st_size > min(MAX_ONNX_BYTES, cap if cap is not None else MAX_ONNX_BYTES):
            return False  # the importer (read_onnx) says why, without reading it
        return is_quantized(onnx.load(str(path), load_external_data=False))
    except Exception:  # noqa: BLE001 - unreadable files are reported by the importer
        return False
