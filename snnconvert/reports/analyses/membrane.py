"""``evaluate --report membrane``: the membrane clipping analysis of SpQuant-SNN (paper 001, §4.1).

For every LIF-family neuron layer (rate-coded IF, M-LIF, SpQuant LIF), in units of the layer's
threshold:

* the post-spike membrane at the first step, u_1 (what the neuron stores after firing or not);
  its minimum U_min and the share of neurons below each clipping bound c;
* eq 5-6: Gamma_u = {u_1 < c}; r_s = mean over t = 2..T of card(Gamma_u AND S_t) / (C H W): the
  share of neurons that start below c and still fire later (T = 1 networks have no later step);
* the top-1 of the SNN when every post-spike membrane is clipped at c on every step, without
  fine-tuning (table 1), for c = -5, -4, -3, -2, -1, next to the unclipped top-1.

The clipped and probed runs replace each neuron layer's dynamics for the duration of the
analysis with the same recursion plus the clip (the network is not changed afterwards). Only
neurons that did not fire can hold a negative membrane, so the clip is ``u <- max(u, c)`` after
the firing decision. A figure in the style of fig 3 shows r_s per layer and the accuracy per c.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnconvert.codings.base import ReportTable
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.reports.analyses import Analysis, AnalysisContext, register_analysis
from snnconvert.simulate.network import SpikingNetwork

BOUNDS = (-5.0, -4.0, -3.0, -2.0, -1.0)
"""The clipping bounds c of the sweep (section 4.1: from -5 to -1)."""

def lif_layers(snn: SpikingNetwork) -> dict[str, SpikingNeuron]:
    """The layers with a membrane recursion to probe (``has_membrane``: LIF-family neurons)."""
    return {name: n for name, n in snn.neurons().items() if n.has_membrane}


def applies(snn: SpikingNetwork) -> bool:
    return bool(lif_layers(snn))


@contextmanager
def probed(snn: SpikingNetwork, clip: float | None, probe: Callable[[str, Tensor, Tensor], None] | None
           ) -> Iterator[None]:
    """Inside the block every LIF-family layer runs its recursion with the clip and reports
    ``(name, spikes (T, B, ...), u_1 (B, ...))`` to ``probe``."""
    layers = lif_layers(snn)

    def make(name: str, neuron: SpikingNeuron) -> Callable[[Tensor], Tensor]:
        def dynamics(inputs: Tensor) -> Tensor:
            spikes, first = type(neuron).membrane_run(neuron, inputs, clip)
            if probe is not None:
                probe(name, spikes, first)
            return spikes
        return dynamics

    for name, neuron in layers.items():
        neuron.dynamics = make(name, neuron)
    try:
        yield
    finally:
        for neuron in layers.values():
            neuron.__dict__.pop("dynamics", None)


@torch.no_grad()
def compute(ctx: AnalysisContext, bounds: tuple[float, ...] = BOUNDS) -> dict[str, Any]:
    """The clipping analysis on the evaluation images (see module docstring)."""
    snn = ctx.snn
    steps = int(snn.info.get("T", snn.info.get("frames", 1)))
    stats: dict[str, dict[str, Any]] = {}

    def probe(name: str, spikes: Tensor, first: Tensor) -> None:
        s = stats.setdefault(name, {"neurons": 0, "u_min": float("inf"), "below": [0.0] * len(bounds),
                                    "fired_later": [0.0] * len(bounds), "later_slots": 0.0})
        per = first[0].numel()
        s["neurons"] += first.numel()
        s["u_min"] = min(s["u_min"], float(first.min()))
        later = (spikes[1:] != 0) if spikes.shape[0] > 1 else None
        for i, c in enumerate(bounds):
            gamma = first < c
            s["below"][i] += float(gamma.sum())
            if later is not None:
                s["fired_later"][i] += float((later & gamma.unsqueeze(0)).sum())
        if later is not None:
            s["later_slots"] += float(per * first.shape[0] * (spikes.shape[0] - 1))

    def top1(clip: float | None, with_probe: bool) -> float:
        correct = 0
        with probed(snn, clip, probe if with_probe else None):
            for i in range(0, len(ctx.images), ctx.batch_size):
                x = ctx.images[i:i + ctx.batch_size].to(device=ctx.device, dtype=ctx.dtype)
                correct += int((snn(x).argmax(1).cpu() == ctx.labels[i:i + ctx.batch_size]).sum())
        return correct / max(len(ctx.images), 1)

    baseline = top1(None, True)
    accuracy = [top1(c, False) for c in bounds]
    layers = []
    for name, s in stats.items():
        slots = s["later_slots"]
        layers.append({
            "layer": name, "u_min": s["u_min"],
            "below_share": [b / max(s["neurons"], 1) for b in s["below"]],
            "r_s": [f / slots if slots else None for f in s["fired_later"]],
        })
    all_slots = sum(s["later_slots"] for s in stats.values())
    overall = [sum(s["fired_later"][i] for s in stats.values()) / all_slots if all_slots else None
               for i in range(len(bounds))]
    return {"bounds": list(bounds), "T": steps, "images": len(ctx.images), "baseline_top1": baseline,
            "clipped_top1": accuracy, "r_s_all": overall, "layers": layers}


def tables(d: dict[str, Any]) -> list[ReportTable]:
    cs = [f"c={c:g}" for c in d["bounds"]]
    acc = [("top-1", f"{100 * d['baseline_top1']:.2f}%", *(f"{100 * a:.2f}%" for a in d["clipped_top1"]))]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.3f}%"

    rows = [("all layers", "", *(pct(v) for v in d["r_s_all"]))]
    rows += [(r["layer"], f"{r['u_min']:.2f}", *(pct(v) for v in r["r_s"])) for r in d["layers"]]
    below = [(r["layer"], *(f"{100 * v:.1f}%" for v in r["below_share"])) for r in d["layers"]]
    return [
        ReportTable(f"accuracy with the post-spike membrane clipped at c, no fine-tuning ({d['images']} images; "
                    "table 1)", ("", "unclipped", *cs), acc),
        ReportTable("r_s: neurons below c at t=1 that fire at t=2..T, per neuron and step (eq 6)",
                    ("layer", "U_min (t=1)", *cs), rows),
        ReportTable("share of neurons below c after the first step (Gamma_u, eq 5)", ("layer", *cs), below),
    ]


def plot(d: dict[str, Any], directory: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from snnconvert.atomic import write_atomically

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    names = [r["layer"] for r in d["layers"]]
    width = 0.8 / max(len(d["bounds"]), 1)
    for i, c in enumerate(d["bounds"]):
        values = [100 * (r["r_s"][i] or 0.0) for r in d["layers"]]
        ax1.bar([k + (i - len(d["bounds"]) / 2) * width for k in range(len(names))], values, width=width,
                label=f"c = {c:g}")
    ax1.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax1.set_ylabel("r_s (%)")
    ax1.set_title(f"{title}: later firing of neurons below c at t=1")
    ax1.legend(fontsize=7)
    ax2.plot(d["bounds"], [100 * a for a in d["clipped_top1"]], "o-", label="clipped")
    ax2.axhline(100 * d["baseline_top1"], color="k", ls="--", lw=1, label="unclipped")
    ax2.set_xlabel("clipping bound c")
    ax2.set_ylabel("top-1 (%)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = Path(directory) / "membrane_clipping.png"
    write_atomically(path, lambda handle: handle.write(buf.getvalue()))
    return [path]


ANALYSIS = register_analysis(Analysis(
    name="membrane",
    help="membrane clipping analysis: post-spike membrane at t=1, r_s and top-1 per bound c (SpQuant §4.1)",
    applies=applies,
    compute=compute,
    tables=tables,
    plot=plot,
    needs="a LIF-family SNN (rate, mlif or spquant coding)",
))
