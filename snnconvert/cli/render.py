"""Rich rendering of the library's results (the CLI's only formatting code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from snnconvert.artifact import Artifact
from snnconvert.evaluate import EvaluationReport
from snnconvert.ingest import ModelEntry
from snnconvert.pipeline import QuantizedModel
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


def quantize_tables(console: Console, q: QuantizedModel, path: Path | None) -> None:
    stats = {s.name: s for s in q.clip_stats}
    table = Table(title=f"{q.info.name}: {q.config.bits}-bit activations, {q.config.w_bits}-bit weights "
                        f"({q.config.method}{f' {q.config.percentile:g}' if q.config.method == 'percentile' else ''})")
    for col in ("layer", "bits (w/a)", "C_w (min..max)", "C_i", "C_o", "clip range", "clipped"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in q.layers:
        out = stats.get(r.output.name) if r.output else None
        c_i = ", ".join(f"{i.scale:.4g}" for i in r.inputs) or "float"
        table.add_row(
            r.name, f"{r.weight_bits}/{r.act_bits or '-'}", f"{r.weight_scale_min:.2e}..{r.weight_scale_max:.2e}",
            c_i, f"{r.output.scale:.4g}" if r.output else "logits",
            f"0..{out.clip_high:.3g}" if out else "-", pct(out.clipped_share) if out else "-",
        )
    console.print(table)
    if q.accuracy:
        acc = Table(title=f"accuracy on held-out images ({q.accuracy.data})")
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
            h.add_row(str(row["epoch"]), f"{row['loss']:.4f}", "yes" if row["bn_frozen"] else "no",
                      "yes" if row["quant_frozen"] else "no")
        console.print(h)
    if path:
        console.print(f"calibrated on {q.calibration.description}")
        console.print(f"[green]wrote[/green] {path}")


def snn_summary(console: Console, snn: SpikingNetwork, path: Path | None) -> None:
    info = snn.info
    table = Table(title=f"SNN ({snn.coding})")
    table.add_column("property")
    table.add_column("value", justify="right")
    for key in ("latency_terms", "latency", "Tc", "Ts_uniform", "L_TSA", "T_inf", "pipeline_period", "T", "S",
                "bits_spike", "frames"):
        if key in info and info[key] is not None:
            table.add_row(key, str(info[key]))
    if "Ts" in info and info.get("Ts_uniform") is None:
        table.add_row("Ts per layer", ",".join(str(t) for t in info["Ts"]))
    table.add_row("neuron layers", str(len(snn.neurons())))
    if "auto" in info:
        auto = info["auto"]
        table.add_row("--Ts auto", f"best uniform Ts {auto.get('uniform_Ts')}, then per layer; {len(auto['trials'])} "
                                   f"trials on {auto['images']} calibration images (target "
                                   f"{100 * auto['target']:.1f}% agreement)")
    console.print(table)
    if path:
        console.print(f"[green]wrote[/green] {path}")


def evaluation_tables(console: Console, report: EvaluationReport) -> None:
    wanted = set(report.reports)
    acc = report.accuracy
    if "accuracy" in wanted:
        t = Table(title=f"accuracy: {report.model} on {acc.data}")
        for col in ("model", "top-1", "top-5", "agreement with quantized ANN"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for s in acc.scores:
            agree = {"SNN": acc.agreement_snn_quantized, "float ANN": acc.agreement_quantized_float}.get(s.model)
            t.add_row(s.model, pct(s.top1), pct(s.top5), pct(agree) if s.model != "quantized ANN" else "-")
        console.print(t)
    if report.coding is None:
        return
    info = report.snn_info
    if "latency" in wanted:
        t = Table(title="latency")
        t.add_column("quantity")
        t.add_column("value", justify="right")
        t.add_row("coding", str(report.coding))
        t.add_row("latency (time steps)", str(info.get("latency")))
        t.add_row("in the coding's terms", str(info.get("latency_terms", "")))
        if report.coding == "sws":
            t.add_row("Tc (coding steps)", str(info["Tc"]))
            ts = info["Ts"]
            t.add_row("Ts (silent period)", str(info["Ts_uniform"]) if info.get("Ts_uniform") is not None
                      else f"per layer {min(ts)}..{max(ts)} (mean {sum(ts) / len(ts):.2f})")
            t.add_row("L_TSA (neuron layers on the longest path)", str(info["L_TSA"]))
            t.add_row("T_inf = Tc + Ts x L_TSA (eq 6)", str(info["T_inf"]))
            t.add_row("pipelined throughput 1/(Tc+Ts)", f"1/{info['pipeline_period']} frames per step")
        console.print(t)
    ops = report.ops
    if ops and ("opf" in wanted or "energy" in wanted):
        t = Table(title=f"operations and energy per inference (MAC {ops.e_mac_pj} pJ, AC {ops.e_ac_pj} pJ)")
        for col in ("layer", "ANN MACs", "input rate r_l", "SNN ops", "E_ANN (nJ)", "E_SNN (nJ)"):
            t.add_column(col, justify="left" if col == "layer" else "right")
        for lo in ops.layers:
            t.add_row(lo.name + (" (MAC)" if lo.first_layer else ""), num(lo.macs), f"{lo.input_rate:.3f}",
                      num(lo.synaptic_ops), f"{lo.energy_ann_pj / 1e3:.1f}", f"{lo.energy_snn_pj / 1e3:.1f}")
        t.add_row("[bold]total", num(ops.ann_macs), "", num(ops.synaptic_ops),
                  f"{ops.energy_ann_uj * 1e3:.1f}", f"{ops.energy_snn_uj * 1e3:.1f}")
        console.print(t)
        s = Table(title="summary")
        s.add_column("quantity")
        s.add_column("value", justify="right")
        s.add_row("OPF = state ops + synaptic ops (SWS eq 10)", num(ops.opf))
        s.add_row("  membrane state ops (amplification / updates)", num(ops.state_ops))
        s.add_row("  spike-driven synaptic ops", num(ops.synaptic_ops))
        s.add_row("ANN MACs", num(ops.ann_macs))
        s.add_row("energy ANN / SNN (uJ)", f"{ops.energy_ann_uj:.3f} / {ops.energy_snn_uj:.3f}")
        s.add_row("delta = E_ANN / E_SNN (M-LIF eq 11)", f"{ops.delta:.2f}x")
        console.print(s)
    if "rates" in wanted and report.rates:
        t = Table(title="spike rates per neuron layer")
        for col in ("layer", "neurons", "spikes/neuron", "slot density", "spikes over steps"):
            t.add_column(col, justify="left" if col in ("layer", "spikes over steps") else "right")
        for r in report.rates:
            t.add_row(r.name, num(r.neurons), f"{r.rate:.3f}", pct(r.density), sparkline(r.events_per_step))
        console.print(t)
    if "residual" in wanted and report.residual:
        t = Table(title="residual after the last step (units of theta, x 1/beta^Ts; fig 5a)")
        for col in ("layer", "mean |r|", "p95 |r|", "max |r|", "|r| > 1/2", "held at clamp (0 or 2^n-1)"):
            t.add_column(col, justify="left" if col == "layer" else "right")
        for r in report.residual:
            t.add_row(r.name, f"{r.mean_abs:.3f}", f"{r.p95_abs:.3f}", f"{r.max_abs:.3f}", pct(r.over_half),
                      pct(r.clamped))
        console.print(t)
    if "coding" in wanted and report.coding_metrics:
        t = Table(title=f"{report.coding} metrics")
        t.add_column("metric")
        t.add_column("value", justify="right")
        for k, v in report.coding_metrics.items():
            t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        console.print(t)
    if report.timing and report.timing.snn_seconds:
        tm = report.timing
        console.print(
            f"time: quantized ANN {tm.quantized_seconds:.1f}s, SNN {tm.snn_seconds:.1f}s "
            f"({tm.snn_over_quantized:.2f}x, {tm.snn_images_per_second:.1f} img/s, {tm.dtype}); "
            f"peak memory {tm.peak_rss_mb:.0f} MB"
        )
    if report.sweep:
        t = Table(title="sweep")
        for col in ("setting", "top-1", "agreement (quantized)", "latency", "spikes/neuron", "OPF", "delta",
                    "time (s)"):
            t.add_column(col, justify="left" if col == "setting" else "right")
        for row in report.sweep:
            t.add_row(", ".join(f"{k}={v}" for k, v in row.setting.items()), pct(row.top1), pct(row.agreement),
                      str(row.latency), f"{row.spike_rate:.3f}", num(row.opf), f"{row.delta:.2f}x",
                      f"{row.seconds:.1f}")
        console.print(t)


def models_table(console: Console, entries: list[ModelEntry]) -> None:
    t = Table(title="models snnconvert can ingest by name (or pass --weights FILE)")
    for col in ("name", "family", "input", "weights available offline"):
        t.add_column(col)
    for e in entries:
        size = "x".join(str(s) for s in e.input_spec.size)
        t.add_row(e.name, e.family, f"{e.input_spec.channels}x{size}", e.weights_offline)
    console.print(t)


def info_tables(console: Console, path: Path, artifact: Artifact) -> None:
    m = artifact.manifest
    t = Table(title=f"{path.name}: {artifact.kind} artifact")
    t.add_column("field")
    t.add_column("value")
    model = m.get("model", {})
    t.add_row("model", f"{model.get('name')} ({model.get('source')})")
    t.add_row("created", str(m.get("created")))
    t.add_row("versions", ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    q = m.get("quantize", {})
    t.add_row("quantization", f"{q.get('bits')}-bit act / {q.get('weight_bits') or q.get('bits')}-bit weights, "
                              f"{q.get('method')}, QAT epochs {q.get('qat_epochs')}")
    cal = m.get("calibration", {})
    t.add_row("calibration data", str(cal.get("description")))
    acc = m.get("accuracy")
    if acc:
        t.add_row("held-out top-1", f"float {pct(acc['float_top1'])}, quantized {pct(acc['quantized_top1'])} "
                                    f"({acc['images']} images)")
    snn: dict[str, Any] | None = m.get("snn")
    if snn:
        info = snn.get("info", {})
        t.add_row("coding", f"{snn.get('coding')}: {info.get('latency_terms', '')}, latency {info.get('latency')}")
    t.add_row("models", ", ".join(f"{k} ({sum(p.numel() for p in v.state_dict().values()):,} values)"
                                  for k, v in artifact.models.items()))
    console.print(t)
