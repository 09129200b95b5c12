"""``evaluate --report dtss``: learned time steps per layer, T_avg (eq 3) and the compute,
memory and total energy normalised to the same network at fixed ``T_max`` (DTSS paper table V).

Energy model (per inference):

* compute: every synapse's measured operations (accumulates; the first layer's at MAC cost, as
  in the ops report), at ``e_ac`` / ``e_mac`` pJ; attention products count one accumulate per
  non-zero product of spikes. :data:`ENERGY_MODELS` holds the DTSS paper's 1.8 pJ AC /
  13.32 pJ MAC (``dtss-fpga``, the default here) and the M-LIF paper's 0.9 / 4.6 pJ;
* memory: membrane-potential reads and writes, which dominate (paper §IV.E): one read and one
  write per neuron per executed step, ``T_l`` steps for a layer with a DTSS mask (zero-gated
  after it) and ``T_max`` otherwise, at :data:`E_MEM_PJ` per access (an assumption: a 32-bit
  SRAM access, Horowitz 2014; only TE depends on it, CE and ME ratios do not);
* total = compute + memory.

The baseline is the same SNN with every mask switched off (``force_full``): all layers run
``T_max`` steps. Reported ratios are ``baseline / DTSS`` (table V: the DTSS SNN is 1x).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnconvert.codings.base import ReportTable
from snnconvert.methods.dtss.mask import DTSSMask, dtss_masks, t_avg
from snnconvert.methods.rate.neuron import RateMaxPool
from snnconvert.reports.analyses import Analysis, AnalysisContext, register_analysis
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.probes import SynapseLoad, synapse_probe

ENERGY_MODELS = {"dtss-fpga": (13.32, 1.8), "mlif-45nm": (4.6, 0.9)}
"""Named energy models: (pJ per MAC, pJ per accumulate)."""

E_MEM_PJ = 5.0
"""pJ per membrane-potential access (read or write) of the memory-energy estimate."""


@contextmanager
def masks_off(snn: SpikingNetwork):
    """Inside the block every DTSS mask passes all ``T_max`` steps (the fixed-T baseline)."""
    masks = list(dtss_masks(snn).values())
    for m in masks:
        m.force_full = True
    try:
        yield snn
    finally:
        for m in masks:
            m.force_full = False


def layer_steps(snn: SpikingNetwork) -> dict[str, int]:
    """Steps each firing neuron layer runs: ``T_l`` of its mask, else its output steps."""
    kept = {m.layer: m.kept_steps() for m in dtss_masks(snn).values()}
    return {name: kept.get(name, n.steps_out) for name, n in snn.neurons().items()
            if name != "encoder" and not isinstance(n, RateMaxPool)}


@torch.no_grad()
def measured_run(snn: SpikingNetwork, images: Tensor, batch_size: int, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> tuple[Tensor, dict[str, SynapseLoad]]:
    """Logits and synapse loads of one recorded run (spike statistics stay in the neurons)."""
    snn.reset_stats()
    dtype = dtype or snn.compute_dtype()
    outs = []
    with snn.recording(), synapse_probe(snn) as loads:
        for s in range(0, len(images), batch_size):
            x = images[s:s + batch_size].to(device=device or images.device, dtype=dtype)
            outs.append(snn(x).cpu())
    return torch.cat(outs), dict(loads)


def energy_breakdown(snn: SpikingNetwork, loads: dict[str, SynapseLoad], *, e_mac: float, e_ac: float,
                     e_mem: float = E_MEM_PJ) -> dict[str, float]:
    """Compute, memory and total energy (pJ per inference) of the last recorded run."""
    first = next(iter(loads), None)
    compute = sum(load.synaptic_ops * (e_mac if name == first else e_ac) for name, load in loads.items())
    steps = layer_steps(snn)
    neurons = {name: float(n.neurons) for name, n in snn.neurons().items()}
    accesses = sum(2.0 * neurons.get(name, 0.0) * t for name, t in steps.items())
    return {"compute_pj": compute, "memory_pj": accesses * e_mem, "total_pj": compute + accesses * e_mem,
            "synaptic_ops": sum(load.synaptic_ops for load in loads.values()), "membrane_accesses": accesses}


def spikes_per_neuron(snn: SpikingNetwork) -> float:
    """Spikes per neuron per inference over the firing layers of the last recorded run."""
    stats = [n.stats(name) for name, n in snn.neurons().items() if name != "encoder"]
    total = sum(s.neurons for s in stats)
    return sum(s.events for s in stats) / max(total, 1)


def dtss_summary(snn: SpikingNetwork, images: Tensor, labels: Tensor, *, batch_size: int = 100,
                 device: torch.device | None = None, dtype: torch.dtype | None = None,
                 energy_model: str = "dtss-fpga", e_mem: float = E_MEM_PJ) -> dict[str, Any]:
    """Everything the report shows, for ``snn`` with its masks and with them switched off."""
    e_mac, e_ac = ENERGY_MODELS[energy_model]
    masks = dtss_masks(snn)
    result: dict[str, Any] = {"energy_model": {"name": energy_model, "e_mac_pj": e_mac, "e_ac_pj": e_ac,
                                               "e_mem_pj": e_mem}}
    result["layers"] = [{"layer": m.layer or name, "group": m.group, "T_l": m.kept_steps()}
                        for name, m in masks.items()]
    runs = {}
    for key in ("dtss", "fixed_t_max"):
        with masks_off(snn) if key == "fixed_t_max" else nullcontext(snn):
            logits, loads = measured_run(snn, images, batch_size, device, dtype)
            runs[key] = {"top1": float((logits.argmax(1).cpu() == labels.cpu()).float().mean()),
                         "spikes_per_neuron": spikes_per_neuron(snn),
                         **energy_breakdown(snn, loads, e_mac=e_mac, e_ac=e_ac, e_mem=e_mem)}
    result["runs"] = runs
    result["t_max"] = max((m.steps for m in masks.values()), default=0)
    result["t_avg"] = t_avg([r["T_l"] for r in result["layers"]]) if result["layers"] else None
    base, ours = runs["fixed_t_max"], runs["dtss"]
    result["normalized"] = {k: base[f"{k}_pj"] / max(ours[f"{k}_pj"], 1e-30) for k in ("compute", "memory", "total")}
    return result


def _compute(ctx: AnalysisContext) -> dict[str, Any]:
    return dtss_summary(ctx.snn, ctx.images, ctx.labels, batch_size=ctx.batch_size, device=ctx.device,
                        dtype=ctx.dtype)


def _tables(data: dict[str, Any]) -> list[ReportTable]:
    layers = [(r["layer"], r["group"], str(r["T_l"])) for r in data["layers"]]
    layers.append(("T_avg (eq 3)", "", f"{data['t_avg']:.3f} of T_max = {data['t_max']}"))
    em = data["energy_model"]
    rows = []
    for key, label in (("fixed_t_max", f"fixed T = {data['t_max']}"), ("dtss", "DTSS")):
        r = data["runs"][key]
        norm = {k: r[f"{k}_pj"] / max(data["runs"]["dtss"][f"{k}_pj"], 1e-30) for k in ("compute", "memory", "total")}
        rows.append((label, f"{100 * r['top1']:.2f}%", f"{r['spikes_per_neuron']:.3f}",
                     f"{norm['compute']:.2f}x", f"{norm['memory']:.2f}x", f"{norm['total']:.2f}x",
                     f"{r['total_pj'] / 1e6:.3f}"))
    return [ReportTable("learned time steps per layer (DTSS)", ("layer", "group", "T_l"), layers),
            ReportTable(f"energy normalised to DTSS (table V; {em['e_ac_pj']} pJ AC, {em['e_mac_pj']} pJ MAC, "
                        f"{em['e_mem_pj']} pJ per membrane access)",
                        ("network", "top-1", "spikes/neuron", "norm. CE", "norm. ME", "norm. TE", "TE (uJ)"), rows)]


GROUP_COLORS = {"sps": "tab:blue", "qkv": "tab:orange", "attn": "tab:green", "mlp": "tab:red", "other": "tab:gray"}


def plot_steps(data: dict[str, Any], path: Path, title: str) -> Path:
    """Bar chart of T_l per layer (coloured by group) with T_avg dashed; written atomically."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from snnconvert.reports.plots import save_figure

    layers = data["layers"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers) + 2), 3.6))
    ax.bar(range(len(layers)), [r["T_l"] for r in layers], color=[GROUP_COLORS.get(r["group"], "k") for r in layers])
    ax.axhline(data["t_avg"], color="k", ls="--", lw=1, label=f"T_avg = {data['t_avg']:.2f}")
    ax.set_xticks(range(len(layers)), [r["layer"] for r in layers], rotation=90, fontsize=7)
    ax.set_ylim(0, data["t_max"] + 0.5)
    ax.set_ylabel("time steps T_l")
    ax.set_title(title, fontsize=9)
    handles = [Patch(color=color, label=group) for group, color in GROUP_COLORS.items()
               if any(r["group"] == group for r in layers)]
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], *handles], fontsize=7, ncol=3)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot(data: dict[str, Any], folder: Path, title: str) -> list[Path]:
    return [plot_steps(data, Path(folder) / "dtss_steps.png", f"{title}: learned time steps per layer")]


def has_masks(snn: SpikingNetwork) -> bool:
    return any(isinstance(m, DTSSMask) for m in snn.modules())


ANALYSIS = register_analysis(Analysis(
    name="dtss", help="learned time steps per layer, T_avg (eq 3), energy normalised to fixed T_max (table V)",
    applies=has_masks, compute=_compute, tables=_tables, plot=_plot, needs="an SNN fine-tuned with --method dtss",
))
