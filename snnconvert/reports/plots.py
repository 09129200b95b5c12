"""PNG plots of an evaluation: spike rates, accuracy vs latency, and each coding's own plots.

Every file is written atomically (a temporary file renamed into place)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from snnconvert.atomic import write_atomically  # noqa: E402
from snnconvert.evaluate import EvaluationReport  # noqa: E402


def figure(width: float, height: float):
    """A new figure and axes of the given size in inches."""
    return plt.subplots(figsize=(width, height))


def colormap(name: str):
    return matplotlib.colormaps[name]


def layer_colorbar(fig, ax, cmap, layers: int, label: str) -> None:
    """A colour bar that maps line colours to layer numbers 1..``layers``."""
    mappable = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(1, layers))
    fig.colorbar(mappable, ax=ax).set_label(f"{label} (1 = first, {layers} = last)")


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically and close it."""
    try:
        return write_atomically(path, lambda handle: fig.savefig(handle, dpi=120, bbox_inches="tight", format="png"),
                                suffix=".png")
    finally:
        plt.close(fig)


def spike_rate_plot(report: EvaluationReport, path: Path) -> Path | None:
    """Bar chart of the spike rate r_l of every neuron layer."""
    if not report.rates:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(report.rates)), 4))
    names = [r.name for r in report.rates]
    ax.bar(range(len(names)), [r.rate for r in report.rates], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=75, fontsize=7)
    ax.set_ylabel("spikes per neuron per inference")
    ax.set_title(f"{report.model} ({report.coding}): spike rate per layer")
    return save_figure(fig, path)


def accuracy_latency_plot(
    series: dict[str, list[tuple[float, float, str]]],
    references: dict[str, float],
    path: Path,
    *,
    title: str,
    log_x: bool = False,
) -> Path:
    """Top-1 (%) against latency (time steps): one line per series of ``(latency, top1, label)``
    points, and a dashed horizontal line per reference (e.g. the float ANN)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in series.items():
        points = sorted(points)
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], "o-", label=name, ms=4)
        for x, y, label in points:
            if label:
                ax.annotate(label, (x, 100 * y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    for i, (name, value) in enumerate(references.items()):
        ax.axhline(100 * value, color="k" if i == 0 else "g", ls="--" if i == 0 else ":", lw=1, label=name)
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("latency (time steps)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def sweep_plot(report: EvaluationReport, path: Path) -> Path | None:
    """Accuracy against latency for a sweep, with the ANNs as dashed lines."""
    if not report.sweep:
        return None
    points = [(row.latency, row.top1, ", ".join(f"{k}={v}" for k, v in row.setting.items())) for row in report.sweep]
    refs = {s.model: s.top1 for s in report.accuracy.scores if s.model in ("float ANN", "quantized ANN")}
    return accuracy_latency_plot({f"SNN ({report.coding})": points}, refs, path,
                                 title=f"{report.model}: accuracy vs latency")


def write_plots(report: EvaluationReport, directory: str | Path) -> list[Path]:
    """Every plot the report has data for: spike rates, the sweep, and the coding's own."""
    directory = Path(directory)
    made = [
        spike_rate_plot(report, directory / "spike_rates.png"),
        sweep_plot(report, directory / "accuracy_vs_latency.png"),
    ]
    if report.coding is not None:
        from snnconvert.reports.analyses import find_report

        for name, data in report.coding_reports.items():
            extra = find_report(report.coding, name)
            if extra is not None and extra.plot is not None:
                made.extend(extra.plot(data, directory, f"{report.model} ({report.coding})"))
    return [p for p in made if p is not None]
