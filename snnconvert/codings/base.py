"""What every coding provides, and what conversion hands it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import fx
from torch.utils.data import DataLoader

from snnconvert.data.input_spec import InputSpec
from snnconvert.simulate.network import SpikingNetwork


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


@dataclass(frozen=True)
class Coding:
    """One entry of the coding table.

    * ``config``: a dataclass of options with a ``validate()`` method (unknown values raise
      :class:`~snnconvert.errors.SnnConvertError`);
    * ``convert(inputs, config)`` builds the :class:`SpikingNetwork`; its ``info`` dict must hold
      ``"frames"`` (frames per layer) and ``"latency"`` (time steps to the first complete output)
      and may hold anything else the reports should show;
    * ``state_ops(snn)``: per-neuron-layer operations that do not depend on spikes (membrane
      updates, e.g. SWS amplification), counted by the OPF report; None when not applicable;
    * ``sweep_keys``: the options ``evaluate --sweep KEY=...`` may vary;
    * ``metrics(snn)``: coding-specific figures for the reports (e.g. bit budget), computed after
      an evaluation has recorded spike statistics; None when there are none.
    """

    name: str
    summary: str
    config: type
    convert: Callable[[ConversionInputs, Any], SpikingNetwork]
    needs_quantized: bool = False
    needs_calibration: bool = False
    state_ops: Callable[[SpikingNetwork], dict[str, float]] | None = None
    sweep_keys: tuple[str, ...] = ()
    metrics: Callable[[SpikingNetwork], dict[str, Any]] | None = None
