"""Multi-bit spiking coding (adaptive-bit-allocation paper): B_s-bit integer spikes over T steps.

Conversion (neuron dynamics in :mod:`snnconvert.methods.multibit.neuron`, eqs 13-16):

* every ReLU-type activation l becomes a :class:`MultiBitNeuron` with unsigned B_s,l-bit spikes
  (eq 15), T_l steps, ``tau`` (default 1) and threshold = spike amplitude = step size
  ``theta_l = clip_l / (2^B_s,l - 1)``, where ``clip_l`` is the ``percentile``-th percentile of
  the float model's activation on the calibration data (``thresholds="percentile"``); with
  ``thresholds="quantized"`` ``theta_l`` is the quantized model's activation scale, allowed only
  when its activation bits equal B_s,l (``"auto"``: the scales when the quantized weights are
  used and every bit width matches, else the percentiles). ``theta`` stays a (frozen) parameter
  of each neuron, so fine-tuning can learn it; the synapses keep the ANN's weights (eq 13);
* weights: the quantized model's dequantized weights when it is given (``weights="auto"``; its
  weight bits are B_w), else the float weights (B_w = 32);
* input: with ``encode_input`` (default) a layer of multi-bit input neurons (paper §5.2.6) turns
  the image into spikes; the folded normalization's border pad is applied before it, so the
  first synapse receives only spikes. With ``signed_first`` this is the bidirectional neuron of
  eq 16 (q = -(2^(B-1)-1)..2^(B-1)-1) on the centred image ``x - mean``, the mean's contribution
  moving into the first layer's bias (exact; no centring when the first layer zero-pads the raw
  image itself). Its threshold is the percentile of ``|x - mean|`` over the calibration images
  divided by q_max. Without ``encode_input`` the first synapse receives the analog image once
  and the first neurons repeat its current;
* temporal squeezing (eq 13): a neuron whose input ran T_in != T_l steps averages its input
  current (``squeeze="changes"``); where branches with different T meet (residual add, concat) a
  :class:`TemporalSqueeze` averages the branches with fewer frames and repeats the mean up to
  the largest T. ``squeeze="always"`` applies eq 13 literally at every neuron layer;
* max-pooling acts on the spike frames step by step (exact at T = 1); biases are added at every
  step; the decoder is the mean of the classifier's output frames (it never fires).

With T = 1, B_s equal to the quantized model's activation bits and its scales as thresholds, the
SNN computes the quantized ANN (round half up in both; float summation order aside).

Figures (bit budget, S-ACE, NS-ACE, model size): :mod:`snnconvert.methods.multibit.metrics`.

Latency: all layers run step-synchronously, so the output is complete after T steps; every
squeeze on the critical path waits for the last of its T_in input frames (+T_in - 1 steps).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.utils.data import DataLoader

from snnconvert.calibrate import CalibrationResult, calibrate
from snnconvert.calibrate import summary_rows as calibration_rows
from snnconvert.codings.base import Coding, CodingReport, ConversionInputs
from snnconvert.codings.common import calibration_percentiles, insert_neurons, replace_synapses, take_input_pad
from snnconvert.codings.gains import fold_gains
from snnconvert.codings.registry import register_coding
from snnconvert.data.input_spec import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.graph.latency import path_latency
from snnconvert.graph.modules import PadWithValues
from snnconvert.graph.ops import Kind, kind_of, module_of
from snnconvert.graph.passes import recompile_graph, unique_name
from snnconvert.methods.multibit.config import OPTIONS, Config, MultiBitConfig
from snnconvert.methods.multibit.metrics import (
    _SYNAPSES,
    ANALOG_BITS,
    ENCODER,
    FLOAT_BITS,
    allocation,
    allocation_plot,
    allocation_tables,
    analyse,
    bit_tables,
    metrics,
    state_ops,
)
from snnconvert.methods.multibit.neuron import MultiBitEncoder, MultiBitNeuron, TemporalSqueeze, spike_range
from snnconvert.options import opt
from snnconvert.quantize.histogram import RangeDoublingHistogram
from snnconvert.quantize.modules import ActQuant, QConv2d, QLinear
from snnconvert.quantize.quantizer import INPUT_QUANT
from snnconvert.simulate.network import DTYPES as _DTYPES
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import SynapseAffine, SynapseConv2d, WeightedSumDecoder


def _per_layer(value: int | list[int], names: list[str], flag: str) -> list[int]:
    if isinstance(value, int):
        return [value] * len(names)
    if len(value) != len(names):
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise SnnConvertError(
            f"{flag} lists {len(value)} values but the network has {len(names)} neuron layers ({shown})")
    return list(value)


# ------------------------------------------------------------------------------------ input stage


def _remove_input_quant(gm: fx.GraphModule) -> ActQuant | None:
    node = next((n for n in gm.graph.nodes if n.op == "call_module" and n.target == INPUT_QUANT), None)
    if node is None:
        return None
    quant = gm.get_submodule(INPUT_QUANT)
    node.replace_all_uses_with(node.args[0])
    gm.graph.erase_node(node)
    return quant


def _center_input(gm: fx.GraphModule, spec: InputSpec, pad: PadWithValues | None) -> Tensor:
    """Centre for the signed input neuron; the first layers' biases absorb ``W * center``. Zero
    when that is not exact (a first layer that is not an unpadded conv or a channel affine)."""
    channels = spec.channels
    if pad is not None:
        center = pad.values.double()
    elif spec.mean is not None:
        center = torch.tensor(spec.mean, dtype=torch.float64)
    else:
        center = torch.full((channels,), 0.5, dtype=torch.float64)
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    layers = [module_of(gm, u) for u in placeholder.users]

    def exact(m: nn.Module | None) -> bool:
        if isinstance(m, SynapseConv2d):
            return m.groups == 1 and m.in_channels == center.numel() and all(p == 0 for p in m.padding)
        return isinstance(m, SynapseAffine) and m.scale.numel() == center.numel()

    if not layers or not all(exact(m) for m in layers):
        return torch.zeros(channels, dtype=torch.float64)
    with torch.no_grad():
        for m in layers:
            if isinstance(m, SynapseConv2d):
                shift = (m.weight.double() * center.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
                if m.bias is None:
                    m.bias = nn.Parameter(torch.zeros_like(shift))
                m.bias.add_(shift.to(m.bias.dtype))
            else:
                m.shift.add_((m.scale.double() * center).to(m.shift.dtype))
    return center


# ------------------------------------------------------------------------------------ thresholds


def _clip_to_step(clip: Tensor, fallback: Tensor, qmax: int) -> Tensor:
    clip = clip.double().reshape(-1)
    clip = torch.where(clip > 0, clip, fallback.double().reshape(-1).expand_as(clip))
    return torch.where(clip > 0, clip, torch.ones_like(clip)) / qmax


@torch.no_grad()
def _centered_clip(loader: DataLoader, center: Tensor, percentile: float, per_channel: bool) -> Tensor:
    hist: RangeDoublingHistogram | None = None
    for images, _labels in loader:
        x = (images.double() - center.view(1, -1, 1, 1)).abs()
        if hist is None:
            hist = RangeDoublingHistogram(x.shape[1] if per_channel else 1)
        hist.update(x)
    if hist is None:
        raise SnnConvertError("multi-bit conversion: the calibration split is empty")
    return hist.clip("percentile", percentile, 8)


def _quantizer_of(gm: fx.GraphModule, name: str) -> ActQuant | None:
    node = next((n for n in gm.graph.nodes if n.name == name), None)
    users = list(node.users) if node is not None else []
    mod = module_of(gm, users[0]) if len(users) == 1 else None
    return mod if isinstance(mod, ActQuant) else None


def _thresholds(inputs: ConversionInputs, cfg: MultiBitConfig, acts: list[fx.Node], bits: dict[str, int],
                input_quant: ActQuant | None, center: Tensor | None,
                quantized_weights: bool) -> tuple[dict[str, Tensor], str]:
    """Step size theta per neuron layer (name -> tensor) and where they came from."""
    def usable(quant: ActQuant | None, layer: str) -> Tensor | None:
        ok = quant is not None and quant.bits == bits[layer] and not bool(quant.zero_point.any())
        return quant.scale.detach().double().clone() if ok else None

    scales: dict[str, Tensor | None] = {}
    if inputs.quantized is not None:
        for node in acts:
            scales[node.target] = usable(_quantizer_of(inputs.quantized, node.name), node.target)
        if ENCODER in bits and center is None:
            scales[ENCODER] = usable(input_quant, ENCODER)
    matched = bool(scales) and all(v is not None for v in scales.values())
    source = cfg.thresholds
    if source == "quantized":
        if inputs.quantized is None:
            raise SnnConvertError("thresholds=quantized needs a quantized model (run `snnconvert quantize`)")
        if not matched:
            bad = next(k for k, v in scales.items() if v is None)
            raise SnnConvertError(
                f"thresholds=quantized: layer {bad} has no {bits[bad]}-bit activation quantizer to take its "
                f"scale from; use {opt(MultiBitConfig, 'bits_spike')} equal to the quantized bits or "
                f"{opt(MultiBitConfig, 'thresholds')} percentile")
    elif source == "auto":
        source = "quantized" if matched and quantized_weights else "percentile"
    result: dict[str, Tensor] = {}
    needs_data = source == "percentile" or center is not None
    if needs_data and inputs.calibration is None:
        raise SnnConvertError(f"multi-bit conversion needs calibration data to set its thresholds "
                              f"({opt('quantize', 'data')})")
    p = float(cfg.percentile)
    if source == "percentile":
        stats = calibration_percentiles(inputs, (p, 100.0), per_channel=cfg.per_channel)
        float_acts = [n.name for n in inputs.float_model.graph.nodes
                      if kind_of(inputs.float_model, n) is Kind.ACTIVATION]
        names = [n.name for n in acts]
        if not all(n in stats for n in names):
            if len(float_acts) != len(names):
                raise SnnConvertError("multi-bit: the float and quantized models differ in activations")
            names = float_acts
        for node, key in zip(acts, names, strict=True):
            qmax = spike_range(bits[node.target], False)[1]
            result[node.target] = _clip_to_step(stats[key][p], stats[key][100.0], qmax)
        if ENCODER in bits and center is None:
            qmax = spike_range(bits[ENCODER], False)[1]
            result[ENCODER] = _clip_to_step(stats["input"][p], stats["input"][100.0], qmax)
    else:
        result = {k: v for k, v in scales.items() if v is not None}
    if center is not None:
        clip = _centered_clip(inputs.calibration, center, p, cfg.per_channel)
        result[ENCODER] = _clip_to_step(clip, clip, spike_range(bits[ENCODER], True)[1])
    return result, source


# ------------------------------------------------------------------------------------ frames


def _match_frames(gm: fx.GraphModule, input_frames: int) -> dict[str, int]:
    """Set every neuron's ``steps_in``, put a :class:`TemporalSqueeze` where inputs with different
    frame counts meet, size every synapse's per-frame bias gains. Returns frames per node."""
    frames: dict[str, int] = {}
    for node in list(gm.graph.nodes):
        inputs = [i for i in node.all_input_nodes if i.name in frames]
        if node.op == "placeholder":
            frames[node.name] = input_frames
            continue
        if not inputs or kind_of(gm, node) is Kind.SHAPE:
            continue
        mod = module_of(gm, node)
        if isinstance(mod, MultiBitNeuron):
            mod.steps_in = frames[inputs[0].name]
            frames[node.name] = mod.steps_out
            continue
        target = max(frames[i.name] for i in inputs)
        for i in inputs:
            if frames[i.name] != target:
                name = unique_name(gm, f"{node.name}_squeeze")
                gm.add_submodule(name, TemporalSqueeze(frames[i.name], target))
                with gm.graph.inserting_before(node):
                    squeezed = gm.graph.call_module(name, (i,))
                node.replace_input_with(i, squeezed)
                frames[squeezed.name] = target
        frames[node.name] = target
        if isinstance(mod, _SYNAPSES):
            mod.frame_bias_gain = torch.ones(target, dtype=torch.float64)
    recompile_graph(gm)
    return frames


def _waits(mod: nn.Module | None) -> int:
    """Extra steps a layer waits for its input frames before it can emit (squeezing)."""
    if isinstance(mod, TemporalSqueeze) or (isinstance(mod, MultiBitNeuron) and mod.squeezes):
        return max(mod.steps_in - 1, 0)
    return 0


def _latency(gm: fx.GraphModule, output_frames: int) -> tuple[int, int]:
    """(steps until the output is complete, steps added by squeezes on the critical path)."""
    waited = path_latency(gm, lambda _node, mod: _waits(mod)).output_delay
    return waited + output_frames, waited


# ------------------------------------------------------------------------------------ conversion


def _weight_bits(gm: fx.GraphModule) -> dict[str, int]:
    bits = {}
    for node in gm.graph.nodes:
        mod = module_of(gm, node)
        if isinstance(mod, (QConv2d, QLinear)) and mod.quantize_weights:
            bits[node.target] = int(mod.w_bits)
    return bits


def convert(inputs: ConversionInputs, cfg: MultiBitConfig) -> SpikingNetwork:
    """Coding-table entry point: build the multi-bit SNN (see the module docstring)."""
    cfg.validate()
    if cfg.weights == "quantized" and inputs.quantized is None:
        raise SnnConvertError("weights=quantized needs a quantized model (run `snnconvert quantize` first)")
    quantized_weights = inputs.quantized is not None and cfg.weights != "float"
    base = inputs.quantized if quantized_weights else inputs.float_model
    gm = copy.deepcopy(base)  # float64 after the synapses are built (no float64 copy of the ANN)
    acts = [n for n in gm.graph.nodes if kind_of(gm, n) is Kind.ACTIVATION]
    names = ([ENCODER] if cfg.encode_input else []) + [n.target for n in acts]
    steps = dict(zip(names, _per_layer(cfg.steps(), names, "--T"), strict=True))
    bits = dict(zip(names, _per_layer(cfg.spike_bits(), names, "--bits-spike"), strict=True))
    w_bits = _weight_bits(gm)

    input_quant = _remove_input_quant(gm)
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    pad = take_input_pad(gm, placeholder, strict=False) if cfg.encode_input else None
    replace_synapses(gm, torch.ones(1, dtype=torch.float64))
    gm.double()
    center = _center_input(gm, inputs.input_spec, pad) if cfg.signed_first else None
    thresholds, source = _thresholds(inputs, cfg, acts, bits, input_quant, center, quantized_weights)

    plan = {}
    for node in acts:
        theta = thresholds[node.target]
        neuron = MultiBitNeuron(steps[node.target], steps[node.target], bits[node.target], tau=cfg.tau,
                                squeeze=cfg.squeeze == "always", channels=theta.numel()).double()
        neuron.threshold.data.copy_(theta)
        plan[node.name] = (neuron, 1.0)
    insert_neurons(gm, plan)
    recompile_graph(gm)
    encoder = _encoder(cfg, inputs.input_spec, steps, bits, thresholds, center, pad)
    frames = _match_frames(gm, steps[ENCODER] if cfg.encode_input else 1)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    decoder = WeightedSumDecoder(frames[output.all_input_nodes[0].name]).double()
    exact = source == "quantized"  # the SNN computes the quantized ANN: nothing to calibrate
    calibration = calibrate(gm, encoder, decoder, inputs.float_model, inputs.calibration,
                            cfg.calibrate if inputs.calibration is not None and not exact else "none",
                            seconds=cfg.calibrate_seconds, images=cfg.calibrate_images)
    if exact and cfg.calibrate != "none":
        calibration = CalibrationResult(cfg.calibrate, skipped=["exact: the thresholds are the quantized ANN's "
                                                                "scales"])
    fold_gains(gm)  # folds the gains insert_neurons put around every neuron (unit ones unless calibrated)
    refitted = [] if calibration.reverted else calibration.refitted
    for name in refitted:  # solved weights are off the quantized grid: counted as floats
        w_bits.pop(name, None)
    out_frames = decoder.steps

    snn = SpikingNetwork("multibit")
    snn.encoder, snn.body = encoder, gm
    snn.decoder = decoder
    latency, squeeze_steps = _latency(gm, out_frames)
    snn.info = {
        "coding": "multibit",
        **_layer_facts([steps[n] for n in names], [bits[n] for n in names], out_frames),
        "latency": latency,
        "latency_terms": _latency_terms([steps[n] for n in names], squeeze_steps),
        "neuron_layers": names,
        "tau": float(cfg.tau),
        "thresholds": source,
        "percentile": float(cfg.percentile) if source == "percentile" or center is not None else None,
        "per_channel": cfg.per_channel,
        "weights": ("quantized" if quantized_weights else "float")
                   + (f" ({len(refitted)} synapses refitted by calibration: float)" if refitted else ""),
        "encode_input": cfg.encode_input,
        "signed_first": cfg.signed_first,
        "input_center": center.tolist() if center is not None else None,
        "squeeze": cfg.squeeze,
        "squeeze_steps": squeeze_steps,
        "float_bits": int(cfg.float_bits),
        **analyse(snn, inputs.input_spec, w_bits),
    }
    if cfg.calibrate != "none":
        snn.info["calibration"] = calibration.as_info()
    w_list = sorted({s["bits_weight"] for s in snn.info["synapses"]})
    snn.info["bits_weight"] = w_list[0] if len(w_list) == 1 else w_list
    return snn.to(_DTYPES[cfg.dtype])


def _encoder(cfg: MultiBitConfig, spec: InputSpec, steps: dict[str, int], bits: dict[str, int],
             thresholds: dict[str, Tensor], center: Tensor | None, pad: PadWithValues | None) -> nn.Module:
    """The input neurons (or, without ``encode_input``, the analog image as one frame)."""
    if not cfg.encode_input:
        return nn.Identity()
    theta = thresholds[ENCODER]
    encoder = MultiBitEncoder(steps[ENCODER], bits[ENCODER], signed=cfg.signed_first, tau=cfg.tau,
                              channels=theta.numel(), in_channels=spec.channels,
                              padding=pad.padding if pad is not None else None).double()
    with torch.no_grad():
        encoder.threshold.copy_(theta)
        if center is not None:
            encoder.center.copy_(center)
        if pad is not None:
            encoder.pad.values.copy_(pad.values)
    return encoder


def _layer_facts(T_list: list[int], B_list: list[int], out_frames: int) -> dict[str, Any]:
    """``T`` and ``bits_spike`` as one number when uniform, else per neuron layer."""
    return {
        "T": T_list[0] if len(set(T_list)) == 1 else T_list,
        "bits_spike": B_list[0] if len(set(B_list)) == 1 else B_list,
        "frames": max(T_list + [out_frames]),
        "T_layers": T_list,
        "bits_spike_layers": B_list,
    }


def _latency_terms(T_list: list[int], squeeze_steps: int) -> str:
    if not T_list:
        return "T = 1"
    text = f"T = {T_list[0]}" if len(set(T_list)) == 1 else f"T = {min(T_list)}..{max(T_list)} per layer"
    return text + (f", squeezes +{squeeze_steps}" if squeeze_steps else "")


def summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("T (time steps)", str(info["T"])), ("spike bits B_s", str(info["bits_spike"])),
            ("weight bits B_w", str(info["bits_weight"])), ("tau", str(info["tau"])),
            ("thresholds", f"{info['thresholds']}" + (f" (p{info['percentile']:g})" if info.get("percentile") else "")),
            ("weights", info["weights"]), ("input", "signed spikes (eq 16)" if info["signed_first"]
                                           else "spikes" if info["encode_input"] else "analog")]
    if info.get("squeeze_steps"):
        rows.append(("squeeze wait on the critical path", f"+{info['squeeze_steps']} steps"))
    return rows + calibration_rows(info)


def _bits_report(snn: SpikingNetwork) -> dict[str, Any]:
    return metrics(snn)


CODING = register_coding(Coding.of(
    OPTIONS,
    convert=convert,
    # the quantized model's scales need no data; "auto" may fall back to percentiles
    needs_calibration=lambda cfg: cfg.thresholds != "quantized" or cfg.signed_first,
    summary_rows=summary_rows,
    state_ops=state_ops,
    sweep_keys=("T", "bits_spike"),
    metrics=metrics,
    reports=(CodingReport("bits", "bit budget, S-ACE, NS-ACE and model size (eqs 7-9)", _bits_report, bit_tables),
             CodingReport("allocation", "learned per-layer W / S / T of adaptive bit allocation (fig 4)",
                          allocation, allocation_tables, allocation_plot)),
    # learnable widths (finetune --adaptive-bits) save and load with the artifact
))

__all__ = ["ANALOG_BITS", "CODING", "FLOAT_BITS", "Config", "MultiBitConfig", "convert", "metrics", "state_ops"]
