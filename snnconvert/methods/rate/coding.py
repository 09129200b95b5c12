"""Rate coding with integrate-and-fire neurons: the classic ANN -> SNN conversion baseline.

Conversion of the prepared float graph (data-based normalisation, Diehl et al. 2015; Rueckauer
et al. 2017; neuron equations: M-LIF paper eqs 1-2 with leak 1, see
:mod:`snnconvert.methods.rate.neuron`):

* thresholds: for every ReLU-type activation l, ``theta_l`` is the ``percentile``-th percentile
  of its output on the calibration data (``"max"`` = 100th), per layer or per channel. Each
  activation becomes ``Gain(1/theta_l) -> IFNeuron -> Gain(theta_l)``, and
  :func:`~snnconvert.codings.gains.fold_gains` folds the gains into the weights, giving the
  normalised weights ``W_l * theta_{l-1} / theta_l`` and biases ``b_l / theta_l``;
* input: the encoder repeats the raw image for T steps (constant analog current into the first
  synapse); every synapse adds its bias at every step (``frame_bias_gain = 1``);
* neurons: soft reset, threshold 1 in normalised units, initial membrane ``theta/2`` with
  ``half_init`` (spike count ``floor(T z + 1/2)`` for a constant input z: round-to-nearest
  instead of truncation, removing the expected -theta/(2T) bias of every layer);
* bounded ReLU ``clamp(x, 0, u)``: an IF neuron emits at most one spike per step, so its
  decoded output is at most theta; the threshold is ``min(percentile, u)`` (the percentile is
  measured on the clipped output, so it never exceeds u anyway) and the clip at u is realised
  by saturation. A plain ReLU is clipped at its percentile threshold the same way;
* max-pooling: :class:`~snnconvert.methods.rate.neuron.RateMaxPool`, the max over running
  spike counts; its spike count is exactly the max of its inputs' counts (exact with respect to
  the decoded rates at every T; the only approximation left is in the IF layers). Positive gains
  in front of it are moved behind it so they fold into the next synapse;
* decoder: the mean over the T frames of the classifier output (it never fires).

Latency is T steps (all layers run step-synchronously).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import fx

from snnconvert.calibrate import calibrate
from snnconvert.calibrate import summary_rows as calibration_rows
from snnconvert.codings.base import Coding, CodingReport, ConversionInputs, ReportTable
from snnconvert.codings.common import (
    activation_percentiles,
    calibration_percentiles,
    float_graph_rule,
    insert_neurons,
    replace_synapses,
    rewrite_maxpools,
)
from snnconvert.codings.gains import fold_gains
from snnconvert.codings.registry import register_coding
from snnconvert.errors import SnnConvertError
from snnconvert.graph.ops import Kind, activation_of, kind_of
from snnconvert.graph.passes import recompile_graph
from snnconvert.graph.support import check_supported
from snnconvert.methods.rate.config import OPTIONS, RateConfig
from snnconvert.methods.rate.neuron import IFNeuron, RateMaxPool
from snnconvert.options import opt
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import DTYPES as _DTYPES
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import WeightedSumDecoder


def thresholds(float_gm: fx.GraphModule, loader, cfg: RateConfig, *,
               show_progress: bool = False) -> dict[str, torch.Tensor]:
    """Firing threshold (real units) of every activation node from one pass over ``loader``."""
    p = cfg.percentile_value()
    stats = activation_percentiles(float_gm, loader, (p,), per_channel=cfg.per_channel,
                                   show_progress=show_progress)
    return thresholds_from(float_gm, stats, cfg)


def thresholds_from(float_gm: fx.GraphModule, stats: dict[str, dict[float, torch.Tensor]],
                    cfg: RateConfig) -> dict[str, torch.Tensor]:
    """Thresholds from :func:`~snnconvert.codings.common.activation_percentiles` results (which
    may hold several percentiles): the ``cfg.percentile``-th percentile of each activation,
    capped at a bounded ReLU's upper value. Channels (or layers) that never fired on the
    calibration data get the layer's largest threshold (or 1)."""
    p = cfg.percentile_value()
    result = {}
    for node in float_gm.graph.nodes:
        if kind_of(float_gm, node) is not Kind.ACTIVATION:
            continue
        if node.name not in stats or p not in stats[node.name]:
            raise SnnConvertError(
                f"no activation statistics at percentile {p:g} for {node.name} (empty calibration data?)"
            )
        theta = stats[node.name][p].double().reshape(-1).clone()
        if not cfg.per_channel and theta.numel() > 1:
            raise SnnConvertError("per-layer thresholds need per-tensor activation statistics")
        upper = activation_of(float_gm, node).upper
        if upper is not None:
            theta.clamp_(max=upper)
        fallback = float(theta.max()) if float(theta.max()) > 0 else 1.0
        theta[~(theta > 0)] = fallback
        result[node.name] = theta
    return result


def convert(inputs: ConversionInputs, cfg: RateConfig) -> SpikingNetwork:
    """Coding-table entry point: float graph + calibration data -> rate-coded IF network."""
    cfg.validate()
    if inputs.calibration is None:
        raise SnnConvertError(f"rate coding needs calibration data (the quantize step's {opt('quantize', 'data')}) "
                              "for its thresholds")
    float_gm = inputs.float_model
    check_supported(float_gm, (float_graph_rule("rate coding"),), stage="rate conversion")
    # one calibration pass per (percentile, per_channel), cached in inputs: sweeps over T reuse it
    stats = calibration_percentiles(inputs, (cfg.percentile_value(),), per_channel=cfg.per_channel)
    return build(float_gm, thresholds_from(float_gm, stats, cfg), cfg, inputs.calibration)


def build(float_gm: fx.GraphModule, theta: dict[str, torch.Tensor], cfg: RateConfig,
          calibration: Any = None) -> SpikingNetwork:
    """Assemble the SNN from thresholds (by activation node name, real units; calibrate once and
    build per T). Gains are folded in float64, then the network is cast to ``cfg.dtype``. With
    ``calibration`` images and ``cfg.calibrate`` other than none, the layers are calibrated
    against ``float_gm`` before the gains fold (:mod:`snnconvert.calibrate`).

    ``snn.info["thresholds"]`` maps each IF layer to its threshold (the largest one when per
    channel); ``"neuron_layers"`` lists the IF and max-pool layers in graph order."""
    cfg.validate()
    T = cfg.T
    targets = {n.name: str(n.target) for n in float_gm.graph.nodes}
    gm = copy.deepcopy(float_gm)
    replace_synapses(gm, torch.ones(T, dtype=torch.float64))  # float64 synapses: folding is exact
    gm.double()
    init = 0.5 if cfg.half_init else 0.0
    plan = {name: (IFNeuron(T, init, reset=cfg.reset), value) for name, value in theta.items()}
    layers = insert_neurons(gm, plan)
    for pool_name, source in rewrite_maxpools(gm, lambda params, _source: RateMaxPool(T, **params)):
        position = layers.index(source) + 1 if source in layers else len(layers)
        layers.insert(position, pool_name)
    recompile_graph(gm)
    encoder, decoder = RepeatEncoder(T), WeightedSumDecoder(T)  # decoder weights 1/T: mean over T
    calibration_result = calibrate(gm, encoder, decoder, float_gm, calibration,
                                   cfg.calibrate if calibration is not None else "none",
                                   seconds=cfg.calibrate_seconds, images=cfg.calibrate_images)
    fold_gains(gm)
    gm = gm.to(_DTYPES[cfg.dtype])

    snn = SpikingNetwork("rate")
    snn.encoder = encoder
    snn.body = gm
    snn.decoder = decoder.to(_DTYPES[cfg.dtype])
    snn.info = {
        "coding": "rate",
        "T": T,
        "frames": T,
        "latency": T,
        "latency_terms": f"T = {T}",
        "percentile": "max" if cfg.percentile_value() == 100.0 else cfg.percentile_value(),
        "per_channel": cfg.per_channel,
        "half_init": cfg.half_init,
        "reset": cfg.reset,
        "dtype": cfg.dtype,
        "neuron_layers": layers,
        "thresholds": {targets[name]: float(value.max()) for name, value in theta.items()},
    }
    if calibration is not None and cfg.calibrate != "none":
        snn.info["calibration"] = calibration_result.as_info()
    return snn


def state_ops(snn: SpikingNetwork) -> dict[str, float]:
    """Membrane updates per inference that do not depend on spikes: every IF neuron integrates
    on each of its T steps, every max-pool unit updates its running maximum on each step (T per
    output unit). Uses the neuron counts recorded by the last evaluation."""
    return {name: float(n.neurons) * n.steps_out for name, n in snn.neurons().items()}


def metrics(snn: SpikingNetwork) -> dict[str, Any]:
    """Share of IF neurons clipped by their threshold in the last recorded evaluation: those
    whose membrane still held at least one threshold of charge after the last step (their input
    exceeded what T spikes can carry). Overall and per layer; None before a recorded run."""
    per_layer, clipped, total = {}, 0.0, 0.0
    for name, n in snn.neurons().items():
        if not isinstance(n, IFNeuron) or float(n.samples) == 0:
            continue
        count = float(n.neurons) * float(n.samples)
        per_layer[name] = round(float(n.saturated_count) / max(count, 1.0), 6)
        clipped += float(n.saturated_count)
        total += count
    overall = round(clipped / total, 6) if total else None
    return {"clipped_share": overall, "clipped_share_per_layer": per_layer}


def clipping_tables(data: dict[str, Any]) -> list[ReportTable]:
    rows = [("all IF layers", f"{100 * data['clipped_share']:.2f}%")]
    rows += [(name, f"{100 * share:.2f}%") for name, share in data["clipped_share_per_layer"].items()]
    return [ReportTable("IF neurons clipped by their threshold (input above what T spikes carry)",
                        ("layer", "clipped"), rows)]


def _clipping_report(snn: SpikingNetwork) -> dict[str, Any] | None:
    data = metrics(snn)
    return data if data["clipped_share"] is not None else None


def summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    pct = info["percentile"]
    where = "per channel" if info["per_channel"] else "per layer"
    return [("T (time steps)", str(info["T"])),
            ("threshold", f"as imported ({where})" if pct is None  # a network loaded from NIR
             else f"{'max' if pct == 'max' else f'p{pct:g}'} of activations, {where}"),
            ("initial membrane", "theta/2" if info["half_init"] else "0"),
            ("reset", "to 0 (hard)" if info.get("reset") == "zero" else "by subtraction (soft)"),
            ("precision", info["dtype"]),
            *calibration_rows(info)]


Config = RateConfig  # the name earlier releases used

CODING = register_coding(Coding.of(
    OPTIONS,
    convert=convert,
    needs_calibration=lambda _cfg: True,
    summary_rows=summary_rows,
    state_ops=state_ops,
    sweep_keys=("T", "percentile"),
    metrics=metrics,
    reports=(CodingReport("clipping", "share of IF neurons clipped by their threshold", _clipping_report,
                          clipping_tables),),
))

__all__ = ["CODING", "Config", "RateConfig", "build", "convert", "metrics", "state_ops", "thresholds",
           "thresholds_from"]
