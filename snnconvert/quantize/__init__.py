"""Calibration and quantization (PTQ and QAT) on core fake-quantize arithmetic."""

from snnconvert.quantize.histogram import ClipStats, RangeDoublingHistogram
from snnconvert.quantize.modules import ActQuant, QConv2d, QConvBn2d, QLinear
from snnconvert.quantize.quantizer import (
    INPUT_QUANT,
    QATSchedule,
    QuantizeConfig,
    QuantizeResult,
    calibrate,
    finalize,
    insert_quantizers,
    qat_finetune,
    quantize_graph,
    quantizers,
    set_quantization,
    weight_layers,
)
from snnconvert.quantize.records import LayerQuantRecord, QuantRef, integer_weights, layer_records

__all__ = [
    "INPUT_QUANT",
    "ActQuant",
    "ClipStats",
    "LayerQuantRecord",
    "QATSchedule",
    "QConv2d",
    "QConvBn2d",
    "QLinear",
    "QuantRef",
    "QuantizeConfig",
    "QuantizeResult",
    "RangeDoublingHistogram",
    "calibrate",
    "finalize",
    "insert_quantizers",
    "integer_weights",
    "layer_records",
    "qat_finetune",
    "quantize_graph",
    "quantizers",
    "set_quantization",
    "weight_layers",
]
