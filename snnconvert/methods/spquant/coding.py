"""SpQuant-SNN coding (paper 001): LIF neurons with an integer-only membrane, power-of-two
weights and membrane-aware spatial / channel pruning.

Conversion of the prepared float graph (the same data-based normalisation as the rate and M-LIF
codings), then BPTT fine-tuning (``snnconvert finetune --method spquant``) does what the paper
trains from scratch:

* input map (``rounding``, T = 2): each neuron sees ``a y + b`` (:func:`~snnconvert.methods.spquant.neuron.
  rounding_map`), so a converted layer rounds its activation to {0, 1/2, 1} instead of flooring it;
* thresholds: the ``percentile``-th percentile of each ReLU-type activation on the calibration
  data; ``Gain(1/theta) -> SpQuantNeuron -> Gain(theta)`` folded into the weights, so every
  neuron works in threshold units (threshold 1, integer membrane levels in threshold units);
* neurons: :class:`~snnconvert.methods.spquant.neuron.SpQuantNeuron`: LIF with ``tau`` (0.5), hard
  (eq 1) or soft reset, membrane ``precision`` none / ternary / binary / <k>bit (eqs 7, 10,
  19-20), stacked gradient surrogate Q* of smoothness ``smoothness`` (eqs 11-13), optional
  negative clipping bound ``clip`` (section 4.1), spatial pruning ``spatial`` (eqs 21-22, scored
  at every step by default, ``spatial_scoring``) and the channel gate ``gate`` with
  ``gate_threshold`` and ``gate_rule`` (eq 23) on every conv-fed neuron layer;
* synapses: :class:`~snnconvert.methods.spquant.pot.PoTConv2d` / ``PoTLinear``, with ``weight_bits``
  2 / 4 / 8 power-of-two weights and a learnable power-of-two scale (eqs 14-18) or float weights;
* input: the analog image repeated for T steps (direct encoding, section 5.1); the classifier
  output is averaged over the T frames; max-pooling acts per step on the spike frames.

Reports (``evaluate --report memory|flops|energy``): total memory M_t (eqs 28-29), FLOPs with
sparsity (eq 30) and the reduction against the same network dense (S_c = S_p = 0) plus the work
the simulator actually did, and the theoretical energy (eq 31).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from snnconvert.calibrate import calibrate
from snnconvert.calibrate import summary_rows as calibration_rows
from snnconvert.codings.base import Coding, CodingReport, ConversionInputs, ReportTable
from snnconvert.codings.common import (
    calibration_percentiles,
    float_graph_rule,
    insert_neurons,
    replace_synapses,
    rewrite_maxpools,
)
from snnconvert.codings.gains import fold_gains
from snnconvert.codings.registry import register_coding
from snnconvert.errors import SnnConvertError
from snnconvert.graph.ops import Kind, kind_of
from snnconvert.graph.passes import recompile_graph
from snnconvert.graph.support import check_supported
from snnconvert.methods.spquant.config import E_ADD_PJ, E_MUL_PJ, OPTIONS, SpQuantConfig
from snnconvert.methods.spquant.neuron import ChannelGate, SpQuantNeuron, membrane_bits, rounding_map
from snnconvert.methods.spquant.pot import PoTConv2d, PoTLinear
from snnconvert.options import opt
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import DTYPES, SpikingNetwork
from snnconvert.simulate.synapse import SynapseConv2d, SynapseLinear, WeightedSumDecoder


def _thresholds(stats: dict[str, dict[float, torch.Tensor]], names: list[str], p: float) -> dict[str, float]:
    out = {}
    for name in names:
        if name not in stats:
            raise SnnConvertError(f"no activation statistics for {name}: the calibration data is empty")
        theta = float(stats[name][p].max())
        out[name] = theta if theta > 0 else 1.0
    return out


def convert(inputs: ConversionInputs, cfg: SpQuantConfig) -> SpikingNetwork:
    """Coding-table entry point: float graph + calibration data -> SpQuant-SNN (see module docstring)."""
    cfg.validate()
    if inputs.calibration is None:
        raise SnnConvertError(f"SpQuant conversion sets its thresholds from activations: give calibration data "
                              f"({opt('quantize', 'data')})")
    float_gm = inputs.float_model
    check_supported(float_gm, (float_graph_rule("SpQuant"),), stage="SpQuant conversion")
    acts = {n.name: str(n.target) for n in float_gm.graph.nodes if kind_of(float_gm, n) is Kind.ACTIVATION}
    stats = calibration_percentiles(inputs, (float(cfg.percentile),))
    return build(float_gm, _thresholds(stats, list(acts), float(cfg.percentile)), cfg, inputs.calibration)


def build(float_gm: fx.GraphModule, thresholds: dict[str, float], cfg: SpQuantConfig,
          calibration: Any = None) -> SpikingNetwork:
    """Assemble the SNN from per-activation thresholds (real units); with ``calibration`` images
    the layers are calibrated against ``float_gm`` before the gains fold (``cfg.calibrate``)."""
    cfg.validate()
    T = cfg.T
    targets = {n.name: str(n.target) for n in float_gm.graph.nodes}
    gm = copy.deepcopy(float_gm)
    replace_synapses(gm, torch.ones(T, dtype=torch.float64))
    gm.double()
    gain, offset = rounding_map(T, cfg.tau, cfg.precision) if cfg.rounding else (1.0, 0.0)
    plan = {name: (SpQuantNeuron(T, cfg.tau, cfg.reset, cfg.precision, cfg.smoothness, cfg.clip, cfg.spatial,
                                 False, 1, cfg.gate_threshold, input_gain=gain, input_offset=offset,
                                 spatial_scoring=cfg.spatial_scoring),
                   torch.tensor(theta, dtype=torch.float64))
            for name, theta in thresholds.items()}
    layers = insert_neurons(gm, plan)
    rewrite_maxpools(gm)
    recompile_graph(gm)
    encoder, decoder = RepeatEncoder(T), WeightedSumDecoder(T)
    calibration_result = calibrate(gm, encoder, decoder, float_gm, calibration,
                                   cfg.calibrate if calibration is not None else "none",
                                   seconds=cfg.calibrate_seconds, images=cfg.calibrate_images)
    fold_gains(gm)
    dtype = DTYPES[cfg.dtype]
    for node in gm.graph.nodes:  # PoT synapses (or float ones that record their shape)
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(str(node.target))
        if isinstance(mod, SynapseConv2d) and not isinstance(mod, PoTConv2d):
            _set(gm, str(node.target), PoTConv2d.from_synapse(mod, cfg.weight_bits))
        elif isinstance(mod, SynapseLinear) and not isinstance(mod, PoTLinear):
            _set(gm, str(node.target), PoTLinear.from_synapse(mod, cfg.weight_bits))
    gm = gm.to(dtype)
    if cfg.spatial > 0 or cfg.gate:
        _wire(gm, cfg.spatial, cfg.gate, cfg.gate_threshold, 3.0, cfg.gate_rule, cfg.spatial_scoring)

    snn = SpikingNetwork("spquant")
    snn.encoder = encoder
    snn.body = gm
    snn.decoder = decoder.to(dtype)
    snn.info = {
        "coding": "spquant", "T": T, "frames": T, "latency": T, "latency_terms": f"T = {T}",
        "tau": cfg.tau, "reset": cfg.reset, "precision": cfg.precision,
        "membrane_bits": membrane_bits(cfg.precision), "weight_bits": cfg.weight_bits,
        "spatial": cfg.spatial, "gate": cfg.gate, "gate_threshold": cfg.gate_threshold, "gate_rule": cfg.gate_rule,
        "spatial_scoring": cfg.spatial_scoring, "clip": cfg.clip,
        "percentile": cfg.percentile, "input_map": [gain, offset],
        "e_add_pj": cfg.e_add_pj, "e_mul_pj": cfg.e_mul_pj, "dtype": cfg.dtype,
        "neuron_layers": layers,
        "thresholds": {targets[name]: theta for name, theta in thresholds.items()},
    }
    if calibration is not None and cfg.calibrate != "none":
        snn.info["calibration"] = calibration_result.as_info()
    return snn


def add_pruning(snn: SpikingNetwork, spatial: float = 0.35, gate: bool = True,
                gate_threshold: float = 0.47, gate_bias: float = 3.0, gate_rule: str = "eq23",
                spatial_scoring: str = "step") -> SpikingNetwork:
    """A copy of a spquant SNN (e.g. a fine-tuned Quant-SNN) with spatial pruning and channel
    gates (fresh: every channel open; ``gate_bias`` sets the keep-skip rule's keep probability
    sigmoid(gate_bias)) on its conv-fed neuron layers; ``snn`` is not changed."""
    if snn.coding != "spquant" or not isinstance(snn.body, fx.GraphModule):
        raise SnnConvertError("add_pruning takes an SNN of the spquant coding")
    SpQuantConfig(spatial=spatial, gate=gate, gate_threshold=gate_threshold, gate_rule=gate_rule,
                  spatial_scoring=spatial_scoring).validate()
    out = copy.deepcopy(snn)
    gm = out.body
    _wire(gm, spatial, gate, gate_threshold, gate_bias, gate_rule, spatial_scoring)
    out.info = {**out.info, "spatial": float(spatial), "gate": bool(gate), "gate_threshold": float(gate_threshold),
                "gate_rule": gate_rule, "spatial_scoring": spatial_scoring}
    return out


def _wire(gm: fx.GraphModule, spatial: float, gate: bool, gate_threshold: float, gate_bias: float,
          gate_rule: str = "eq23", spatial_scoring: str = "step") -> None:
    """Set up pruning on every neuron layer fed by one PoT convolution (in place): the neuron gets
    the spatial share and reads the conv's output as its prior (kwarg ``conv_out``): at every step
    (``spatial_scoring`` step; the conv computes every position), or its first step only (first;
    the conv then skips the pruned positions after the first step); with ``gate`` and a
    previous neuron layer P feeding the conv, a :class:`ChannelGate` (the neuron's ``gate``,
    C_P -> C channels) is called on P's input frames (P's membrane prior, eq 23) before the conv,
    and its mask goes to the conv (which computes only the kept channels) and to the neuron."""
    from snnconvert.neurons.trainable import _node_channels

    dtype = next((p.dtype for p in gm.parameters()), torch.float32)
    by_target = {str(n.target): n for n in gm.graph.nodes if n.op == "call_module"}
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(str(node.target)), SpQuantNeuron):
            continue
        convs = _producers(gm, node, (SynapseConv2d,))
        if not convs:
            continue
        neuron = gm.get_submodule(str(node.target))
        neuron.spatial, neuron.spatial_scoring = float(spatial), spatial_scoring
        conv = gm.get_submodule(convs[0])
        if len(convs) != 1 or not isinstance(conv, PoTConv2d) or not conv.sparse_capable() \
                or "conv_out" in node.kwargs:
            continue  # unwired: the neuron prunes from its own first step (the conv computes densely)
        conv_node = by_target[convs[0]]
        if spatial_scoring == "first":  # the positions are known after step 1: the conv skips them later
            conv.prune_spatial, conv.prune_precision = float(spatial), neuron.precision
        kwargs: dict[str, Any] = {"conv_out": conv_node}
        channels = _node_channels(gm, node.args[0]) if node.args else None
        prev = _producers(gm, conv_node, (SpQuantNeuron,))
        prev_in = by_target[prev[0]].args[0] if len(prev) == 1 and by_target[prev[0]].args else None
        prev_channels = _node_channels(gm, prev_in) if isinstance(prev_in, fx.Node) else None
        if gate and channels and prev_channels:
            neuron.gate_enabled, neuron.channels = True, int(channels)
            neuron.gate_in_channels, neuron.gate_threshold = int(prev_channels), float(gate_threshold)
            neuron.gate_rule = gate_rule
            neuron.gate = ChannelGate(int(prev_channels), gate_threshold, bias=gate_bias, out_channels=int(channels),
                                      T=neuron.T, precision=neuron.precision, rule=gate_rule).to(dtype)
            with gm.graph.inserting_before(conv_node):
                g = gm.graph.call_module(f"{node.target}.gate", (prev_in,))
            conv_node.args = (conv_node.args[0], g)
            kwargs["channel_mask"] = g
        node.kwargs = {**node.kwargs, **kwargs}
    recompile_graph(gm)


def _set(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, leaf = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def _producers(gm: fx.GraphModule, node: fx.Node, kinds: tuple[type, ...]) -> list[str]:
    """Module targets of type ``kinds`` reached from ``node``'s inputs through ops that are neither
    synapses nor neurons (adds, gains, pads, pools)."""
    found, stack, seen = [], [a for a in node.all_input_nodes], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module":
            mod = gm.get_submodule(str(n.target))
            if isinstance(mod, kinds):
                found.append(str(n.target))
                continue
            if isinstance(mod, (SynapseConv2d, SynapseLinear, SpQuantNeuron, ChannelGate)):
                continue
        stack.extend(n.all_input_nodes)
    return found


def _consumer(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """The first neuron layer ``node``'s output reaches through non-synapse ops."""
    stack, seen = list(node.users), set()
    while stack:
        n = stack.pop(0)
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module":
            mod = gm.get_submodule(str(n.target))
            if isinstance(mod, SpQuantNeuron):
                return str(n.target)
            if isinstance(mod, (SynapseConv2d, SynapseLinear, ChannelGate)):
                continue
        stack.extend(n.users)
    return None


# ---------------------------------------------------------------------------- reports (eqs 28-31)


def layer_table(snn: SpikingNetwork) -> list[dict[str, Any]]:
    """Per synapse layer (graph order), after a recorded evaluation: weights, weight bits, output
    shape (C, H, W), kernel k, the consuming neuron layer's S_c / S_p / active share and the
    input events per sample from the producing neuron layers (None: analog input)."""
    gm = snn.body
    if not isinstance(gm, fx.GraphModule):
        return []
    rows = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(str(node.target))
        if not isinstance(mod, (PoTConv2d, PoTLinear)):
            continue
        c, h, w = (int(v) for v in mod.out_shape.tolist())
        if c == 0:
            return []  # never ran
        k = mod.kernel_size[0] * mod.kernel_size[1] if isinstance(mod, PoTConv2d) else 1
        fan_in = (mod.in_channels // mod.groups) * k if isinstance(mod, PoTConv2d) else mod.in_features
        consumer = _consumer(gm, node)
        work = gm.get_submodule(consumer).work() if consumer else None
        samples = max(float(gm.get_submodule(consumer).samples), 1.0) if consumer else 1.0
        macs_run = ([float(v) / samples for v in mod.mac_work.tolist()]
                    if isinstance(mod, PoTConv2d) and float(mod.mac_work[1]) > 0 else None)
        producers = _producers(gm, node, (SpQuantNeuron,))
        events = None
        in_elems = None
        if producers:
            neurons = [gm.get_submodule(p) for p in producers]
            events = float(sum(float(n.events_per_step.sum()) / max(float(n.samples), 1.0) for n in neurons))
            in_elems = float(max(float(n.neurons) for n in neurons))
        rows.append({
            "layer": str(node.target), "weights": int(mod.weight.numel()),
            "weight_bits": mod.bits if mod.bits is not None else 32, "C": c, "H": h, "W": w, "k2": k,
            "macs": float(c * h * w * fan_in), "consumer": consumer,
            "S_c": work["channel_sparsity"] if work else 0.0, "S_p": work["spatial_sparsity"] if work else 0.0,
            "active_share": work["active_share"] if work else 1.0, "input_events": events,
            "input_channels_used": (float(mod.channel_work[1] / mod.channel_work[0])
                                    if isinstance(mod, PoTConv2d) and float(mod.channel_work[0]) > 0 else 1.0),
            "input_elements": in_elems,
            # conv MACs per image the simulator executed / the kept outputs need (dense: every output)
            "macs_executed": macs_run[0] if macs_run else None, "macs_kept": macs_run[2] if macs_run else None,
        })
    return rows


def memory(snn: SpikingNetwork) -> dict[str, Any] | None:
    """Eqs 28-29: M_t = w_p N_w + u_p N_f + u_s N_f (bits; MB = 10^6 bytes), N_f the neurons of
    every neuron layer per sample, u_s = 1 bit."""
    rows = layer_table(snn)
    if not rows:
        return None
    u_p = float(snn.info.get("membrane_bits", 32.0))
    weight_bits = sum(r["weights"] * r["weight_bits"] for r in rows)
    n_w = sum(r["weights"] for r in rows)
    n_f = sum(float(n.neurons) for n in snn.neurons().values() if isinstance(n, SpQuantNeuron))
    mb = 8e6
    w_p = max(r["weight_bits"] for r in rows)
    return {"N_w": n_w, "N_f": n_f, "w_p": w_p, "u_p": u_p, "u_s": 1,
            "weight_mb": weight_bits / mb, "membrane_mb": u_p * n_f / mb, "spike_mb": n_f / mb,
            "total_mb": (weight_bits + u_p * n_f + n_f) / mb,
            "dense_fp32_mb": (32 * n_w + 32 * n_f + n_f) / mb}


def eq30(rows: list[dict[str, Any]], T: int, dense: bool = False) -> float:
    """Eq 30 summed over layers, per image (B = 1)."""
    total = 0.0
    for r in rows:
        sc, sp = (0.0, 0.0) if dense else (r["S_c"], r["S_p"])
        chw = r["C"] * (1 - sc) * r["H"] * r["W"]
        total += 2 * chw * r["k2"] + T * chw * (1 - sp)
    return total


def flops(snn: SpikingNetwork) -> dict[str, Any] | None:
    """Eq 30 with the measured S_c / S_p and its reduction against the same network dense, and
    the work the simulator did per image: synaptic operations (input events x fan-out x the
    consumer's active share; the first layer's analog input: dense MACs per step) plus the
    membrane updates of the neuron layers, against the dense count (every MAC and every neuron
    update at every step)."""
    rows = layer_table(snn)
    if not rows:
        return None
    T = int(snn.info.get("T", 1))
    sparse, dense = eq30(rows, T), eq30(rows, T, dense=True)
    syn_done = syn_dense = 0.0
    layers = []
    for r in rows:
        syn_dense += r["macs"] * T
        if r["input_events"] is None:
            done = r["macs"] * T * r["active_share"]
        else:
            fanout = r["macs"] / max(r["input_elements"], 1.0)
            done = r["input_events"] * fanout * r["active_share"]
        syn_done += done
        layers.append({**r, "eq30": eq30([r], T), "eq30_dense": eq30([r], T, dense=True), "synaptic_ops": done})
    neurons = [n.work() for n in snn.neurons().values() if isinstance(n, SpQuantNeuron)]
    upd = sum(w["membrane_updates"] for w in neurons)
    upd_dense = sum(w["dense_updates"] for w in neurons)
    kept = [r["macs_kept"] for r in rows if r["macs_kept"] is not None]
    run = [r["macs_executed"] for r in rows if r["macs_executed"] is not None]
    return {"T": T, "eq30_flops": sparse, "eq30_dense_flops": dense,
            "conv_macs_kept": sum(kept) if kept else None, "conv_macs_executed": sum(run) if run else None,
            "eq30_reduction": dense / sparse if sparse > 0 else float("inf"),
            "synaptic_ops": syn_done, "membrane_updates": upd, "ops_done": syn_done + upd,
            "dense_ops": syn_dense + upd_dense,
            "ops_reduction": (syn_dense + upd_dense) / max(syn_done + upd, 1e-12), "layers": layers}


def energy(snn: SpikingNetwork) -> dict[str, Any] | None:
    """Eq 31 per image: E_mul and E_add on C(1 - S_c) W H k^2, plus E_add on the T C (1 - S_c) W H
    (1 - S_p) membrane accumulations."""
    rows = layer_table(snn)
    if not rows:
        return None
    T = int(snn.info.get("T", 1))
    e_add = float(snn.info.get("e_add_pj", E_ADD_PJ))
    e_mul = float(snn.info.get("e_mul_pj", E_MUL_PJ))
    conv = sum(r["C"] * (1 - r["S_c"]) * r["H"] * r["W"] * r["k2"] for r in rows)
    acc = sum(T * r["C"] * (1 - r["S_c"]) * r["H"] * r["W"] * (1 - r["S_p"]) for r in rows)
    e_mul_uj, e_add_uj = e_mul * conv / 1e6, (e_add * (conv + acc)) / 1e6
    return {"e_add_pj": e_add, "e_mul_pj": e_mul, "E_mul_uj": e_mul_uj, "E_add_uj": e_add_uj,
            "E_total_uj": e_mul_uj + e_add_uj}


def memory_tables(d: dict[str, Any]) -> list[ReportTable]:
    rows = [("weights (w_p x N_w)", f"{d['w_p']}-bit x {d['N_w']:,}", f"{d['weight_mb']:.4f}"),
            ("membrane (u_p x N_f)", f"{d['u_p']:.2f}-bit x {int(d['N_f']):,}", f"{d['membrane_mb']:.4f}"),
            ("spikes (u_s x N_f)", f"1-bit x {int(d['N_f']):,}", f"{d['spike_mb']:.4f}"),
            ("total M_t (eq 28)", "", f"{d['total_mb']:.4f}"),
            ("32-bit weights and membrane", "", f"{d['dense_fp32_mb']:.4f}")]
    return [ReportTable("memory per inference (MB = 1e6 bytes; eqs 28-29)", ("part", "precision x count", "MB"), rows)]


def flops_tables(d: dict[str, Any]) -> list[ReportTable]:
    layer_rows = [(r["layer"], f"{r['C']}x{r['H']}x{r['W']}", f"{100 * r['S_c']:.1f}%", f"{100 * r['S_p']:.1f}%",
                   f"{r['eq30']:.3g}", f"{r['synaptic_ops']:.3g}") for r in d["layers"]]
    summary = [("eq 30 FLOPs (sparse)", f"{d['eq30_flops']:.4g}"),
               ("eq 30 FLOPs (dense)", f"{d['eq30_dense_flops']:.4g}"),
               ("eq 30 reduction", f"{d['eq30_reduction']:.2f}x"),
               ("ops done (synaptic + membrane)", f"{d['ops_done']:.4g}"),
               ("dense ops (every MAC, every step)", f"{d['dense_ops']:.4g}"),
               ("ops reduction (done vs dense)", f"{d['ops_reduction']:.2f}x")]
    if d.get("conv_macs_kept") is not None:
        summary += [("conv MACs of the kept outputs", f"{d['conv_macs_kept']:.4g}"),
                    ("conv MACs the simulator executed", f"{d['conv_macs_executed']:.4g}")]
    return [ReportTable("FLOPs per image (eq 30) and work done", ("quantity", "value"), summary),
            ReportTable("per layer", ("layer", "C x H x W", "S_c", "S_p", "eq 30", "synaptic ops done"), layer_rows)]


def energy_tables(d: dict[str, Any]) -> list[ReportTable]:
    return [ReportTable(f"theoretical energy per image (eq 31; add {d['e_add_pj']:g} pJ, mul {d['e_mul_pj']:g} pJ)",
                        ("E_mul (uJ)", "E_add (uJ)", "E_total (uJ)"),
                        [(f"{d['E_mul_uj']:.4f}", f"{d['E_add_uj']:.4f}", f"{d['E_total_uj']:.4f}")])]


def _flops_plot(d: dict[str, Any], directory: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from snnconvert.atomic import write_atomically

    names = [r["layer"] for r in d["layers"]]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [r["eq30_dense"] for r in d["layers"]], width=0.4, label="dense")
    ax.bar([i + 0.2 for i in x], [r["eq30"] for r in d["layers"]], width=0.4, label="SpQuant (eq 30)")
    ax.set_xticks(list(x), names, rotation=90, fontsize=6)
    ax.set_ylabel("FLOPs per image")
    ax.set_title(f"{title}: eq 30 reduction {d['eq30_reduction']:.2f}x")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(directory) / "spquant_flops.png"
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomically(path, lambda handle: handle.write(buf.getvalue()))
    return [path]


def membrane_updates(snn: SpikingNetwork) -> dict[str, float]:
    """State operations for the OPF report: membrane updates actually done (masked ones skipped)."""
    return {name: n.work()["membrane_updates"] for name, n in snn.neurons().items() if isinstance(n, SpQuantNeuron)}


def summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    wb = info.get("weight_bits")
    return [("T (time steps)", str(info["T"])), ("neuron", f"LIF tau={info['tau']:g}, {info['reset']} reset"),
            ("membrane", f"{info['precision']} ({info['membrane_bits']:.2f} bits)"),
            ("weights", f"{wb}-bit power of two" if wb else "float"),
            ("pruning", f"spatial {100 * info['spatial']:.0f}%, channel gate "
                        f"{'on (theta ' + format(info['gate_threshold'], 'g') + ')' if info['gate'] else 'off'}"),
            *calibration_rows(info)]


CODING = register_coding(Coding.of(
    OPTIONS,
    convert=convert,
    needs_calibration=lambda _cfg: True,
    summary_rows=summary_rows,
    state_ops=membrane_updates,
    sweep_keys=("T", "precision", "spatial", "gate_threshold", "clip", "weight_bits"),
    reports=(
        CodingReport("memory", "total memory M_t: weights, membrane and spikes (eqs 28-29)", memory, memory_tables),
        CodingReport("flops", "FLOPs with sparsity (eq 30), reduction vs dense, ops done", flops, flops_tables,
                     _flops_plot),
        CodingReport("energy", "theoretical energy (eq 31, 7 nm FP16 add / multiply of BitNet table 2)", energy,
                     energy_tables),
    ),
))

__all__ = ["CODING", "SpQuantConfig", "add_pruning", "build", "convert", "energy", "eq30", "flops", "layer_table",
           "memory"]
