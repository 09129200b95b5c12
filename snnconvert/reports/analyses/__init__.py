"""Analyses: ``evaluate`` reports that are not one coding's own and need the evaluation images.

An analysis is one module of this package that declares itself once::

    ANALYSIS = register_analysis(Analysis(name="membrane", help="...", applies=is_lif_family,
                                          compute=compute, tables=tables, plot=plot))

``evaluate --report NAME`` runs it on the evaluated SNN when ``applies(snn)`` is true (asking
for it on any other SNN is a one-line error); ``all`` does not include analyses (they can run
extra simulations). Its data lands in ``EvaluationReport.coding_reports[NAME]`` (JSON), its
tables are rendered at the edge and its ``plot`` writes PNGs with ``--plots``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnconvert.codings.base import CodingReport, ReportTable
from snnconvert.registry import Registry, load_methods
from snnconvert.simulate.network import SpikingNetwork


@dataclass(frozen=True)
class AnalysisContext:
    """What an analysis may use: the models, the evaluation images and their reference logits."""

    quantized: Any  # pipeline.QuantizedModel
    snn: SpikingNetwork  # in the evaluation dtype, on ``device``
    images: Tensor
    labels: Tensor
    quant_logits: Tensor
    float_logits: Tensor
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    show_progress: bool = False


@dataclass(frozen=True)
class Analysis:
    """One analysis (see the package docstring)."""

    name: str
    help: str
    applies: Callable[[SpikingNetwork], bool]
    compute: Callable[[AnalysisContext], Any]
    tables: Callable[[Any], list[ReportTable]]
    plot: Callable[[Any, Path, str], list[Path]] | None = None
    needs: str = "an SNN"  # what `applies` asks for, for the error message


@functools.cache
def _load_analyses() -> None:
    """This package's analyses, then the method packages' (each registers its own)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    load_methods()


ANALYSES: Registry[Analysis] = Registry("analysis", load=_load_analyses)
"""Every analysis by name."""


def register_analysis(analysis: Analysis) -> Analysis:
    """Add ``analysis`` to the table; returns it."""
    return ANALYSES.register(analysis.name, analysis)


def unregister_analysis(name: str) -> None:
    ANALYSES.unregister(name)


def analyses() -> dict[str, Analysis]:
    """Every registered analysis by name (this package's modules and the methods register on first use)."""
    return ANALYSES.items()


def find_report(coding_name: str | None, name: str) -> CodingReport | Analysis | None:
    """The coding's own report called ``name``, else the analysis of that name."""
    if coding_name is not None:
        from snnconvert.codings import get_coding

        own = get_coding(coding_name).report(name)
        if own is not None:
            return own
    return analyses().get(name)


def report_names() -> tuple[str, ...]:
    """The generic reports, then every registered coding's own reports and every analysis."""
    from snnconvert.codings import codings
    from snnconvert.reports.names import REPORTS

    extra = [r.name for c in codings().values() for r in c.reports] + list(analyses())
    return REPORTS + tuple(dict.fromkeys(n for n in extra if n not in REPORTS))
