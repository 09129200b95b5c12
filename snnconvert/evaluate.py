"""``evaluate``: accuracy of the float ANN, the quantized ANN and the SNN on the same images,
plus latency, operations, energy, spike rates and residuals of the SNN, and sweeps."""

from __future__ import annotations

import copy
import dataclasses
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from snnconvert.codings import codings, get_coding, parse_option
from snnconvert.core import QuantizedModel, conversion_inputs, eval_split
from snnconvert.data import materialize
from snnconvert.device import resolve_device
from snnconvert.distributed import DistContext
from snnconvert.errors import SnnConvertError
from snnconvert.limits import fit_simulation_batch
from snnconvert.progress import track
from snnconvert.reports.analyses import AnalysisContext, analyses
from snnconvert.reports.names import REPORTS
from snnconvert.simulate.chunks import chunk_budget, chunkable
from snnconvert.simulate.gating import gated_state_ops
from snnconvert.simulate.network import DTYPES, SpikingNetwork
from snnconvert.simulate.probes import SynapseLoad, synapse_probe
from snnconvert.stages import convert_with


def report_names() -> tuple[str, ...]:
    """The generic reports, then every registered coding's own reports."""
    from snnconvert.reports.analyses import analyses

    extra = [r.name for c in codings().values() for r in c.reports] + list(analyses())
    return REPORTS + tuple(dict.fromkeys(n for n in extra if n not in REPORTS))


@dataclass
class EvaluateConfig:
    """Options of :func:`evaluate`."""

    data: str | None = None  # default: the evaluation part of the calibration data
    limit: int | None = None
    seed: int = 0
    batch_size: int = 100
    reports: tuple[str, ...] = ("all",)
    dtype: str = "float32"
    e_mac_pj: float = 4.6
    e_ac_pj: float = 0.9
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N; results are the same
    allow_class_mismatch: bool = False  # score data whose classes differ from the model's (with a note)

    def validate(self) -> None:
        names = report_names()
        unknown = [r for r in self.reports if r not in names and r != "all"]
        if unknown:
            raise SnnConvertError(f"unknown report(s) {', '.join(unknown)}: choose from {', '.join(names)}, all")
        if self.dtype not in DTYPES:
            raise SnnConvertError(f"--dtype {self.dtype} is not supported: use float32 or float64")
        from snnconvert.manifest_check import check_options

        check_options(self, {"limit": ("--limit", "count"), "batch_size": ("--batch-size", "batch"),
                             "seed": ("seed", "seed"), "e_mac_pj": ("--e-mac", "energy"),
                             "e_ac_pj": ("--e-ac", "energy")})
        if not isinstance(self.allow_class_mismatch, bool):
            raise SnnConvertError(f"allow_class_mismatch {self.allow_class_mismatch!r} is not possible: "
                                  "give true or false")
        resolve_device(self.device)

    def wants(self, name: str) -> bool:
        """Whether report ``name`` was asked for (``all`` asks for every one)."""
        return "all" in self.reports or name in self.reports


@dataclass
class ModelScore:
    model: str  # "float ANN" | "quantized ANN" | "SNN"
    top1: float
    top5: float | None


@dataclass
class AccuracyReport:
    images: int
    data: str
    scores: list[ModelScore]
    agreement_snn_quantized: float | None
    agreement_snn_float: float | None
    agreement_quantized_float: float


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


# ---------------------------------------------------------------------------- running


@torch.no_grad()
def run_logits(model: nn.Module, images: Tensor, *, batch_size: int, dtype: torch.dtype,
               label: str, show_progress: bool, device: torch.device | None = None) -> tuple[Tensor, float]:
    """Logits of ``model`` on ``images`` (batched, moved to ``device``), on the CPU in float64,
    and the wall time it took."""
    model.eval()
    outputs = []
    start = time.perf_counter()
    batches = range(0, len(images), batch_size)
    for i in track(batches, label, show=show_progress):
        outputs.append(model(images[i:i + batch_size].to(device=device, dtype=dtype)).double().cpu())
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return torch.cat(outputs), time.perf_counter() - start


def in_dtype(model: nn.Module, dtype: torch.dtype, device: torch.device | None = None) -> nn.Module:
    """``model`` itself when it already computes in ``dtype`` on ``device`` (default: where it
    is), else a converted copy (the caller's model is never changed)."""
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()
               and t.dtype in (torch.float32, torch.float64)]
    current = tensors[0].dtype if tensors else dtype
    where = tensors[0].device if tensors else torch.device("cpu")
    if current == dtype and (device is None or where == device):
        return model
    return copy.deepcopy(model).to(device=device or where, dtype=dtype)


def _topk(logits: Tensor, labels: Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == labels.view(-1, 1)).any(dim=1)
    return float(hits.double().mean())


def _score(name: str, logits: Tensor, labels: Tensor) -> ModelScore:
    return ModelScore(name, _topk(logits, labels, 1), _topk(logits, labels, 5) if logits.shape[1] > 5 else None)


def _agreement(a: Tensor, b: Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).double().mean())


def ops_report(snn: SpikingNetwork, loads: dict[str, SynapseLoad], e_mac: float, e_ac: float) -> OpsReport:
    coding = get_coding(snn.coding)
    state = sum(gated_state_ops(snn, coding.state_ops(snn)).values()) if coding.state_ops else 0.0
    layers = []
    first = next(iter(loads), None)
    for name, load in loads.items():
        is_first = name == first
        e_ann = load.macs * e_mac
        e_snn = load.synaptic_ops * (e_mac if is_first else e_ac)
        layers.append(LayerOps(name, load.macs, load.rate, load.synaptic_ops, e_ann, e_snn, is_first))
    ann = sum(lo.macs for lo in layers)
    syn = sum(lo.synaptic_ops for lo in layers)
    e_ann = sum(lo.energy_ann_pj for lo in layers)
    e_snn = sum(lo.energy_snn_pj for lo in layers)
    return OpsReport(layers, ann, syn, state, state + syn, e_ann / 1e6, e_snn / 1e6,
                     e_ann / e_snn if e_snn > 0 else float("inf"), e_mac, e_ac)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


SNN_BATCH_BYTES = 8 * 2**20
"""Bytes of the largest folded activation (images x frames x elements x itemsize) per SNN batch.
Small enough that the allocator reuses freed layer buffers instead of mapping (and page-faulting)
fresh memory for every layer, and that long rate-coded runs stay bounded in memory."""


def largest_activation(model: nn.Module, image: Tensor) -> int:
    """Elements per image of the largest output of any leaf module of ``model`` on ``image``."""
    largest = image[0].numel()

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal largest
        if isinstance(output, Tensor):
            largest = max(largest, output[0].numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(image[:1])
    finally:
        for h in handles:
            h.remove()
    return largest


def snn_batch_size(snn: SpikingNetwork, batch_size: int, activation_elements: int, itemsize: int = 4,
                   *, chunked: bool = False) -> int:
    """Images per SNN batch: at most ``batch_size``, and the largest layer's folded frames within
    ``SNN_BATCH_BYTES``. A network that runs in time chunks (``chunked``) holds one chunk of
    frames at a time, sized by its own byte budget, so only one frame per image counts here."""
    frames = 1 if chunked else max(1, int(snn.info.get("frames", 1)))
    per_image = frames * max(1, activation_elements) * itemsize
    return max(1, min(batch_size, SNN_BATCH_BYTES // per_image))


def runs_in_chunks(snn: SpikingNetwork, example: Tensor, device: torch.device) -> bool:
    """Whether ``snn`` will run images like ``example`` in time chunks on ``device``."""
    with torch.no_grad():
        return bool(chunk_budget(snn.time_chunk_bytes, device)) and chunkable(snn, example)


def simulation_batch(quantized: QuantizedModel, snn: SpikingNetwork, config: EvaluateConfig,
                     device: torch.device, *, show_progress: bool = False) -> tuple[int, str | None]:
    """Images per SNN batch that fit in memory (:func:`snnconvert.limits.fit_simulation_batch`:
    frames x batch x the largest activation, on ``device``), and a one-line note when that is
    fewer than ``--batch-size`` (printed to stderr with ``show_progress``). Not even one image
    fitting is a one-line error."""
    steps = max(1, int(snn.info.get("frames", 1)))
    available = None
    if device.type == "cuda":
        available = int(torch.cuda.mem_get_info(device)[0])
    where = next(iter(quantized.model.parameters()), torch.zeros(())).device
    example = torch.zeros(quantized.info.input_spec.example_shape(1), device=where)
    itemsize = torch.empty((), dtype=DTYPES[config.dtype]).element_size()
    batch = fit_simulation_batch(quantized.model, example, steps, config.batch_size, element_size=itemsize,
                                 what=f"the {snn.coding} network", option="--batch-size", available=available)
    if batch >= config.batch_size:
        return batch, None
    note = (f"--batch-size {config.batch_size} does not fit in memory for the {snn.coding} network "
            f"({steps} time steps): the SNN runs {batch} images per batch")
    if show_progress:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return batch, note


def wants_coding_reports(config: EvaluateConfig, snn: SpikingNetwork) -> bool:
    """Whether ``config`` asks for one of the SNN's coding's own reports (``coding``, ``all`` or by name)."""
    return config.wants("coding") or any(config.wants(extra.name) for extra in get_coding(snn.coding).reports)


def _run_snn(snn: SpikingNetwork, images: Tensor, config: EvaluateConfig, show_progress: bool,
             activation_elements: int, label: str = "SNN",
             device: torch.device | None = None, max_batch: int | None = None,
             ) -> tuple[Tensor, float, dict[str, SynapseLoad]]:
    snn.reset_stats()
    dtype = DTYPES[config.dtype]
    where = device if device is not None else resolve_device(config.device)
    with snn.recording(detail=wants_coding_reports(config, snn)), synapse_probe(snn) as loads:  # (chunk-aware)
        batch = snn_batch_size(snn, min(config.batch_size, max_batch or config.batch_size), activation_elements,
                               torch.empty((), dtype=dtype).element_size(),
                               chunked=runs_in_chunks(snn, images[:1].to(dtype), where))
        logits, seconds = run_logits(snn, images, batch_size=batch, dtype=dtype, label=label,
                                     show_progress=show_progress,
                                     device=where)
    return logits, seconds, dict(loads)


def _combine_ranks(ctx: DistContext, snn: SpikingNetwork, logits: Tensor, loads: dict[str, SynapseLoad],
                   count: int, device: torch.device) -> tuple[Tensor, dict[str, SynapseLoad]]:
    """Every rank's share of one SNN run as one: logits gathered in order, neuron statistics
    (counters) summed, synapse loads (per-sample means) averaged with each rank's image count."""
    if not ctx.enabled:
        return logits, loads
    import torch.distributed as dist

    local = len(logits)
    for neuron in snn.neurons().values():
        for name, value in neuron.additive_stats().items():
            total = value.to(device)
            dist.all_reduce(total)
            neuron.set_stat(name, total)
    for name in sorted(loads):
        load = loads[name]
        weighted = torch.tensor([load.input_events * local], dtype=torch.float64, device=device)
        dist.all_reduce(weighted)
        load.input_events = float(weighted[0]) / max(count, 1)
    return ctx.gather_rows(logits, count, device), loads


def evaluate(
    quantized: QuantizedModel,
    snn: SpikingNetwork | None = None,
    config: EvaluateConfig | None = None,
    *,
    show_progress: bool = False,
) -> EvaluationReport:
    """Evaluate on one set of images: every model sees exactly the same inputs, decoded once.

    Under ``torchrun`` (``WORLD_SIZE = W > 1``) rank r runs the images r, r + W, ...; logits are
    all-gathered in their original order and the spike and synapse counts summed over the ranks,
    so every rank returns the report one process would (timings are each rank's own)."""
    config = config or EvaluateConfig()
    config.validate()
    ctx = DistContext.from_env()
    device = resolve_device(config.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    ctx.init(device)
    try:
        return _evaluate(quantized, snn, config, show_progress, ctx, device)
    finally:
        ctx.close()


def _evaluate(quantized: QuantizedModel, snn: SpikingNetwork | None, config: EvaluateConfig, show_progress: bool,
              ctx: DistContext, device: torch.device) -> EvaluationReport:
    require_snn_reports(config, snn, f"model {quantized.info.name}")
    snn_batch, memory_note = (simulation_batch(quantized, snn, config, device, show_progress=show_progress)
                              if snn is not None else (config.batch_size, None))  # before any work
    split = materialize(eval_split(quantized, config.data, limit=config.limit, seed=config.seed,
                                   allow_class_mismatch=config.allow_class_mismatch), progress=show_progress)
    if len(split) == 0:
        raise SnnConvertError("no evaluation images")
    images = torch.stack([split.dataset[i][0] for i in range(len(split))])
    labels = torch.tensor([int(split.dataset[i][1]) for i in range(len(split))])
    dtype = DTYPES[config.dtype]
    float_model = in_dtype(quantized.float_model, dtype, device)
    quant_model = in_dtype(quantized.model, dtype, device)
    mine = images[list(ctx.shard(len(images)))] if ctx.enabled else images
    float_logits, float_s = run_logits(float_model, mine, batch_size=config.batch_size, dtype=dtype,
                                       label="float ANN", show_progress=show_progress, device=device)
    quant_logits, quant_s = run_logits(quant_model, mine, batch_size=config.batch_size, dtype=dtype,
                                       label="quantized ANN", show_progress=show_progress, device=device)
    float_logits = ctx.gather_rows(float_logits, len(images), device)
    quant_logits = ctx.gather_rows(quant_logits, len(images), device)
    scores = [_score("float ANN", float_logits, labels), _score("quantized ANN", quant_logits, labels)]
    report = EvaluationReport(
        model=quantized.info.name, source=quantized.info.source, coding=snn.coding if snn else None,
        snn_info=dict(snn.info) if snn else {}, reports=tuple(config.reports),
        accuracy=AccuracyReport(len(split), split.description, scores, None, None,
                                _agreement(quant_logits, float_logits)),
        notes=[memory_note] if memory_note else [],
    )
    if snn is None:
        report.timing = TimingReport(len(split), float_s, quant_s, 0.0, 0.0, 0.0, _peak_rss_mb(), config.dtype,
                                     torch.get_num_threads(), str(device))
        return report
    snn = in_dtype(snn, dtype, device)
    activation = largest_activation(float_model, images[:1].to(device=device, dtype=dtype))
    snn_logits, snn_s, loads = _run_snn(snn, mine, config, show_progress, activation, device=device,
                                        max_batch=snn_batch)
    snn_logits, loads = _combine_ranks(ctx, snn, snn_logits, loads, len(images), device)
    scores.append(_score("SNN", snn_logits, labels))
    report.accuracy.agreement_snn_quantized = _agreement(snn_logits, quant_logits)
    report.accuracy.agreement_snn_float = _agreement(snn_logits, float_logits)
    report.ops = ops_report(snn, loads, config.e_mac_pj, config.e_ac_pj)
    report.rates = [NeuronRates(s.name, s.neurons, s.lanes, s.rate, s.density, s.events_per_step)
                    for s in snn.spike_stats()]
    coding = get_coding(snn.coding)
    if coding.metrics is not None:
        report.coding_metrics = coding.metrics(snn)
    for extra in coding.reports:
        if config.wants(extra.name) or config.wants("coding"):  # (what wants_coding_reports recorded for)
            data = extra.compute(snn)
            if data is not None:
                report.coding_reports[extra.name] = data
    _run_analyses(report, config, AnalysisContext(quantized, snn, images, labels, quant_logits, float_logits,
                                                  device, dtype, config.batch_size, show_progress))
    report.timing = TimingReport(len(split), float_s, quant_s, snn_s, snn_s / max(quant_s, 1e-12),
                                 len(split) / max(snn_s, 1e-12), _peak_rss_mb(), config.dtype,
                                 torch.get_num_threads(), str(device))
    if config.sweep:
        report.sweep = run_sweep(quantized, snn, images, labels, quant_logits, float_logits, config, show_progress,
                                 activation, ctx=ctx, device=device)
    return report


def _run_analyses(report: EvaluationReport, config: EvaluateConfig, context: AnalysisContext) -> None:
    """The analyses named in ``config.reports`` (``all`` does not include them)."""
    for name, analysis in analyses().items():
        if name not in config.reports:
            continue
        if not analysis.applies(context.snn):
            raise SnnConvertError(f"report {name} needs {analysis.needs}; this SNN is {context.snn.coding}")
        data = analysis.compute(context)
        if data is not None:
            report.coding_reports[name] = data


def sweep_grid(coding_name: str, sweep: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the swept values (text read by each option's type)."""
    coding = get_coding(coding_name)
    for key in sweep:
        if key not in coding.sweep_keys:
            raise SnnConvertError(
                f"--sweep {key}: coding {coding_name} sweeps only {', '.join(coding.sweep_keys) or 'nothing'}"
            )
    grid: list[dict[str, Any]] = [{}]
    for key, values in sweep.items():
        parsed = [parse_option(coding, key, v) if isinstance(v, str) else v for v in values]
        grid = [{**g, key: v} for g in grid for v in parsed]
    return grid


def run_sweep(quantized: QuantizedModel, snn: SpikingNetwork, images: Tensor, labels: Tensor,
              quant_logits: Tensor, float_logits: Tensor, config: EvaluateConfig,
              show_progress: bool, activation_elements: int, *, ctx: DistContext | None = None,
              device: torch.device | None = None) -> list[SweepRow]:
    """Re-convert with each swept setting (through the pipeline's one conversion path) and
    evaluate on the same, already decoded images, reusing the quantized ANN's logits. Several
    keys form a grid; the calibration data is loaded once when any setting needs it."""
    coding = get_coding(snn.coding)
    base = coding.config(**snn.info.get("config", {}))
    grid = sweep_grid(snn.coding, config.sweep)
    configs = [dataclasses.replace(base, **setting) for setting in grid]
    for cfg in configs:
        cfg.validate()
    inputs = conversion_inputs(quantized, need_calibration=any(coding.needs_calibration(c) for c in configs),
                               show_progress=show_progress)
    rows = []
    ctx = ctx or DistContext()
    device = device if device is not None else resolve_device(config.device)
    mine = images[list(ctx.shard(len(images)))] if ctx.enabled else images
    for setting, cfg in zip(grid, configs, strict=True):
        variant = convert_with(inputs, coding.name, cfg)
        variant = in_dtype(variant, DTYPES[config.dtype], device)
        cap, _ = simulation_batch(quantized, variant, config, device, show_progress=show_progress)
        logits, seconds, loads = _run_snn(variant, mine, config, show_progress, activation_elements,
                                          label=", ".join(f"{k}={v}" for k, v in setting.items()), device=device,
                                          max_batch=cap)
        logits, loads = _combine_ranks(ctx, variant, logits, loads, len(images), device)
        ops = ops_report(variant, loads, config.e_mac_pj, config.e_ac_pj)
        figures = coding.metrics(variant) if coding.metrics is not None else {}
        rows.append(SweepRow(setting, _topk(logits, labels, 1), _agreement(logits, quant_logits),
                             _agreement(logits, float_logits), int(variant.info.get("latency", 0)),
                             overall_spike_rate(variant), ops.opf, ops.delta, seconds,
                             {k: v for k, v in figures.items() if not isinstance(v, (list, dict))}))
    return rows


def overall_spike_rate(snn: SpikingNetwork) -> float:
    """Spikes per neuron per inference over all neuron layers (the encoder excluded)."""
    stats = [s for s in snn.spike_stats() if s.name != "encoder"]
    neurons = sum(s.neurons for s in stats)
    return sum(s.events for s in stats) / max(neurons, 1)


# ---------------------------------------------------------------------------- inputs and saved reports


@dataclass
class EvaluationInput:
    """The artifact :func:`evaluation_input` chose, and a one-line note when the choice needs one."""

    path: Path
    explicit: bool  # the user named this file
    note: str | None = None


def evaluation_input(input_path: str | Path | None = None, root: Path | None = None) -> EvaluationInput:
    """The artifact to evaluate: ``input_path`` when it is a file; otherwise, in the run directory
    ``input_path`` (default: the run under ``root`` with the newest artifact, i.e. the model
    last worked on), that model's newest SNN artifact. A run without one is an error that says
    so; a quantized artifact newer than the chosen SNN is named in the note."""
    from snnconvert.workspace import DEFAULT_ROOT, latest_artifact

    root = root or DEFAULT_ROOT
    if input_path is not None and Path(input_path).is_file():
        return EvaluationInput(Path(input_path), explicit=True)
    if input_path is not None and not Path(input_path).exists():
        raise SnnConvertError(f"--input {input_path} does not exist; give an artifact or a run directory")
    directory = Path(input_path) if input_path is not None else latest_artifact(("snn", "quantized"), None, root).parent
    quantized = _latest_or_none(("quantized",), directory)
    try:
        snn_path = latest_artifact(("snn",), directory)
    except SnnConvertError:
        hint = f" or pass --input {quantized} --report accuracy to score the ANNs only" if quantized else ""
        raise SnnConvertError(f"no SNN artifact in {directory}/ for {directory.name}: run `snnconvert to-snn` "
                              f"first{hint}") from None
    note = None
    if quantized is not None and quantized.stat().st_mtime > snn_path.stat().st_mtime:
        note = (f"evaluating {snn_path.name}, the newest SNN of {directory.name}; the newer {quantized.name} has "
                "not been converted yet (run `snnconvert to-snn` to evaluate it)")
    return EvaluationInput(snn_path, explicit=False, note=note)


def _latest_or_none(stages: tuple[str, ...], directory: Path) -> Path | None:
    from snnconvert.workspace import latest_artifact

    try:
        return latest_artifact(stages, directory)
    except SnnConvertError:
        return None


def require_snn_reports(config: EvaluateConfig, snn: SpikingNetwork | None, source: str) -> None:
    """A report that needs a spiking network, asked for by name, on a quantized model is an error."""
    if snn is not None:
        return
    asked = [r for r in config.reports if r not in ("accuracy", "all")]
    if asked:
        raise SnnConvertError(f"report {', '.join(asked)} needs a spiking network and {source} has only the "
                              "quantized ANN: convert it first (`snnconvert to-snn`) or ask for --report accuracy")


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
