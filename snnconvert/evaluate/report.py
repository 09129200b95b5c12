"""The evaluation's results as data: scores, operations and energy, rates, timing, sweep rows, and the
JSON file beside the artifact (written atomically, read back by ``info``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelScore:
    model: str  # "float ANN" | "quantized ANN" | "SNN"
    top1: float
    top5: float | None


@dataclass
class QuantizedRun:
    """The quantized ANN as run in the evaluation's dtype (float32 by default; its sums round in
    the kernels' order): its top-1, how often its class equals the exact reference's, and the
    SNN's agreement with it (the figure earlier releases reported)."""

    dtype: str
    top1: float
    agreement_exact: float | None
    agreement_snn: float | None = None


@dataclass
class AccuracyReport:
    """Scores and agreements. "quantized ANN" is the exact integer reference
    (:mod:`snnconvert.quantize.exact`); ``quantized_run`` is the same network run in the
    evaluation's dtype."""

    images: int
    data: str
    scores: list[ModelScore]
    agreement_snn_quantized: float | None
    agreement_snn_float: float | None
    agreement_quantized_float: float | None  # None: no ANNs (a network loaded from NIR)
    quantized_run: QuantizedRun | None = None


@dataclass
class LayerOps:
    """One synapse layer: dense MACs (ANN) against measured spike-driven operations (SNN)."""

    name: str
    macs: float
    input_rate: float  # r_l
    synaptic_ops: float  # r_l * MACs
    energy_ann_pj: float
    energy_snn_pj: float
    first_layer: bool


@dataclass
class OpsReport:
    layers: list[LayerOps]
    ann_macs: float
    synaptic_ops: float
    state_ops: float  # membrane updates that do not depend on spikes (SWS amplification)
    opf: float  # state_ops + synaptic_ops (SWS eq 10)
    energy_ann_uj: float
    energy_snn_uj: float
    delta: float  # E_ANN / E_SNN (M-LIF paper eq 11)
    e_mac_pj: float
    e_ac_pj: float


@dataclass
class NeuronRates:
    name: str
    neurons: int
    lanes: int
    rate: float  # non-zero outputs per neuron per inference
    density: float  # share of (neuron, step, lane) slots with a spike
    events_per_step: list[float]


@dataclass
class TimingReport:
    images: int
    float_seconds: float
    quantized_seconds: float
    snn_seconds: float
    snn_over_quantized: float
    snn_images_per_second: float
    peak_rss_mb: float
    dtype: str
    threads: int = 0
    """torch's intra-op threads while the three models ran (the ratio depends on it)."""
    device: str = "cpu"
    snn_dtype: str = ""
    """The precision the SNN ran in: its coding's own (``Coding.simulation_dtype``; SWS: float64
    membranes, spike sums exact in float32) or ``dtype``; empty when there was no SNN."""


@dataclass
class SweepRow:
    setting: dict[str, Any]
    top1: float
    agreement: float  # with the quantized ANN
    agreement_float: float  # with the float ANN
    latency: int
    spike_rate: float  # spikes per neuron per inference, over all neuron layers
    opf: float
    delta: float
    seconds: float
    coding_metrics: dict[str, Any] = field(default_factory=dict)  # the coding's figures, per-layer lists left out


@dataclass
class EvaluationReport:
    model: str
    source: str
    coding: str | None
    snn_info: dict[str, Any]
    accuracy: AccuracyReport
    ops: OpsReport | None = None
    rates: list[NeuronRates] = field(default_factory=list)
    coding_metrics: dict[str, Any] = field(default_factory=dict)
    coding_reports: dict[str, Any] = field(default_factory=dict)  # report name -> its coding's data
    timing: TimingReport | None = None
    sweep: list[SweepRow] = field(default_factory=list)
    reports: tuple[str, ...] = ("all",)
    notes: list[str] = field(default_factory=list)  # one line each, e.g. a batch shrunk to fit in memory

    def wants(self, name: str) -> bool:
        return "all" in self.reports or name in self.reports

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


EVALUATION_PREFIX = "evaluation-"


MAX_EVALUATION_JSON_BYTES = 64 << 20
"""Largest evaluation JSON that :func:`evaluations_beside` reads back (others are skipped)."""


def save_evaluation(report: EvaluationReport, artifact_path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report`` as a new JSON file (atomically): ``out`` if given, else
    ``evaluation-<artifact stem>-<time>.json`` beside the artifact. The artifact itself is only
    read, never written: commands do not modify their inputs."""
    from datetime import datetime

    from snnconvert.atomic import write_json_atomically

    artifact_path = Path(artifact_path)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = Path(out) if out is not None else \
        artifact_path.parent / f"{EVALUATION_PREFIX}{artifact_path.stem}-{stamp}.json"
    record = {"artifact": str(artifact_path), "created": datetime.now().astimezone().isoformat(timespec="seconds"),
              **report.as_dict()}
    return write_json_atomically(target, record)


def evaluations_beside(artifact_path: str | Path) -> list[dict[str, Any]]:
    """Summaries of the evaluation JSON files :func:`save_evaluation` wrote beside the artifact
    (oldest first): file name, time, data, images and top-1 per model. Unreadable files are
    skipped: they are reports, not inputs."""
    import json
    import stat as stat_module
    from datetime import datetime

    artifact_path = Path(artifact_path)
    found = []
    try:
        candidates = sorted(artifact_path.parent.glob(f"{EVALUATION_PREFIX}{artifact_path.stem}-*.json"))
    except OSError:
        return []
    for path in candidates[:1000]:
        try:
            info = path.stat()
            if not stat_module.S_ISREG(info.st_mode) or info.st_size > MAX_EVALUATION_JSON_BYTES:
                continue
            data = json.loads(path.read_text())
            accuracy = data["accuracy"]
            created = data.get("created") or datetime.fromtimestamp(info.st_mtime).astimezone().isoformat(
                timespec="seconds")  # files of earlier releases kept the time in the artifact
            found.append({"report": path.name, "created": str(created),
                          "data": str(accuracy.get("data", "")), "images": int(accuracy.get("images", 0)),
                          "top1": {str(s["model"]): float(s["top1"]) for s in accuracy.get("scores", [])}})
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            continue
    return sorted(found, key=lambda r: r["created"])
