"""``evaluate``: accuracy of the float ANN, the quantized ANN and the SNN on the same images,
plus latency, operations, energy, spike rates and residuals of the SNN, and sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from snnconvert.codings import get_coding
from snnconvert.configs.evaluate import EvaluateConfig
from snnconvert.core import QuantizedModel, eval_split
from snnconvert.data import materialize
from snnconvert.device import resolve_device
from snnconvert.distributed import DistContext
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate.report import (
    AccuracyReport,
    EvaluationReport,
    LayerOps,
    ModelScore,
    NeuronRates,
    OpsReport,
    QuantizedRun,
    SweepRow,
    TimingReport,
    evaluations_beside,
    save_evaluation,
)
from snnconvert.evaluate.run import (
    _agreement,
    _combine_ranks,
    _peak_rss_mb,
    _run_snn,
    _score,
    frame_activation,
    in_dtype,
    ops_report,
    run_logits,
    runs_in_chunks,
    simulation_batch,
    snn_dtype,
    wants_coding_reports,
)
from snnconvert.evaluate.sweep import run_sweep, sweep_grid
from snnconvert.options import opt
from snnconvert.quantize.exact import exact_reference
from snnconvert.reports.analyses import AnalysisContext, analyses
from snnconvert.simulate.memory import largest_activation
from snnconvert.simulate.network import DTYPES, SpikingNetwork

__all__ = [
    "AccuracyReport", "EvaluateConfig", "EvaluationInput", "EvaluationReport", "LayerOps", "ModelScore",
    "NeuronRates", "OpsReport", "SweepRow", "TimingReport", "evaluate", "evaluation_input", "evaluations_beside",
    "in_dtype", "materialize", "ops_report", "require_snn_reports", "run_logits", "run_sweep", "runs_in_chunks",
    "save_evaluation", "simulation_batch", "snn_dtype", "sweep_grid", "wants_coding_reports",
]


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
    ann = quantized.model is not None  # False: a network without the ANN it came from (a NIR graph)
    if not ann:
        _check_without_ann(quantized, snn, config)
    snn_batch, memory_note = (simulation_batch(quantized, snn, config, device, show_progress=show_progress)
                              if snn is not None else (config.batch_size, None))  # before any work
    split = materialize(_evaluation_split(quantized, config), progress=show_progress)
    if len(split) == 0:
        raise SnnConvertError("no evaluation images")
    images = torch.stack([split.dataset[i][0] for i in range(len(split))])
    labels = torch.tensor([int(split.dataset[i][1]) for i in range(len(split))])
    dtype = DTYPES[config.dtype]
    mine = images[list(ctx.shard(len(images)))] if ctx.enabled else images
    float_logits = quant_logits = None
    float_s = quant_s = 0.0
    scores = []
    if ann:
        float_model = in_dtype(quantized.float_model, dtype, device)
        quant_model = in_dtype(quantized.model, dtype, device)
        float_logits, float_s = run_logits(float_model, mine, batch_size=config.batch_size, dtype=dtype,
                                           label="float ANN", show_progress=show_progress, device=device)
        quant_logits, quant_s = run_logits(quant_model, mine, batch_size=config.batch_size, dtype=dtype,
                                           label="quantized ANN", show_progress=show_progress, device=device)
        exact_model = exact_reference(quantized.model).to(device)
        exact_logits, _ = run_logits(exact_model, mine, batch_size=config.batch_size, dtype=torch.float64,
                                     label="quantized ANN, exact", show_progress=show_progress, device=device)
        float_logits = ctx.gather_rows(float_logits, len(images), device)
        run_quant_logits = ctx.gather_rows(quant_logits, len(images), device)
        quant_logits = ctx.gather_rows(exact_logits, len(images), device)  # the reference from here on
        scores = [_score("float ANN", float_logits, labels), _score("quantized ANN", quant_logits, labels)]
    report = EvaluationReport(
        model=quantized.info.name, source=quantized.info.source, coding=snn.coding if snn else None,
        snn_info=dict(snn.info) if snn else {}, reports=tuple(config.reports),
        accuracy=AccuracyReport(len(split), split.description, scores, None, None,
                                _agreement(quant_logits, float_logits) if ann else None),
        notes=[memory_note] if memory_note else [],
    )
    if ann:
        report.accuracy.quantized_run = QuantizedRun(config.dtype, _score("quantized ANN", run_quant_logits,
                                                                          labels).top1,
                                                     _agreement(run_quant_logits, quant_logits))
    if not ann:
        report.notes.append(f"{quantized.info.source} comes without the ANN it was trained as: there are no ANN "
                            "scores and no agreement with an ANN to report")
    if snn is None:
        report.timing = TimingReport(len(split), float_s, quant_s, 0.0, 0.0, 0.0, _peak_rss_mb(), config.dtype,
                                     torch.get_num_threads(), str(device))
        return report
    snn = in_dtype(snn, snn_dtype(snn, config), device)
    activation = (largest_activation(float_model, images[:1].to(device=device, dtype=dtype)) if ann
                  else frame_activation(snn, images[:1].to(device=device, dtype=snn_dtype(snn, config))))
    snn_logits, snn_s, loads = _run_snn(snn, mine, config, show_progress, activation, device=device,
                                        max_batch=snn_batch)
    snn_logits, loads = _combine_ranks(ctx, snn, snn_logits, loads, len(images), device)
    scores.append(_score("SNN", snn_logits, labels))
    if ann:
        report.accuracy.agreement_snn_quantized = _agreement(snn_logits, quant_logits)
        report.accuracy.agreement_snn_float = _agreement(snn_logits, float_logits)
        report.accuracy.quantized_run.agreement_snn = _agreement(snn_logits, run_quant_logits)
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
    report.timing = TimingReport(len(split), float_s, quant_s, snn_s, snn_s / max(quant_s, 1e-12) if ann else 0.0,
                                 len(split) / max(snn_s, 1e-12), _peak_rss_mb(), config.dtype,
                                 torch.get_num_threads(), str(device),
                                 str(snn_dtype(snn, config)).removeprefix("torch."))
    if config.sweep:
        report.sweep = run_sweep(quantized, snn, images, labels, quant_logits, float_logits, config, show_progress,
                                 activation, ctx=ctx, device=device)
    return report


def _check_without_ann(quantized: QuantizedModel, snn: SpikingNetwork | None, config: EvaluateConfig) -> None:
    """What an evaluation of a network without ANNs (a NIR graph) cannot do, refused before any work."""
    source = quantized.info.source
    if snn is None:
        raise SnnConvertError(f"{source} holds neither ANNs nor a spiking network")
    if not config.data:
        raise SnnConvertError(f"{source} names no data: give {opt(EvaluateConfig, 'data')} (e.g. digits)")
    if config.sweep:
        raise SnnConvertError(f"{opt(EvaluateConfig, 'sweep')} re-converts the quantized ANN, and {source} has none")
    asked = [name for name in analyses() if name in config.reports]
    if asked:
        raise SnnConvertError(f"report {', '.join(asked)} compares with the ANN, and {source} has none")


def _evaluation_split(quantized: QuantizedModel, config: EvaluateConfig):
    """The evaluation images: :func:`~snnconvert.core.eval_split` (away from the calibration
    images), or for a network without ANNs, never calibrated, the data's evaluation images,
    checked against the network's input and classes."""
    if quantized.model is not None:
        return eval_split(quantized, config.data, limit=config.limit, seed=config.seed,
                          allow_class_mismatch=config.allow_class_mismatch)
    from snnconvert.core import check_data_matches
    from snnconvert.data import load_split

    check_data_matches(quantized.info.name, quantized.info.input_spec, config.data)
    return load_split(config.data, "eval", quantized.info.input_spec, limit=config.limit, seed=config.seed,
                      classes=quantized.info.class_check(config.allow_class_mismatch))


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
                              f"quantized ANN: convert it first (`snnconvert to-snn`) or ask for "
                              f"{opt(EvaluateConfig, 'reports')} accuracy")


