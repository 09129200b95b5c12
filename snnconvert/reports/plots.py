"""PNG plots of an evaluation: residual histograms, spike rates, accuracy vs latency."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snnconvert.evaluate import EvaluationReport  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
    return path


def residual_plot(report: EvaluationReport, path: Path) -> Path | None:
    """Probability density of |residual| per TSA layer (SWS paper fig 5a)."""
    if not report.residual:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("viridis")
    for i, row in enumerate(report.residual):
        hist = np.asarray(row.histogram)
        edges = np.linspace(-row.range, row.range, len(hist) + 1)
        centers = (edges[:-1] + edges[1:]) / 2
        width = edges[1] - edges[0]
        fold = {}
        for c, h in zip(np.round(np.abs(centers), 6), hist, strict=True):
            fold[c] = fold.get(c, 0.0) + h
        xs = np.array(sorted(fold))
        ys = np.array([fold[x] for x in xs])
        ys = ys / max(ys.sum() * width, 1e-12)
        ax.plot(xs, ys, color=cmap(i / max(len(report.residual) - 1, 1)), lw=1, alpha=0.8,
                label=row.name if len(report.residual) <= 8 else None)
    ax.axvline(0.5, color="red", ls="--", lw=1, label="1/2 (rounding bound)")
    ax.set_xlabel("|residual| (units of theta, scaled by 1/beta^Ts)")
    ax.set_ylabel("probability density")
    ax.set_xlim(0, min(2.0, max(r.max_abs for r in report.residual) + 0.1))
    ax.set_title(f"{report.model}: final membrane residuals per TSA layer")
    ax.legend(fontsize=7)
    return _save(fig, path)


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
    return _save(fig, path)


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
    return _save(fig, path)


def sweep_plot(report: EvaluationReport, path: Path) -> Path | None:
    """Accuracy against latency for a sweep, with the ANNs as dashed lines."""
    if not report.sweep:
        return None
    points = [(row.latency, row.top1, ", ".join(f"{k}={v}" for k, v in row.setting.items())) for row in report.sweep]
    refs = {s.model: s.top1 for s in report.accuracy.scores if s.model in ("float ANN", "quantized ANN")}
    return accuracy_latency_plot({f"SNN ({report.coding})": points}, refs, path,
                                 title=f"{report.model}: accuracy vs latency")


def write_plots(report: EvaluationReport, directory: str | Path) -> list[Path]:
    directory = Path(directory)
    made = [
        residual_plot(report, directory / "residuals.png"),
        spike_rate_plot(report, directory / "spike_rates.png"),
        sweep_plot(report, directory / "accuracy_vs_latency.png"),
    ]
    return [p for p in made if p is not None]
