"""Rich rendering of the library's results (the CLI's only formatting code)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from snnconvert.artifact import Artifact
from snnconvert.codings import Coding, ReportTable, get_coding
from snnconvert.evaluate import EvaluationReport, TimingReport
from snnconvert.ingest import ModelEntry
from snnconvert.manifest_check import safe_text
from snnconvert.pipeline import QuantizedModel, StageEvent
from snnconvert.simulate.network import SpikingNetwork


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def num(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def sparkline(values: list[float], width: int = 24) -> str:
    """Unicode bars of ``values`` (at most ``width`` of them, averaged in groups)."""
    if not values:
        return ""
    group = max(1, -(-len(values) // width))
    points = [sum(values[i:i + group]) / len(values[i:i + group]) for i in range(0, len(values), group)]
    top = max(points) or 1.0
    bars = " ▁▂▃▄▅▆▇█"
    return "".join(bars[min(8, round(8 * p / top))] for p in points)


def quantize_tables(console: Console, q: QuantizedModel, path: Path | None, *, verb: str = "wrote") -> None:
    stats = {s.name: s for s in q.clip_stats}
    clip = q.config.clip_method + (f" {q.config.percentile:g}" if q.config.clip_method == "percentile" else "")
    table = Table(title=f"{safe_text(q.info.name)}: {q.config.bits}-bit activations, {q.config.w_bits}-bit weights "
                        f"({clip})")
    for col in ("layer", "bits (w/a)", "C_w (min..max)", "C_i", "C_o", "clip range", "clipped"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in q.layers:
        out = stats.get(r.output.name) if r.output else None
        c_i = ", ".join(f"{i.scale:.4g}" for i in r.inputs) or "float"
        table.add_row(
            safe_text(r.name), f"{r.weight_bits}/{r.act_bits or '-'}",
            f"{r.weight_scale_min:.2e}..{r.weight_scale_max:.2e}",
            c_i, f"{r.output.scale:.4g}" if r.output else "logits",
            f"0..{out.clip_high:.3g}" if out else "-", pct(out.clipped_share) if out else "-",
        )
    console.print(table)
    if q.accuracy:
        acc = Table(title=f"accuracy on {safe_text(q.accuracy.data)} (not used for calibration)")
        acc.add_column("float ANN top-1", justify="right")
        acc.add_column(f"{q.config.bits}-bit ANN top-1", justify="right")
        acc.add_column("difference", justify="right")
        acc.add_row(pct(q.accuracy.float_top1), pct(q.accuracy.quantized_top1),
                    f"{100 * (q.accuracy.quantized_top1 - q.accuracy.float_top1):+.2f} pts")
        console.print(acc)
    if q.qat_history:
        h = Table(title="quantization-aware training")
        for col in ("epoch", "loss", "BN frozen", "quantizers frozen"):
            h.add_column(col, justify="right")
        for row in q.qat_history:
            h.add_row(safe_text(row["epoch"]), f"{row['loss']:.4f}", "yes" if row["bn_frozen"] else "no",
                      "yes" if row["quant_frozen"] else "no")
        console.print(h)
    for note in q.info.notes:
        console.print(f"[dim]note:[/dim] {safe_text(note)}")
    console.print(f"calibrated on {safe_text(q.calibration.description)}")
    if path:
        console.print(f"[green]{verb}[/green] {safe_text(path)}")


def print_table(console: Console, table: ReportTable) -> None:
    """A coding's report table (cells already formatted; the first column left-aligned)."""
    t = Table(title=safe_text(table.title))
    for i, col in enumerate(table.columns):
        t.add_column(safe_text(col), justify="left" if i == 0 else "right")
    for row in table.rows:
        t.add_row(*(safe_text(cell) for cell in row))
    console.print(t)


def _generic_rows(snn_coding: str, info: dict[str, Any], neuron_layers: int | None) -> list[tuple[str, str]]:
    terms = info.get("latency_terms")
    rows = [("coding", snn_coding),
            ("latency (time steps)", f"{info.get('latency')}" + (f" ({terms})" if terms else ""))]
    if info.get("frames") != info.get("latency"):
        rows.append(("frames per layer", str(info.get("frames"))))
    if neuron_layers is not None:
        rows.append(("neuron layers", str(neuron_layers)))
    return rows


def _property_table(console: Console, title: str, rows: list[tuple[str, str]]) -> None:
    t = Table(title=title)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for key, value in rows:  # keys are the code's own words (may hold markup); values come from data
        t.add_row(key, safe_text(value))
    console.print(t)


def snn_summary(console: Console, snn: SpikingNetwork, path: Path | None, *, verb: str = "wrote") -> None:
    """What ``to-snn`` built: the generic facts, then the coding's own summary rows, then its
    conversion warnings (one line each)."""
    coding = get_coding(snn.coding)
    rows = _generic_rows(snn.coding, snn.info, len(snn.neurons())) + coding.summary_rows(snn.info)
    _property_table(console, f"SNN ({safe_text(snn.coding)})", rows)
    for warning in snn.info.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {safe_text(warning)}", highlight=False, soft_wrap=True)
    if path:
        console.print(f"[green]{verb}[/green] {safe_text(path)}")


def stage_line(console: Console, event: StageEvent) -> None:
    console.print(f"{event.index}/{event.total} {safe_text(event.description)}")


def stage_result(console: Console, event: StageEvent) -> None:
    """What a finished pipeline stage shows (evaluation reports are printed by the caller)."""
    verb = "artifact (published when the run completes):"
    if event.stage == "quantize":
        quantize_tables(console, event.result, event.path, verb=verb)
    elif event.stage == "convert":
        snn_summary(console, event.result, event.path, verb=verb)
    elif event.stage == "finetune":
        finetune_summary(console, event.result, event.path)


def finetune_summary(console: Console, result: Any, path: Path | None) -> None:
    """Epochs run, final train / validation top-1, speed and the files of a fine-tuning run."""
    history = result.history
    last = history[-1] if history else {}
    seconds = sum(r["seconds"] for r in history)
    images = sum(r["images"] for r in history)
    rows = [("epochs", f"{len(history)}" + (f" ({result.stopped})" if result.stopped else "")),
            ("final train top-1", pct(last.get("train_top1"))),
            ("final validation top-1", pct(last.get("val_top1"))),
            ("training images/s", f"{images / seconds:.1f}" if seconds > 0 else "-")]
    rows += [(name, str(value)) for name, value in (("artifact", path), ("log", result.log_path),
                                                   ("curves", result.plot_path),
                                                   ("checkpoint", result.checkpoint_path)) if value]
    _property_table(console, f"fine-tuned {safe_text(result.snn.coding)} SNN", rows)


# ---------------------------------------------------------------------------- evaluation reports


def _accuracy(console: Console, report: EvaluationReport) -> None:
    acc = report.accuracy
    t = Table(title=f"accuracy: {safe_text(report.model)} on {safe_text(acc.data)}")
    for col in ("model", "top-1", "top-5", "agreement with quantized ANN"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for s in acc.scores:
        agree = {"SNN": acc.agreement_snn_quantized, "float ANN": acc.agreement_quantized_float}.get(s.model)
        name = "quantized ANN (exact)" if s.model == "quantized ANN" and acc.quantized_run else s.model
        t.add_row(safe_text(name), pct(s.top1), pct(s.top5), pct(agree) if s.model != "quantized ANN" else "-")
    console.print(t)
    run = acc.quantized_run
    if run is not None:
        snn = f", SNN agreement with it {pct(run.agreement_snn)}" if run.agreement_snn is not None else ""
        console.print(f"quantized ANN (exact): integer sums, the reference of agreement; run in "
                      f"{safe_text(run.dtype)}: top-1 {pct(run.top1)}, same class as the exact one on "
                      f"{pct(run.agreement_exact)}{snn}",
                      highlight=False, soft_wrap=True)
    if acc.agreement_quantized_float is None:  # a network loaded from NIR: no ANNs
        console.print(f"agreement with the quantized ANN: not available ({safe_text(report.source)} comes without "
                      "ANNs)", highlight=False, soft_wrap=True)


def _latency(console: Console, report: EvaluationReport) -> None:
    coding = get_coding(report.coding)
    rows = _generic_rows(report.coding, report.snn_info, None) + coding.summary_rows(report.snn_info)
    _property_table(console, "latency", rows)


def _operations(console: Console, report: EvaluationReport) -> None:
    ops = report.ops
    if ops is None:
        return
    t = Table(title=f"operations and energy per inference (MAC {ops.e_mac_pj} pJ, AC {ops.e_ac_pj} pJ)")
    for col in ("layer", "ANN MACs", "input rate r_l", "SNN ops", "E_ANN (nJ)", "E_SNN (nJ)"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    for lo in ops.layers:
        t.add_row(safe_text(lo.name) + (" (MAC)" if lo.first_layer else ""), num(lo.macs), f"{lo.input_rate:.3f}",
                  num(lo.synaptic_ops), f"{lo.energy_ann_pj / 1e3:.1f}", f"{lo.energy_snn_pj / 1e3:.1f}")
    t.add_row("[bold]total", num(ops.ann_macs), "", num(ops.synaptic_ops),
              f"{ops.energy_ann_uj * 1e3:.1f}", f"{ops.energy_snn_uj * 1e3:.1f}")
    console.print(t)
    _property_table(console, "summary", [
        ("OPF = state ops + synaptic ops (SWS eq 10)", num(ops.opf)),
        ("  membrane state ops (amplification / updates)", num(ops.state_ops)),
        ("  spike-driven synaptic ops", num(ops.synaptic_ops)),
        ("ANN MACs", num(ops.ann_macs)),
        ("energy ANN / SNN (uJ)", f"{ops.energy_ann_uj:.3f} / {ops.energy_snn_uj:.3f}"),
        ("delta = E_ANN / E_SNN (M-LIF eq 11)", f"{ops.delta:.2f}x"),
    ])


def _rates(console: Console, report: EvaluationReport) -> None:
    if not report.rates:
        return
    t = Table(title="spike rates per neuron layer")
    for col in ("layer", "neurons", "spikes/neuron", "slot density", "spikes over steps", "status"):
        t.add_column(col, justify="left" if col in ("layer", "spikes over steps", "status") else "right")
    for r in report.rates:
        status = "[red]silent (dead)[/red]" if r.rate == 0 and r.name != "encoder" else ""
        t.add_row(safe_text(r.name), num(r.neurons), f"{r.rate:.3f}", pct(r.density), sparkline(r.events_per_step),
                  status)
    console.print(t)
    dead = [r.name for r in report.rates if r.rate == 0 and r.name != "encoder"]
    if dead:
        console.print(f"[yellow]warning:[/yellow] {len(dead)} neuron layer(s) never fired on these images: "
                      f"{safe_text(', '.join(dead[:6]))}{' ...' if len(dead) > 6 else ''}", highlight=False,
                      soft_wrap=True)


def _coding_reports(console: Console, report: EvaluationReport) -> None:
    from snnconvert.reports.analyses import find_report

    for name, data in report.coding_reports.items():
        extra = find_report(report.coding, name)
        if extra is not None:
            for table in extra.tables(data):
                print_table(console, table)


def _precisions(tm: TimingReport) -> str:
    """``float32``, or ``ANNs float32, SNN float64`` where the coding simulates in its own precision."""
    return tm.dtype if not tm.snn_dtype or tm.snn_dtype == tm.dtype else f"ANNs {tm.dtype}, SNN {tm.snn_dtype}"


def _timing(console: Console, report: EvaluationReport) -> None:
    tm = report.timing
    if tm is None or not tm.snn_seconds:
        return
    versus = (f"quantized ANN {tm.quantized_seconds:.1f}s, " if tm.quantized_seconds else "")  # none: no ANN
    ratio = f"{tm.snn_over_quantized:.2f}x on the same {tm.images} images, " if tm.quantized_seconds else \
        f"{tm.images} images, "
    console.print(
        f"time: {versus}SNN {tm.snn_seconds:.1f}s "
        f"({ratio}{tm.snn_images_per_second:.1f} img/s, "
        f"{_precisions(tm)}, {tm.device}, {tm.threads} thread{'s' if tm.threads != 1 else ''}); "
        f"peak memory {tm.peak_rss_mb:.0f} MB"
    )


def _sweep(console: Console, report: EvaluationReport) -> None:
    if not report.sweep:
        return
    t = Table(title="sweep")
    for col in ("setting", "top-1", "agreement (quantized)", "latency", "spikes/neuron", "OPF", "delta", "time (s)"):
        t.add_column(col, justify="left" if col == "setting" else "right")
    for row in report.sweep:
        t.add_row(safe_text(", ".join(f"{k}={v}" for k, v in row.setting.items())), pct(row.top1), pct(row.agreement),
                  str(row.latency), f"{row.spike_rate:.3f}", num(row.opf), f"{row.delta:.2f}x", f"{row.seconds:.1f}")
    console.print(t)


SNN_RENDERERS: tuple[tuple[tuple[str, ...], Callable[[Console, EvaluationReport], None]], ...] = (
    (("latency",), _latency),
    (("opf", "energy"), _operations),
    (("rates",), _rates),
    ((), _coding_reports),  # only the reports that were asked for were computed
    ((), _timing),
    ((), _sweep),
)
"""Renderers of the SNN's reports in order, with the report names that ask for each (none:
shown whenever there is data)."""


def evaluation_tables(console: Console, report: EvaluationReport) -> None:
    """Every requested report, one renderer each."""
    if report.wants("accuracy"):
        _accuracy(console, report)
    if report.coding is None:
        return
    for names, render in SNN_RENDERERS:
        if not names or any(report.wants(n) for n in names):
            render(console, report)


def codings_table(console: Console, table: dict[str, Coding]) -> None:
    t = Table(title="codings (snnconvert to-snn --coding NAME; options as flags or --set KEY=VALUE)")
    for col in ("name", "what it is", "options", "extra reports"):
        t.add_column(col)
    for name, c in table.items():
        t.add_row(name, c.summary, ", ".join(f.name for f in c.options()), ", ".join(r.name for r in c.reports))
    console.print(t)


def models_table(console: Console, entries: list[ModelEntry], checks: dict[str, Any] | None = None) -> None:
    """One row per model; with ``checks`` (``models --check``) a column per coding tried and
    why a model does not convert."""
    t = Table(title="models snnconvert can ingest by name (or pass --weights FILE)")
    codings = list(next(iter(checks.values())).codings) if checks else []
    for col in ("name", "family", "input", "weights available offline", *(f"converts: {c}" for c in codings)):
        t.add_column(col)
    if checks:
        t.add_column("why not", overflow="fold")
    for e in entries:
        size = "x".join(str(s) for s in e.input_spec.size)
        row = [e.name, e.family, f"{e.input_spec.channels}x{size}", e.weights_offline]
        check = checks.get(e.name) if checks else None
        if checks and check is None:
            row += ["?" for _ in codings] + ["not checked yet (`snnconvert models --check`)"]
        elif check is not None:
            row += ["[green]yes[/green]" if check.converts(c) else "[red]no[/red]" for c in codings]
            row.append(safe_text(check.reason) if check.reason else safe_text(
                "; ".join(f"{c}: {check.codings.get(c, '?')}" for c in codings if not check.converts(c))))
        t.add_row(*row)
    console.print(t)
    if checks:
        shown = [checks[e.name] for e in entries if e.name in checks]
        counts = ", ".join(f"{sum(c.converts(k) for c in shown)} with {k}" for k in codings)
        console.print(f"{len(shown)} of {len(entries)} models checked (random weights, tiny input): {counts}")


def info_tables(console: Console, path: Path, artifact: Artifact) -> None:
    """The manifest of ``artifact`` as a table; every stored string is shown as text (markup
    escaped, control characters and newlines as escapes), never interpreted."""
    m = artifact.manifest

    def field(mapping: Any, key: str, default: Any = None) -> Any:
        return mapping.get(key, default) if isinstance(mapping, dict) else default

    def items(value: Any) -> list[Any]:
        return value if isinstance(value, list) else []

    t = Table(title=f"{safe_text(path.name)}: {safe_text(artifact.kind)} artifact")
    t.add_column("field")
    t.add_column("value")
    model = field(m, "model", {})
    t.add_row("model", safe_text(f"{field(model, 'name')} ({field(model, 'source')})"))
    t.add_row("created", safe_text(field(m, "created")))
    versions = field(m, "versions", {})
    t.add_row("versions", safe_text(", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict)
                                    else versions))
    q = field(m, "quantize", {})
    t.add_row("quantization", safe_text(f"{field(q, 'bits')}-bit act / {field(q, 'weight_bits') or field(q, 'bits')}"
                                        f"-bit weights, {field(q, 'method')}, QAT epochs {field(q, 'qat_epochs')}"))
    for note in items(field(model, "notes")):
        t.add_row("note", safe_text(note))
    t.add_row("calibration data", safe_text(field(field(m, "calibration", {}), "description")))
    acc = field(m, "accuracy")
    if isinstance(acc, dict) and acc:
        t.add_row("top-1 after quantize",
                  safe_text(f"float {_pct_of(acc.get('float_top1'))}, quantized {_pct_of(acc.get('quantized_top1'))} "
                            f"on {acc.get('data', '?')} ({acc.get('images')} images, none used for calibration)"))
    snn = field(m, "snn")
    info = field(snn, "info", {})
    if isinstance(snn, dict) and snn:
        t.add_row("coding", safe_text(f"{snn.get('coding')}: {field(info, 'latency_terms', '')}, "
                                      f"latency {field(info, 'latency')}"))
    for warning in items(field(info, "warnings")):
        t.add_row("warning", safe_text(warning))
    for ev in items(field(m, "evaluations")):
        top1 = field(ev, "top1", {})
        scores = ", ".join(f"{k} {_pct_of(v)}" for k, v in top1.items()) if isinstance(top1, dict) else ""
        t.add_row("evaluation", safe_text(f"{field(ev, 'created')}: {scores} on {field(ev, 'data')} -> "
                                          f"{field(ev, 'report')}"))
    t.add_row("models", safe_text(", ".join(f"{k} ({sum(p.numel() for p in v.state_dict().values()):,} values)"
                                            for k, v in artifact.models.items())))
    console.print(t)


def _pct_of(x: Any) -> str:
    """:func:`pct` of a stored value that should be a share (anything else shown as it is)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return pct(x)
    return "-" if x is None else str(x)
