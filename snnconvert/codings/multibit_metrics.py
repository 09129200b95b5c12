"""Figures of multi-bit networks (adaptive-bit-allocation paper eqs 7-9).

Computed by :func:`metrics` after an evaluation recorded spike statistics. Synapse layer l has
n_l MACs per frame, receives T_l frames of B_s,l-bit spikes and has B_w,l-bit weights:

* ``bit_budget`` (eq 7): ``T_avg * B_w_avg * B_s_avg`` with T and B_s averaged over feature
  elements (neurons) and B_w over weights (the paper's W/S/T averages); T * B_w * B_s when uniform;
* ``S-ACE`` (eq 8): ``sum_l n_l * T_l * B_w,l * B_s,l``; with ``squeeze="always"`` each synapse
  can run once on the squeezed spikes (the paper's post-squeezing pipeline, fig A.1b): T_l = 1;
* ``NS-ACE`` (eq 9, first line): ``sum_l fr_l * n_l * T_l * B_w,l * B_s,l`` with fr_l the firing
  rate (non-zero share of neuron-steps) of the spikes synapse l receives; ``NS-ACE_approx`` is
  the third line, ``fr_avg * S-ACE``. An analog input counts as B_s = 32 with rate 1;
* ``model_size_MB``: weights at B_w bits plus biases at 32 bits, 10^6 bytes per MB.

"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx, nn

from snnconvert.codings.base import ReportTable
from snnconvert.data.input_spec import InputSpec
from snnconvert.graph.ops import module_of
from snnconvert.neurons.multibit import MultiBitNeuron
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import SynapseAffine, SynapseConv2d, SynapseLinear

_SYNAPSES = (SynapseConv2d, SynapseLinear, SynapseAffine)
ANALOG_BITS = 32  # bit width counted for analog (non-spike) synapse inputs and float weights
ENCODER = "encoder"


def _sources(body: fx.GraphModule, node: fx.Node, names: dict[int, str],
             encoder: nn.Module) -> dict[str, int]:
    """Layers whose output reaches synapse ``node`` through non-synaptic ops, with their bit
    widths: neuron layers, ``"input"`` (the analog image) or ``"analog"`` (another synapse)."""
    found: dict[str, int] = {}
    stack, seen = list(node.all_input_nodes), set()
    while stack:
        n = stack.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        mod = module_of(body, n)
        if isinstance(mod, MultiBitNeuron):
            found[names[id(mod)]] = mod.bits
        elif n.op == "placeholder" and isinstance(encoder, MultiBitNeuron):
            found[names[id(encoder)]] = encoder.bits
        elif n.op == "placeholder":
            found["input"] = ANALOG_BITS
        elif isinstance(mod, _SYNAPSES):
            found["analog"] = ANALOG_BITS
        else:
            stack.extend(n.all_input_nodes)
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


def metrics(snn: SpikingNetwork) -> dict[str, Any]:
    """Bit budget (eq 7), S-ACE (eq 8), NS-ACE (eq 9) and model size, from ``snn.info`` and the
    spike statistics of the last recorded evaluation (NS-ACE is None before one)."""
    info = snn.info
    stats = {s.name: s for s in snn.spike_stats()}
    recorded = bool(stats) and all(s.samples > 0 for s in stats.values())
    always = info.get("squeeze") == "always"

    def rate(sources: list[str]) -> float:
        known = [stats[s] for s in sources if s in stats]
        if len(known) < len(sources):  # analog inputs: every value is non-zero
            return 1.0
        slots = sum(s.neurons * s.lanes * len(s.events_per_step) for s in known)
        return sum(s.events for s in known) / max(slots, 1)

    layers, s_ace, ns_ace = [], 0.0, 0.0
    for syn in info["synapses"]:
        steps = 1 if always else syn["frames"]
        bb = steps * syn["bits_weight"] * syn["bits_spike"]
        fr = rate(syn["sources"]) if recorded else None
        s_ace += syn["macs"] * bb
        if fr is not None:
            ns_ace += fr * syn["macs"] * bb
        layers.append({"name": syn["name"], "MACs": syn["macs"], "T": steps,
                       "bits_weight": syn["bits_weight"], "bits_spike": syn["bits_spike"], "bit_budget": bb,
                       "S-ACE": syn["macs"] * bb, "firing_rate": fr,
                       "NS-ACE": fr * syn["macs"] * bb if fr is not None else None})
    sizes = info["neuron_sizes"]
    elements = sum(v["neurons"] for v in sizes.values())
    weights = sum(s["weights"] for s in info["synapses"])
    t_avg = sum(v["neurons"] * v["T"] for v in sizes.values()) / elements if elements else 1.0
    bs_avg = sum(v["neurons"] * v["bits"] for v in sizes.values()) / elements if elements else ANALOG_BITS
    bw_avg = sum(s["weights"] * s["bits_weight"] for s in info["synapses"]) / weights if weights else 0.0
    fr_avg = None
    if recorded:
        slots = sum(s.neurons * s.lanes * len(s.events_per_step) for s in stats.values())
        fr_avg = sum(s.events for s in stats.values()) / max(slots, 1)
    size_bits = sum(s["weights"] * s["bits_weight"] + s["biases"] * ANALOG_BITS for s in info["synapses"])
    return {
        "bit_budget": t_avg * bw_avg * bs_avg,
        "T_avg": t_avg,
        "bits_spike_avg": bs_avg,
        "bits_weight_avg": bw_avg,
        "MACs": sum(s["macs"] for s in info["synapses"]),
        "S-ACE": s_ace,
        "S-ACE_pipeline": "post-squeezing (T = 1 per synapse)" if always else "T frames per synapse",
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
        per_neuron = neuron.steps_out
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
        ("NS-ACE (eq 9)", _fmt(data["NS-ACE"])),
        ("NS-ACE approx = fr x S-ACE", _fmt(data["NS-ACE_approx"])),
        ("firing rate", "-" if fr is None else f"{100 * fr:.2f}%"),
        ("model size (MB)", f"{data['model_size_MB']:.4f}"),
    ]
    layers = [(r["name"], _fmt(r["MACs"]), str(r["T"]), str(r["bits_weight"]), str(r["bits_spike"]),
               _fmt(r["S-ACE"]), "-" if r["firing_rate"] is None else f"{100 * r['firing_rate']:.2f}%",
               _fmt(r["NS-ACE"])) for r in data["layers"]]
    return [
        ReportTable("multi-bit figures", ("quantity", "value"), totals),
        ReportTable("per synapse layer", ("layer", "MACs", "T", "B_w", "B_s", "S-ACE", "firing rate", "NS-ACE"),
                    layers),
    ]
