"""Ingest formats: the kinds of model spec ``quantize`` accepts, as a registry.

A format says which specs are its own (``claims(spec)``; tried from the highest ``priority``
down) and loads one (``load(spec, weights, num_classes=..., input_size=...) -> LoadedModel``).
A format whose files may already be quantized (ONNX with QDQ nodes) also answers
``prequantized(spec)``: then ``quantize`` takes the file's own scales instead of calibrating.
Built in: ``onnx`` (``*.onnx`` files) and ``zoo`` (bundled and torchvision names: the fallback).
A plugin (``timm:NAME``, say) registers one with ``INGEST_FORMATS.register(name, IngestFormat(...))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from snnconvert.registry import Registry, load_methods

if TYPE_CHECKING:
    from snnconvert.ingest.types import LoadedModel


@dataclass(frozen=True)
class IngestFormat:
    """One kind of model spec (see the module docstring)."""

    description: str
    claims: Callable[[str], bool]
    load: Callable[..., LoadedModel]
    priority: int = 0
    prequantized: Callable[[str], bool] | None = None


INGEST_FORMATS: Registry[IngestFormat] = Registry("ingest format", load=load_methods)
"""Every ingest format by name."""


def format_for(spec: str) -> tuple[str, IngestFormat]:
    """The registered format that claims ``spec`` (highest priority first)."""
    ranked = sorted(INGEST_FORMATS.items().items(), key=lambda item: -item[1].priority)
    for name, fmt in ranked:
        if fmt.claims(spec):
            return name, fmt
    raise LookupError(spec)  # unreachable while the zoo format (claims everything) is registered


def _is_onnx(spec: str) -> bool:
    return spec.strip().lower().endswith(".onnx")


def _load_onnx(spec: str, weights: str | None = None, *, num_classes: int | None = None,
               input_size: tuple[int, int] | None = None) -> LoadedModel:
    from snnconvert.ingest.onnx import load_onnx

    return load_onnx(spec.strip(), num_classes=num_classes)


def _onnx_is_qdq(spec: str) -> bool:
    from snnconvert.ingest.onnx_qdq import is_qdq_file

    return is_qdq_file(spec.strip())


def _load_zoo(spec: str, weights: str | None = None, *, num_classes: int | None = None,
              input_size: tuple[int, int] | None = None) -> LoadedModel:
    from snnconvert.ingest.loader import load_zoo_model

    return load_zoo_model(spec, weights, num_classes=num_classes, input_size=input_size)


INGEST_FORMATS.register("onnx", IngestFormat("an ONNX file (float, or QDQ-quantized)", _is_onnx, _load_onnx,
                                             priority=10, prequantized=_onnx_is_qdq))
INGEST_FORMATS.register("zoo", IngestFormat("a bundled or torchvision model name", lambda spec: True, _load_zoo,
                                            priority=-1000))

__all__ = ["INGEST_FORMATS", "IngestFormat", "format_for"]
