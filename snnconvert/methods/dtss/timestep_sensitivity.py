"""``evaluate --report timestep-sensitivity``: how much each neuron layer's input distribution
changes between the first and the last time step (DTSS paper §III.B, fig 2).

For every firing neuron layer the input currents (the synapse outputs it integrates) at
``t = 1`` and at ``t = T`` are histogrammed over the evaluation images on a common range
(:data:`BINS` bins); the two histograms, read as probability vectors, are compared by their
cosine similarity. Near 1: the layer sees at ``t = 1`` what it sees later, so it is a candidate
for few time steps; low: the layer's input depends on the time step (the paper keeps such
groups, e.g. ``attn``, out of the mask loss). Layers are labelled with their DTSS group
(``sps``, ``qkv``, ``attn``, ``mlp``, ``other``). The simulation runs on at most
:data:`MAX_IMAGES` of the evaluation images, with any DTSS masks switched off (all steps live).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnconvert.codings.base import ReportTable
from snnconvert.methods.dtss.report import masks_off
from snnconvert.models.spikformer import layer_group
from snnconvert.neurons.base import SpikingNeuron, unfold_time
from snnconvert.reports.analyses import Analysis, AnalysisContext, register_analysis
from snnconvert.simulate.network import SpikingNetwork

BINS = 50
MAX_IMAGES = 256
SAMPLE = 200_000  # input values kept per layer and step (a seeded random subset)


def _layers(snn: SpikingNetwork) -> dict[str, SpikingNeuron]:
    return {name: n for name, n in snn.neurons().items()
            if name != "encoder" and not n.pools and n.steps_in >= 2}


def cosine_of_histograms(first: Tensor, last: Tensor, bins: int = BINS) -> tuple[float, list[float], list[float],
                                                                                  list[float]]:
    """Cosine similarity of the histograms of two value sets on their common range; also the
    bin edges and both normalised histograms."""
    first, last = first.double().flatten(), last.double().flatten()
    lo = float(torch.minimum(first.min(), last.min()))
    hi = float(torch.maximum(first.max(), last.max()))
    if hi <= lo:
        hi = lo + 1.0
    h1 = torch.histc(first, bins, lo, hi)
    h2 = torch.histc(last, bins, lo, hi)
    p1, p2 = h1 / h1.sum().clamp(min=1), h2 / h2.sum().clamp(min=1)
    cos = float(torch.dot(p1, p2) / (p1.norm() * p2.norm()).clamp(min=1e-30))
    edges = torch.linspace(lo, hi, bins + 1)
    return cos, edges.tolist(), p1.tolist(), p2.tolist()


@torch.no_grad()
def sensitivity(snn: SpikingNetwork, images: Tensor, *, batch_size: int = 100, device: torch.device | None = None,
                dtype: torch.dtype | None = None, seed: int = 0) -> dict[str, Any]:
    """Per layer: cosine similarity of the input distribution at t = 1 and t = T (see module doc)."""
    layers = _layers(snn)
    kept: dict[str, list[list[Tensor]]] = {name: [[], []] for name in layers}
    gen = torch.Generator().manual_seed(seed)

    def hook(name: str, neuron: SpikingNeuron):
        def pre(_module, inputs):
            frames = unfold_time(inputs[0], neuron.steps_in)
            for slot, t in ((0, 0), (1, neuron.steps_in - 1)):
                values = frames[t].detach().flatten().float().cpu()
                if values.numel() > SAMPLE // 4:
                    values = values[torch.randint(values.numel(), (SAMPLE // 4,), generator=gen)]
                kept[name][slot].append(values)
        return pre

    handles = [n.register_forward_pre_hook(hook(name, n)) for name, n in layers.items()]
    images = images[:MAX_IMAGES]
    dtype = dtype or snn.compute_dtype()
    try:
        with masks_off(snn):  # a DTSS network is measured with all its T_max steps live
            for s in range(0, len(images), batch_size):
                snn(images[s:s + batch_size].to(device=device or images.device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name, (first, last) in kept.items():
        a, b = torch.cat(first), torch.cat(last)
        cos, edges, p1, p2 = cosine_of_histograms(a, b)
        rows.append({"layer": name, "group": layer_group(name), "steps": layers[name].steps_in, "cosine": cos,
                     "mean_first": float(a.mean()), "mean_last": float(b.mean()), "edges": edges,
                     "hist_first": p1, "hist_last": p2})
    return {"images": len(images), "bins": BINS, "layers": rows}


def _compute(ctx: AnalysisContext) -> dict[str, Any]:
    return sensitivity(ctx.snn, ctx.images, batch_size=ctx.batch_size, device=ctx.device, dtype=ctx.dtype)


def _tables(data: dict[str, Any]) -> list[ReportTable]:
    rows = [(r["layer"], r["group"], f"{r['cosine']:.4f}", f"{r['mean_first']:.4g}", f"{r['mean_last']:.4g}")
            for r in data["layers"]]
    return [ReportTable(f"time-step sensitivity: cosine similarity of each layer's input distribution at t=1 vs "
                        f"t=T ({data['images']} images, {data['bins']} bins; fig 2)",
                        ("layer", "group", "cosine(t=1, t=T)", "mean input t=1", "mean input t=T"), rows)]


def _plot(data: dict[str, Any], folder: Path, title: str) -> list[Path]:
    import matplotlib.pyplot as plt

    from snnconvert.methods.dtss.report import GROUP_COLORS
    from snnconvert.reports.plots import save_figure

    layers = data["layers"]
    shown = layers[:12]
    cols = 4
    rows = 1 + (len(shown) + cols - 1) // cols
    fig = plt.figure(figsize=(12, 2.4 * rows))
    ax = fig.add_subplot(rows, 1, 1)
    ax.bar(range(len(layers)), [r["cosine"] for r in layers], color=[GROUP_COLORS.get(r["group"], "k") for r in layers])
    ax.set_xticks(range(len(layers)), [r["layer"] for r in layers], rotation=90, fontsize=6)
    ax.set_ylabel("cosine(t=1, t=T)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{title}: input distribution at t=1 vs t=T per neuron layer", fontsize=9)
    for i, r in enumerate(shown):
        sub = fig.add_subplot(rows, cols, cols + i + 1)
        centers = [(a + b) / 2 for a, b in zip(r["edges"][:-1], r["edges"][1:], strict=True)]
        width = r["edges"][1] - r["edges"][0]
        sub.bar(centers, r["hist_first"], width=width, alpha=0.6, color="tab:orange", label="t=1")
        sub.bar(centers, r["hist_last"], width=width, alpha=0.6, color="tab:blue", label=f"t={r['steps']}")
        sub.set_title(f"{r['layer']} ({r['cosine']:.3f})", fontsize=7)
        sub.tick_params(labelsize=6)
        if i == 0:
            sub.legend(fontsize=6)
    fig.tight_layout()
    return [save_figure(fig, Path(folder) / "timestep_sensitivity.png")]


ANALYSIS = register_analysis(Analysis(
    name="timestep-sensitivity",
    help="cosine similarity of each neuron layer's input distribution at t=1 vs t=T (DTSS fig 2)",
    applies=lambda snn: bool(_layers(snn)), compute=_compute, tables=_tables, plot=_plot,
    needs="an SNN whose neuron layers run at least 2 time steps",
))
