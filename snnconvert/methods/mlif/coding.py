"""One-hot multi-level LIF (M-LIF) coding: conversion of a float ANN (M-LIF paper, §3, §5.1.1).

The network runs ``T`` time steps; every hidden neuron is an
:class:`~snnconvert.methods.mlif.neuron.MLIFNeuron` with ``S`` binary-weighted lanes (eqs 6-8), whose
frames carry the lane value ``2^s`` so the next synapse applies ``W * 2^s`` (a shift).

Conversion follows the paper's initialisation recipe (§5.1.1), without the BPTT fine-tuning:

* batch-norm is fused and the ANN weights are copied (``prepare`` did the fusion; every conv /
  linear becomes a synapse adding its bias at every step);
* the threshold of each neuron layer is the ``percentile``-th percentile (90 by default) of the
  ANN activation distribution at that layer over the calibration data (one value per layer;
  the percentile of the ReLU output equals that of its input whenever it is positive). A layer
  whose percentile is 0 falls back to its maximum (listed in ``info["threshold_fallbacks"]``);
* ``anchor="highest"`` (not in the paper) instead puts the percentile at the top lane,
  ``theta = value / 2^(S-1)``, so the S levels span the activations below it (like the LQ-ANN
  clip alpha of eq 10); with the paper's ``"lowest"`` everything at or below the percentile is
  silent at T = 1, which the paper's BPTT fine-tuning then repairs;
* ``leak`` is beta of eq 6 (1 by default for conversion: integrate-and-fire);
* ``Gain(1/theta) -> neuron -> Gain(theta)`` replaces each activation and the gains fold into
  the weights (``W * theta_{l-1} / theta_l``);
* input: direct encoding (§5): the analog image is fed to the first layer at each of the T
  steps. A (B, T, C, H, W) input is taken as T frames already encoded, frame k at step k (the
  multi-level event frames of :mod:`snnconvert.data.events`, §5.2.2);
* max-pooling stays an ordinary op on the spike frames of the neuron before it (moved ahead of
  that neuron's ``Gain(theta)``, which it commutes with). It takes at each step the largest
  lane value in the window, so the output stays one-hot. At T = 1 this is exact (the firing
  rule is monotone, so it commutes with max); at T > 1 the mean over steps of per-step maxima
  can exceed the max of the per-input means (a bias upward);
* the classifier never fires: its T output frames are averaged (``WeightedSumDecoder``, 1/T).

Bounded activations (ReLU6 ...) keep their percentile threshold; their upper bound is not
enforced beyond the top lane (2^(S-1) theta per step). The network computes in float32.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, fx

from snnconvert.calibrate import calibrate
from snnconvert.calibrate import summary_rows as calibration_rows
from snnconvert.codings.base import Coding, CodingReport, ConversionInputs, ReportTable
from snnconvert.codings.common import (
    calibration_percentiles,
    float_graph_rule,
    insert_neurons,
    replace_synapses,
    rewrite_maxpools,
)
from snnconvert.codings.gains import fold_gains
from snnconvert.codings.registry import register_coding
from snnconvert.errors import SnnConvertError
from snnconvert.graph.ops import Kind, kind_of
from snnconvert.graph.passes import recompile_graph
from snnconvert.graph.support import check_supported
from snnconvert.methods.mlif.config import OPTIONS, MLIFConfig
from snnconvert.methods.mlif.neuron import MLIFNeuron
from snnconvert.options import opt
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import WeightedSumDecoder


class _StaticImages:
    """Calibration batches for the float ANN: event sequences (B, T, C, H, W) are unfolded so
    that each frame counts as one image."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for images, labels in self.loader:
            if images.dim() == 5:
                images = images.reshape(-1, *images.shape[2:])
            yield images, labels


def _thresholds(
    stats: dict[str, dict[float, Tensor]], names: list[str], percentile: float
) -> tuple[dict[str, float], list[str]]:
    thresholds, fallbacks = {}, []
    for name in names:
        if name not in stats:
            raise SnnConvertError(f"no activation statistics for {name}: the calibration data is empty")
        theta = float(stats[name][percentile].max())
        if not theta > 0.0:
            fallbacks.append(name)
            theta = float(stats[name][100.0].max())
            if not theta > 0.0:
                theta = 1.0  # the layer never fires on the calibration data; any threshold will do
        thresholds[name] = theta
    return thresholds, fallbacks


def convert(inputs: ConversionInputs, cfg: MLIFConfig) -> SpikingNetwork:
    """Convert the prepared float graph into an M-LIF network (see module docstring)."""
    cfg.validate()
    if inputs.calibration is None:
        raise SnnConvertError(
            f"M-LIF conversion sets its thresholds from activations: give calibration data ({opt('quantize', 'data')})"
        )
    float_gm = inputs.float_model
    check_supported(float_gm, (float_graph_rule("M-LIF"),), stage="M-LIF conversion")
    acts = {n.name: n.target for n in float_gm.graph.nodes if kind_of(float_gm, n) is Kind.ACTIVATION}
    stats = calibration_percentiles(inputs, (float(cfg.percentile), 100.0), loader=_StaticImages(inputs.calibration))
    thresholds, fallbacks = _thresholds(stats, list(acts), float(cfg.percentile))
    if cfg.anchor == "highest":
        thresholds = {name: theta / 2.0 ** (cfg.S - 1) for name, theta in thresholds.items()}

    T, S = cfg.T, cfg.S
    gm = copy.deepcopy(float_gm)
    replace_synapses(gm, torch.ones(T, dtype=torch.float64))
    plan = {name: (MLIFNeuron(T, S, float(cfg.leak)), torch.tensor(theta, dtype=torch.float64))
            for name, theta in thresholds.items()}
    layers = insert_neurons(gm, plan)
    rewrite_maxpools(gm)  # pools act on the spike frames (gains move behind them)
    recompile_graph(gm)
    encoder, decoder = RepeatEncoder(T), WeightedSumDecoder(T)  # decoder weights 1/T: the mean over T
    calibration = calibrate(gm, encoder, decoder, float_gm, _StaticImages(inputs.calibration), cfg.calibrate,
                            seconds=cfg.calibrate_seconds, images=cfg.calibrate_images)
    fold_gains(gm)
    gm.float()

    snn = SpikingNetwork("mlif")
    snn.encoder = encoder
    snn.body = gm
    snn.decoder = decoder
    snn.info = {
        "coding": "mlif",
        "S": S,
        "T": T,
        "leak": float(cfg.leak),
        "percentile": float(cfg.percentile),
        "anchor": cfg.anchor,
        "frames": T,
        "latency": T,
        "latency_terms": f"T = {T}, S = {S}",
        "neuron_layers": layers,
        "thresholds": {acts[name]: theta for name, theta in thresholds.items()},
        "threshold_fallbacks": [acts[name] for name in fallbacks],
        "input": "direct (analog image at every step; (B, T, ...) inputs are taken frame by frame)",
        "maxpool": "per step on spike frames (exact at T = 1)",
    }
    if cfg.calibrate != "none":
        snn.info["calibration"] = calibration.as_info()
    snn.info.update(conversion_check(snn, float_gm, inputs.calibration))
    return snn


AGREEMENT_WARNING = 0.5
"""Below this agreement with the float ANN on calibration images, conversion warns."""


@torch.no_grad()
def conversion_check(snn: SpikingNetwork, float_gm: fx.GraphModule, calibration: Any) -> dict[str, Any]:
    """Run the new SNN and the float ANN on the first calibration batch: layers that never fire
    (``silent_layers``), the argmax agreement and one-line ``warnings`` when conversion alone is
    near chance (M-LIF at small T without fine-tuning) or layers are dead."""
    batch = next(iter(calibration), None)
    if batch is None or batch[0].dim() != 4:  # event data: frames are not images of the float ANN
        return {}
    images = batch[0][:64]
    snn.reset_stats()
    with snn.recording():
        agree = float((snn(images).argmax(1) == float_gm(images).argmax(1)).double().mean())
    silent = [s.name for s in snn.spike_stats() if s.name != "encoder" and s.events == 0]
    snn.reset_stats()
    warnings = []
    if agree < AGREEMENT_WARNING:
        warnings.append(f"on {len(images)} calibration images this M-LIF SNN (T={snn.info['T']}, S={snn.info['S']}) "
                        f"agrees with the float ANN on only {agree:.0%}: conversion alone is near chance here; "
                        "fine-tune it (`snnconvert finetune`) or raise --T")
    if silent:
        more = f" and {len(silent) - 4} more" if len(silent) > 4 else ""
        warnings.append(f"{len(silent)} of {len(snn.neurons())} neuron layers never fired on calibration images: "
                        f"{', '.join(silent[:4])}{more}")
    return {"calibration_agreement": agree, "silent_layers": silent, "warnings": warnings}


def membrane_updates(snn: SpikingNetwork) -> dict[str, float]:
    """State operations: every M-LIF neuron updates its membrane once per step (T per neuron).
    Uses the neuron counts recorded by the last evaluation."""
    neurons = snn.neurons().items()
    return {name: float(n.neurons) * n.steps_out for name, n in neurons if isinstance(n, MLIFNeuron)}


def lane_metrics(snn: SpikingNetwork) -> dict[str, object]:
    """Share of the recorded spikes carried by each lane (lane 0 = value 1 first), overall and
    per neuron layer."""
    per_layer, total = {}, None
    for name, n in snn.neurons().items():
        if not isinstance(n, MLIFNeuron):
            continue
        counts = n.lane_counts.double()
        total = counts.clone() if total is None else total + counts
        per_layer[name] = [round(float(c), 6) for c in counts / max(float(counts.sum()), 1.0)]
    overall = [] if total is None else [round(float(c), 6) for c in total / max(float(total.sum()), 1.0)]
    return {"lane_share": overall, "lane_share_per_layer": per_layer}


def lane_tables(data: dict[str, Any]) -> list[ReportTable]:
    lanes = len(data["lane_share"])
    columns = ("layer", *(f"lane {2 ** s}" for s in range(lanes)))
    rows = [("all layers", *(f"{100 * v:.1f}%" for v in data["lane_share"]))]
    rows += [(name, *(f"{100 * v:.1f}%" for v in shares)) for name, shares in data["lane_share_per_layer"].items()]
    return [ReportTable("share of spikes per lane (value 2^s)", columns, rows)]


def _lane_report(snn: SpikingNetwork) -> dict[str, Any] | None:
    data = lane_metrics(snn)
    return data if data["lane_share"] else None


def summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("T (time steps)", str(info["T"])), ("S (lanes)", str(info["S"])), ("leak", str(info["leak"])),
            ("threshold", f"p{info['percentile']:g} of activations ({info['anchor']} lane)")]
    rows += calibration_rows(info)
    if info.get("threshold_fallbacks"):
        rows.append(("[yellow]warning[/yellow]", f"{len(info['threshold_fallbacks'])} layer(s) silent at the "
                     f"percentile, threshold from their maximum: {', '.join(info['threshold_fallbacks'])}"))
    return rows


CODING = register_coding(Coding.of(
    OPTIONS,
    convert=convert,
    needs_calibration=lambda _cfg: True,
    summary_rows=summary_rows,
    state_ops=membrane_updates,
    sweep_keys=("T", "S", "percentile", "leak", "anchor"),
    metrics=lane_metrics,
    reports=(CodingReport("lanes", "share of spikes carried by each lane", _lane_report, lane_tables),),
))
