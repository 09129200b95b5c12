"""Small types the ONNX importer and its QDQ handlers share (no import of either)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class _Unsupported(Exception):
    """A node the importer cannot map (the message says why)."""


@dataclass
class QConst:
    """A constant stored as integers with a scale and zero point (a dequantized initializer)."""

    values: np.ndarray  # int64
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None  # None when per tensor


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@dataclass
class Grid:
    """Values on an activation quantizer's grid: ``(q - zero_point) * scale``, q in [0, 2^bits - 1]."""

    scale: float
    zero_point: int
    bits: int


@dataclass
class _Pending:
    """A QuantizeLinear output, waiting for its DequantizeLinear."""

    source: str
    scale: float
    zero_point: int
    bits: int
    qmin: int
