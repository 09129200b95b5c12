"""Figures of multi-bit networks (adaptive-bit-allocation paper eqs 7-9).

Computed by :func:`metrics` after an evaluation recorded spike statistics. Synapse layer l has
n_l MACs per frame, receives T_l frames of B_s,l-bit spikes and has B_w,l-bit weights:

* ``bit_budget`` (eq 7): ``T_avg * B_w_avg * B_s_avg`` with T and B_s averaged over feature
  elements (neurons) and B_w over weights (the paper's W/S/T averages); T * B_w * B_s when uniform;
* ``S-ACE`` (eq 8): ``sum_l n_l * T_l * B_w,l * B_s,l``; with ``squeeze="always"`` each synapse
  can run once on the squeezed spikes (the paper's post-squeezing pipeline, fig A.1b): T_l = 1;
* ``NS-ACE`` (eq 9, first line): ``sum_l fr_l * n_l * T_l * B_w,l * B_s,l`` with fr_l the firing
  rate (non-zero share of neuron-steps) of the spikes synapse l receives; ``NS-ACE_approx`` is
  the third line, ``fr_avg * S-ACE``. An analog input counts as B_s = ``float_bits`` with rate 1;
* ``model_size_MB``: weights at B_w bits plus biases at ``float_bits`` bits, 10^6 bytes per MB.

Float weights, biases and analog inputs count ``float_bits`` bits (default 16, as paper 002 counts).

"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import fx, nn

from snnconvert.codings.base import ReportTable
from snnconvert.data.input_spec import InputSpec
from snnconvert.graph.ops import module_of
from snnconvert.methods.multibit.adaptive_neuron import AdaptiveMultiBitNeuron
from snnconvert.methods.multibit.config import FLOAT_BITS
from snnconvert.methods.multibit.learnable import LearnableWeights
from snnconvert.methods.multibit.neuron import MultiBitNeuron
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import SynapseAffine, SynapseConv2d, SynapseLinear

_SYNAPSES = (SynapseConv2d, SynapseLinear, SynapseAffine)
_NEURONS = (MultiBitNeuron, AdaptiveMultiBitNeuron)
ANALOG_BITS = 32  # marks float (unquantized) weights and analog (non-spike) inputs in ``analyse``
ENCODER = "encoder"


def _upstream(body: fx.GraphModule, node: fx.Node, encoder: nn.Module) -> Iterator[tuple[str, nn.Module | None]]:
    """What reaches synapse ``node`` through non-synaptic ops, in walk order: ``("neuron", layer)``
    for a multi-bit neuron layer with fixed or learned widths (the encoder at the input when it
    spikes), ``("input", None)`` for the analog image, ``("analog", None)`` for another synapse."""
    stack, seen = list(node.all_input_nodes), set()
    while stack:
        n = stack.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        mod = module_of(body, n)
        if isinstance(mod, _NEURONS):
            yield "neuron", mod
        elif n.op == "placeholder":
            yield ("neuron", encoder) if isinstance(encoder, _NEURONS) else ("input", None)
        elif isinstance(mod, _SYNAPSES):
            yield "analog", None
        else:
            stack.extend(n.all_input_nodes)


def _sources(body: fx.GraphModule, node: fx.Node, names: dict[int, str],
             encoder: nn.Module) -> dict[str, int]:
    """Layers whose output reaches synapse ``node`` (:func:`_upstream`), with their bit widths:
    neuron layers (a learned layer: its widest active step), ``"input"`` or ``"analog"``."""
    found: dict[str, int] = {}
    for kind, mod in _upstream(body, node, encoder):
        if isinstance(mod, MultiBitNeuron):
            found[names[id(mod)]] = mod.bits
        elif isinstance(mod, AdaptiveMultiBitNeuron):
            found[names[id(mod)]] = max(mod.step_bits()[:mod.steps])
        else:
            found[kind] = ANALOG_BITS
    return found


@torch.no_grad()
def analyse(snn: SpikingNetwork, spec: InputSpec, w_bits: dict[str, int]) -> dict[str, Any]:
    """Per-synapse MACs, weights and input bit widths, and per-neuron-layer sizes, from one
    forward pass on a blank image (JSON-compatible, stored in ``snn.info``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    names = {id(m): n for n, m in snn.neurons().items()}
    hooks = []
    for name, mod in [(ENCODER, snn.encoder), *snn.body.named_modules()]:
        if isinstance(mod, (*_SYNAPSES, MultiBitNeuron)):
            hooks.append(mod.register_forward_hook(
                lambda _m, _i, out, key=name: shapes.__setitem__(key, tuple(out.shape))))
    try:
        snn(torch.zeros(spec.example_shape(1), dtype=torch.float64))
    finally:
        for h in hooks:
            h.remove()
    synapses = []
    for node in snn.body.graph.nodes:
        mod = module_of(snn.body, node)
        if not isinstance(mod, _SYNAPSES):
            continue
        shape = shapes[node.target]
        per_frame = math.prod(shape[1:])
        if isinstance(mod, SynapseConv2d):
            fan_in = mod.in_channels // mod.groups * math.prod(mod.kernel_size)
            weights = mod.weight.numel()
        elif isinstance(mod, SynapseLinear):
            fan_in, weights = mod.in_features, mod.weight.numel()
        else:
            fan_in, weights = 1, mod.scale.numel()
        bias = getattr(mod, "bias", None) if not isinstance(mod, SynapseAffine) else mod.shift
        sources = _sources(snn.body, node, names, snn.encoder)
        synapses.append({
            "name": node.target,
            "macs": per_frame * fan_in,
            "frames": shape[0],
            "weights": weights,
            "biases": bias.numel() if bias is not None else 0,
            "bits_weight": w_bits.get(node.target, ANALOG_BITS),
            "bits_spike": max(sources.values(), default=ANALOG_BITS),
            "sources": list(sources),
        })
    layers = {}
    for name, mod in snn.neurons().items():
        key = ENCODER if mod is snn.encoder else next(k for k, m in snn.body.named_modules() if m is mod)
        layers[name] = {"neurons": math.prod(shapes[key][1:]), "T": mod.steps_out, "bits": mod.bits}
    return {"synapses": synapses, "neuron_sizes": layers}


# ------------------------------------------------------------------------------------ figures


def _live(snn: SpikingNetwork) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Current widths of learnable layers (adaptive bits): per neuron layer ``T`` and the mean
    and max spike width over its active steps; per synapse ``B_w``."""
    neurons = {}
    for name, mod in snn.neurons().items():
        if isinstance(mod, AdaptiveMultiBitNeuron):
            bits = mod.step_bits()[:mod.steps]
            neurons[name] = {"T": mod.steps, "bits": sum(bits) / len(bits), "max_bits": max(bits)}
    weights = {}
    if isinstance(snn.body, fx.GraphModule):
        for node in snn.body.graph.nodes:
            mod = module_of(snn.body, node)
            if isinstance(mod, LearnableWeights):
                weights[node.target] = mod.bits
    return neurons, weights


def metrics(snn: SpikingNetwork, float_bits: int | None = None) -> dict[str, Any]:
    """Bit budget (eq 7), S-ACE (eq 8), NS-ACE (eq 9) and model size, from ``snn.info``, the
    current widths of learnable layers and the spike statistics of the last recorded evaluation
    (NS-ACE is None before one). Float weights, biases and analog inputs count ``float_bits``
    bits (default: the conversion's ``float_bits``, else :data:`FLOAT_BITS`, 16 as in the paper)."""
    info = snn.info
    fbits = int(float_bits if float_bits is not None else info.get("float_bits", FLOAT_BITS))
    stats = {s.name: s for s in snn.spike_stats()}
    recorded = bool(stats) and all(s.samples > 0 for s in stats.values())
    always = info.get("squeeze") == "always"
    live_neurons, live_weights = _live(snn)
    sizes = {k: dict(v, **live_neurons.get(k, {})) for k, v in info["neuron_sizes"].items()}

    def rate(sources: list[str]) -> float:
        known = [stats[s] for s in sources if s in stats]
        if len(known) < len(sources):  # analog inputs: every value is non-zero
            return 1.0
        slots = sum(s.neurons * s.lanes * len(s.events_per_step) for s in known)
        return sum(s.events for s in known) / max(slots, 1)

    def spike_width(syn: dict[str, Any], key: str) -> float:
        widths = [sizes[s][key] if s in sizes and key in sizes[s] else sizes[s]["bits"] if s in sizes else fbits
                  for s in syn["sources"]]
        return max(widths, default=fbits)

    layers, s_ace, s_ace_frames, ns_ace = [], 0.0, 0.0, 0.0
    for syn in info["synapses"]:
        adaptive = any(s in live_neurons for s in syn["sources"])
        frames = max((sizes[s]["T"] for s in syn["sources"] if s in sizes), default=1) if adaptive \
            else syn["frames"]
        bw = live_weights.get(syn["name"], syn["bits_weight"])
        bw = fbits if bw == ANALOG_BITS and syn["name"] not in live_weights else bw
        bs_mean = spike_width(syn, "bits") if adaptive else syn["bits_spike"]
        bs_max = spike_width(syn, "max_bits") if adaptive else syn["bits_spike"]
        if bs_mean == ANALOG_BITS and not adaptive:
            bs_mean = bs_max = fbits if "input" in syn["sources"] or "analog" in syn["sources"] else bs_mean
        steps = 1 if always else frames
        bb = steps * bw * (bs_max if always else bs_mean)
        fr = rate(syn["sources"]) if recorded else None
        s_ace += syn["macs"] * bb
        s_ace_frames += syn["macs"] * frames * bw * bs_mean
        if fr is not None:
            ns_ace += fr * syn["macs"] * bb
        layers.append({"name": syn["name"], "MACs": syn["macs"], "T": steps,
                       "bits_weight": bw, "bits_spike": bs_max if always else bs_mean, "bit_budget": bb,
                       "S-ACE": syn["macs"] * bb, "firing_rate": fr,
                       "NS-ACE": fr * syn["macs"] * bb if fr is not None else None})
    elements = sum(v["neurons"] for v in sizes.values())
    weights = sum(s["weights"] for s in info["synapses"])
    wbits = {s["name"]: live_weights.get(s["name"], fbits if s["bits_weight"] == ANALOG_BITS else s["bits_weight"])
             for s in info["synapses"]}
    t_avg = sum(v["neurons"] * v["T"] for v in sizes.values()) / elements if elements else 1.0
    bs_avg = sum(v["neurons"] * v["bits"] for v in sizes.values()) / elements if elements else fbits
    bw_avg = sum(s["weights"] * wbits[s["name"]] for s in info["synapses"]) / weights if weights else 0.0
    fr_avg = None
    if recorded:
        slots = sum(s.neurons * s.lanes * len(s.events_per_step) for s in stats.values())
        fr_avg = sum(s.events for s in stats.values()) / max(slots, 1)
    size_bits = sum(s["weights"] * wbits[s["name"]] + s["biases"] * fbits for s in info["synapses"])
    return {
        "bit_budget": t_avg * bw_avg * bs_avg,
        "T_avg": t_avg,
        "bits_spike_avg": bs_avg,
        "bits_weight_avg": bw_avg,
        "float_bits": fbits,
        "MACs": sum(s["macs"] for s in info["synapses"]),
        "S-ACE": s_ace,
        "S-ACE_pipeline": "post-squeezing (T = 1 per synapse)" if always else "T frames per synapse",
        "S-ACE_frames": s_ace_frames,
        "NS-ACE": ns_ace if recorded else None,
        "NS-ACE_approx": fr_avg * s_ace if fr_avg is not None else None,
        "firing_rate": fr_avg,
        "model_size_MB": size_bits / 8 / 1e6,
        "layers": layers,
    }


def state_ops(snn: SpikingNetwork) -> dict[str, float]:
    """Membrane updates per neuron layer that do not depend on spikes: one update, rounding and
    clip per neuron per step, plus T_in accumulations per neuron where a layer squeezes (eq 13).
    Uses the neuron counts of the last evaluation (the conversion-time sizes before one)."""
    sizes = snn.info.get("neuron_sizes", {})
    ops = {}
    for name, neuron in snn.neurons().items():
        count = float(neuron.neurons) or float(sizes.get(name, {}).get("neurons", 0))
        per_neuron = neuron.steps if isinstance(neuron, AdaptiveMultiBitNeuron) else neuron.steps_out
        if isinstance(neuron, MultiBitNeuron) and neuron.squeezes and neuron.steps_in > 1:
            per_neuron += neuron.steps_in
        ops[name] = count * per_neuron
    return ops


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.4g}"


def bit_tables(data: dict[str, Any]) -> list[ReportTable]:
    """The figures of :func:`metrics` as two tables: totals, then per synapse layer."""
    fr = data["firing_rate"]
    totals = [
        ("bit budget T x B_w x B_s (eq 7)", f"{data['bit_budget']:.3g}"),
        ("T / B_s / B_w averages",
         f"{data['T_avg']:.3g} / {data['bits_spike_avg']:.3g} / {data['bits_weight_avg']:.3g}"),
        ("MACs per frame", _fmt(data["MACs"])),
        (f"S-ACE (eq 8, {data['S-ACE_pipeline']})", _fmt(data["S-ACE"])),
        ("S-ACE, T frames per synapse (conventional pipeline)", _fmt(data.get("S-ACE_frames"))),
        ("NS-ACE (eq 9)", _fmt(data["NS-ACE"])),
        ("NS-ACE approx = fr x S-ACE", _fmt(data["NS-ACE_approx"])),
        ("firing rate", "-" if fr is None else f"{100 * fr:.2f}%"),
        ("model size (MB)", f"{data['model_size_MB']:.4f}"),
        ("float width counted (weights, biases, analog)", f"{data.get('float_bits', FLOAT_BITS)} bits"),
    ]
    layers = [(r["name"], _fmt(r["MACs"]), str(r["T"]), str(r["bits_weight"]), str(r["bits_spike"]),
               _fmt(r["S-ACE"]), "-" if r["firing_rate"] is None else f"{100 * r['firing_rate']:.2f}%",
               _fmt(r["NS-ACE"])) for r in data["layers"]]
    return [
        ReportTable("multi-bit figures", ("quantity", "value"), totals),
        ReportTable("per synapse layer", ("layer", "MACs", "T", "B_w", "B_s", "S-ACE", "firing rate", "NS-ACE"),
                    layers),
    ]


# ------------------------------------------------------------------------------------ learned allocation


def _source_neuron(body: fx.GraphModule, node: fx.Node, encoder: nn.Module) -> AdaptiveMultiBitNeuron | None:
    """The learnable neuron layer whose spikes reach synapse ``node`` (the first one found)."""
    return next((m for _, m in _upstream(body, node, encoder) if isinstance(m, AdaptiveMultiBitNeuron)), None)


def allocation(snn: SpikingNetwork) -> dict[str, Any] | None:
    """The learned per-layer widths (adaptive bits, paper 002 fig 4), in graph order: each
    synapse's B_w, and the spike widths B_s^t of its active steps and T of the neuron layer that
    feeds it. None for a network without learnable widths."""
    body = snn.body
    if not isinstance(body, fx.GraphModule) or not any(isinstance(m, AdaptiveMultiBitNeuron) for m in snn.modules()):
        return None
    names = {id(m): n for n, m in snn.neurons().items()}
    rows = []
    for node in body.graph.nodes:
        mod = module_of(body, node)
        if not isinstance(mod, (SynapseConv2d, SynapseLinear)):
            continue
        src = _source_neuron(body, node, snn.encoder)
        bits = src.step_bits()[:src.steps] if src is not None else []
        rows.append({"layer": node.target, "W": mod.bits if isinstance(mod, LearnableWeights) else None,
                     "S": sum(bits) / len(bits) if bits else None, "S_steps": bits,
                     "T": src.steps if src is not None else None,
                     "source": names.get(id(src)) if src is not None else None})
    settings = {k: v for k, v in snn.info.get("adaptive_bits", {}).items() if k != "layers"}
    return {"layers": rows, "settings": settings}


def allocation_tables(data: dict[str, Any]) -> list[ReportTable]:
    rows = [(r["layer"], "-" if r["W"] is None else str(r["W"]),
             "-" if r["S"] is None else "/".join(str(b) for b in r["S_steps"]),
             "-" if r["T"] is None else str(r["T"]), r["source"] or "-") for r in data["layers"]]
    return [ReportTable("learned bit allocation (W = weight bits, S = spike bits per step, T)",
                        ("layer", "W", "S", "T", "spikes from"), rows)]


def allocation_plot(data: dict[str, Any], directory: Any, title: str) -> list[Any]:
    """Fig-4-style bars of W, S and T per layer into ``directory/bit_allocation.png``."""
    from pathlib import Path

    path = Path(directory) / "bit_allocation.png"
    plot_allocation(data["layers"], path, title)
    return [path]


def plot_allocation(layers: list[dict[str, Any]], path: Any, title: str) -> None:
    """Grouped bars of the learned W / S / T per layer (written atomically)."""
    import io
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from snnconvert.atomic import write_atomically

    xs = list(range(len(layers)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(xs) + 2), 3.6))
    for k, (key, color) in enumerate((("W", "tab:blue"), ("S", "tab:orange"), ("T", "tab:green"))):
        vals = [r[key] if r[key] is not None else 0 for r in layers]
        ax.bar([x + (k - 1) * 0.27 for x in xs], vals, width=0.27, label=key, color=color)
    ax.set_xticks(xs, [r["layer"] for r in layers], rotation=70, fontsize=7)
    ax.set_ylabel("bits / time steps")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_atomically(Path(path), lambda handle: handle.write(buf.getvalue()))
