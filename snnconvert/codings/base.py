"""What every coding declares about itself, and what conversion hands it.

A coding module defines its config dataclass and conversion function, then declares itself
once with :func:`~snnconvert.codings.registry.register_coding`::

    CODING = register_coding(Coding(name="toy", summary="...", config=ToyConfig, convert=convert))

Everything else (the ``to-snn`` flags, recipe keys, sweeps, reports, serialization of the
modules it introduces) is derived from that declaration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx
from torch.utils.data import DataLoader

from snnconvert.data.input_spec import InputSpec
from snnconvert.options import CodingOptions, cli_fields, option
from snnconvert.simulate.network import SpikingNetwork

__all__ = ["Coding", "CodingReport", "ConversionInputs", "ReportTable", "option"]


@dataclass
class ConversionInputs:
    """The models and data a coding may convert from.

    ``float_model`` is the prepared float graph (batch-norm fused, input normalization folded:
    it takes raw pixels in [0, 1]); ``quantized`` the finalized fake-quantized graph of the same
    network; ``calibration`` yields ``(images, labels)`` batches of the calibration split (never
    evaluation images), for codings that set thresholds from activation statistics.
    """

    float_model: fx.GraphModule
    quantized: fx.GraphModule | None
    input_spec: InputSpec
    calibration: DataLoader | None = None
    show_progress: bool = False
    statistics: dict[Any, Any] = field(default_factory=dict)  # cache of calibration statistics
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where calibration passes run
    # ``calibration_sample(limit, seed)``: a seeded stratified sample of ``limit`` images of the same
    # calibration pool (may be larger than ``calibration``); None when only ``calibration`` exists
    calibration_sample: Callable[[int, int], DataLoader] | None = None


@dataclass(frozen=True)
class ReportTable:
    """A table of already formatted cells: what a coding's report shows (rendered at the edge)."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class CodingReport:
    """One extra report of a coding (``evaluate --report NAME``).

    * ``compute(snn)``: JSON-compatible data, after an evaluation recorded spike statistics;
      None when there is nothing to report;
    * ``tables(data)``: what the terminal shows;
    * ``plot(data, directory, title)``: writes PNG files into ``directory`` and returns their
      paths (None: no picture).
    """

    name: str
    help: str
    compute: Callable[[SpikingNetwork], Any]
    tables: Callable[[Any], list[ReportTable]]
    plot: Callable[[Any, Path, str], list[Path]] | None = None


def _never(_config: Any) -> bool:
    return False


def _no_rows(_info: dict[str, Any]) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Coding:
    """One entry of the coding table.

    * ``config``: a dataclass of options (fields made with :func:`option` carry help text) with
      a ``validate()`` method that raises :class:`~snnconvert.errors.SnnConvertError`;
    * ``convert(inputs, config)`` builds the :class:`SpikingNetwork` without changing
      ``config``; its ``info`` dict must hold ``"frames"`` (frames per layer) and ``"latency"``
      (time steps to the first complete output), and may hold anything else;
    * ``needs_calibration(config)``: whether conversion with this config reads calibration data;
    * ``parsers``: command-line text -> value for fields whose type alone does not say how to
      read them (e.g. SWS ``--Ts 1,2,2`` or ``auto``);
    * ``summary_rows(info)``: ``(quantity, value)`` rows describing a converted network (shown
      by ``to-snn`` and the latency report);
    * ``state_ops(snn)``: per-neuron-layer operations that do not depend on spikes (membrane
      updates, e.g. SWS amplification), counted by the OPF report;
    * ``sweep_keys``: the options ``evaluate --sweep KEY=...`` may vary;
    * ``metrics(snn)``: coding-specific figures (e.g. bit budget) after a recorded evaluation;
    * ``reports``: extra reports (tables, JSON, plots) the evaluation offers for this coding;
    * ``simulation_dtype``: the precision its networks always run in, whatever ``evaluate --dtype``
      asks for the ANNs (None: the one asked). SWS says ``"float64"``: its membranes need it to stay
      exact at every latency, and its synapses sum spikes exactly in float32 anyway
      (:mod:`snnconvert.simulate.synapse`).

    Module classes a coding introduces declare themselves storable with
    :func:`snnconvert.registry.serializable`.
    """

    name: str
    summary: str
    config: type
    convert: Callable[[ConversionInputs, Any], SpikingNetwork]
    needs_calibration: Callable[[Any], bool] = _never
    parsers: dict[str, Callable[[str], Any]] = field(default_factory=dict)
    summary_rows: Callable[[dict[str, Any]], list[tuple[str, str]]] = _no_rows
    state_ops: Callable[[SpikingNetwork], dict[str, float]] | None = None
    sweep_keys: tuple[str, ...] = ()
    metrics: Callable[[SpikingNetwork], dict[str, Any]] | None = None
    reports: tuple[CodingReport, ...] = ()
    simulation_dtype: str | None = None

    @classmethod
    def of(cls, options: CodingOptions, **declaration: Any) -> Coding:
        """The coding whose name, summary, config and parsers are ``options`` (declared in the
        method's torch-free ``config`` module) and whose other fields are ``declaration``."""
        return cls(name=options.name, summary=options.summary, config=options.config, parsers=dict(options.parsers),
                   **declaration)

    def option_set(self) -> CodingOptions:
        """Name, summary, config and parsers as the torch-free :class:`CodingOptions`."""
        return CodingOptions(self.name, self.summary, self.config, dict(self.parsers))

    def options(self) -> list[dataclasses.Field]:
        """The config fields the command line offers (:func:`snnconvert.options.cli_fields`)."""
        return cli_fields(self.config)

    def report(self, name: str) -> CodingReport | None:
        return next((r for r in self.reports if r.name == name), None)
