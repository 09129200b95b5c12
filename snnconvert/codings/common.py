"""Conversion steps every coding shares: synapses from ANN layers, latency along the graph."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from snnconvert.graph.modules import ChannelAffine
from snnconvert.graph.ops import Kind, kind_of, module_of
from snnconvert.graph.passes import set_module
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.quantize.modules import QConv2d, QLinear
from snnconvert.simulate.synapse import Gain, SynapseAffine, SynapseConv2d, SynapseLinear


def synapse_from(layer: nn.Module, gains: Tensor) -> nn.Module:
    """The synapse of an ANN layer, in float64, computing with its (dequantized) weights."""
    if isinstance(layer, (QConv2d, QLinear)) and layer.quantize_weights:
        # integer x scale is exact in float64: the same numbers the quantized ANN computes with
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        weight = layer.integer_weight().double() * layer.w_scale.double().view(shape)
    elif isinstance(layer, (nn.Conv2d, nn.Linear)):
        weight = layer.weight.detach().double()
    if isinstance(layer, nn.Conv2d):
        bias = layer.bias.detach().double() if layer.bias is not None else None
        return SynapseConv2d.from_conv(layer, weight, bias, gains).double()
    if isinstance(layer, nn.Linear):
        bias = layer.bias.detach().double() if layer.bias is not None else None
        return SynapseLinear.from_linear(layer, weight, bias, gains).double()
    if isinstance(layer, ChannelAffine):
        syn = SynapseAffine(layer.scale.numel(), gains.numel()).double()  # buffers float64 first
        with torch.no_grad():
            syn.scale.copy_(layer.scale.double())
            syn.shift.copy_(layer.shift.double())
            syn.frame_bias_gain.copy_(gains)
        return syn
    raise TypeError(f"no synapse for {type(layer).__name__}")


def replace_synapses(gm: fx.GraphModule, gains: Tensor) -> None:
    """Swap every conv / linear / channel-affine module of ``gm`` for its synapse (in place)."""
    for node in gm.graph.nodes:
        mod = module_of(gm, node)
        if isinstance(mod, (nn.Conv2d, nn.Linear, ChannelAffine)):
            set_module(gm, node.target, synapse_from(mod, gains))


@dataclass
class PathLatency:
    """Delay (in steps) at which each node's first frame appears, and the critical path."""

    delays: dict[str, int]
    neuron_layers_on_path: int
    output_delay: int
    alignments: list[dict]  # per residual add / concat: delays of its inputs


def path_latency(gm: fx.GraphModule, silent: dict[str, int]) -> PathLatency:
    """Propagate delays through the body: a neuron adds its silent period ``silent[target]``.

    Multi-input ops (residual adds, concatenations) wait for their latest input; the earlier
    branches are delayed to match, which the folded engine does implicitly by aligning frames.
    """
    delays: dict[str, int] = {}
    depth: dict[str, int] = {}
    alignments = []
    for node in gm.graph.nodes:
        inputs = node.all_input_nodes
        d = max((delays[i.name] for i in inputs), default=0)
        n = max((depth[i.name] for i in inputs), default=0)
        mod = module_of(gm, node)
        if isinstance(mod, SpikingNeuron):
            d += silent.get(node.target, 0)
            n += 1
        tensor_inputs = [i for i in inputs if kind_of(gm, i) is not Kind.SHAPE]
        if len({delays[i.name] for i in tensor_inputs}) > 1:
            alignments.append(
                {"node": node.name, "input_delays": {i.name: delays[i.name] for i in tensor_inputs},
                 "added_delay": {i.name: d - delays[i.name] for i in tensor_inputs}}
            )
        delays[node.name] = d
        depth[node.name] = n
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return PathLatency(delays, depth[out.name], delays[out.name], alignments)


def clone_graph(gm: fx.GraphModule) -> fx.GraphModule:
    return copy.deepcopy(gm)


@torch.no_grad()
def activation_percentiles(
    model: fx.GraphModule,
    loader,
    percentiles: tuple[float, ...],
    *,
    per_channel: bool = False,
    show_progress: bool = False,
) -> dict[str, dict[float, Tensor]]:
    """Percentiles of every ReLU-type activation's output of a float graph, in one pass.

    Returns ``{activation node name: {p: value}}`` where ``value`` has one entry (per tensor) or
    one per channel. The input node is included under the name ``"input"`` (its |x| percentiles).
    Used by codings that set firing thresholds from data (rate, M-LIF, multi-bit).
    """
    from snnconvert.progress import track
    from snnconvert.quantize.histogram import RangeDoublingHistogram

    hists: dict[str, RangeDoublingHistogram] = {}
    captured: dict[str, Tensor] = {}
    act_nodes = [n for n in model.graph.nodes if kind_of(model, n) is Kind.ACTIVATION]
    placeholder = next(n for n in model.graph.nodes if n.op == "placeholder")
    interp = _Recorder(model, {n.name for n in act_nodes} | {placeholder.name}, captured)
    for images, _labels in track(loader, "activation statistics", show=show_progress):
        captured.clear()
        interp.run(images)
        for name, value in captured.items():
            channels = value.shape[1] if per_channel and value.dim() > 1 else 1
            if name not in hists:
                hists[name] = RangeDoublingHistogram(channels)
            hists[name].update(value.abs() if name == placeholder.name else value)
    result = {}
    for name, hist in hists.items():
        key = "input" if name == placeholder.name else name
        result[key] = {p: hist.clip("percentile", p, 8).float() for p in percentiles}
    return result


def calibration_percentiles(inputs, percentiles: tuple[float, ...], *, per_channel: bool = False,
                            loader=None) -> dict[str, dict[float, Tensor]]:
    """:func:`activation_percentiles` of ``inputs.float_model`` on ``inputs.calibration`` (or on
    ``loader``, a view of the same images), computed once per set of percentiles and kept in
    ``inputs.statistics`` (sweeps re-convert many times)."""
    from snnconvert.errors import SnnConvertError

    if inputs.calibration is None:
        raise SnnConvertError("this coding sets thresholds from calibration data, and none was given")
    key = ("percentiles", tuple(sorted(percentiles)), per_channel)
    if key not in inputs.statistics:
        inputs.statistics[key] = activation_percentiles(
            inputs.float_model, loader if loader is not None else inputs.calibration, tuple(sorted(percentiles)),
            per_channel=per_channel, show_progress=inputs.show_progress)
    return inputs.statistics[key]


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, names: set[str], out: dict[str, Tensor]) -> None:
        super().__init__(gm)
        self.names, self.out = names, out

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        if n.name in self.names:
            self.out[n.name] = value
        return value


def insert_neurons(gm: fx.GraphModule, neurons: dict[str, tuple[nn.Module, Tensor]]) -> list[str]:
    """Replace ReLU-type activations by spiking neurons (in place).

    ``neurons`` maps an activation node's name to ``(neuron module, scale)``: the neuron takes
    the activation's place (and module name), preceded by ``Gain(1/scale)`` (real values -> the
    neuron's units) and followed by ``Gain(scale)`` (spikes -> real values). An activation
    quantizer right after the activation (quantized graphs) is dropped: the neuron's output
    replaces it. Returns the neuron module names in graph order. Call
    :func:`~snnconvert.codings.gains.fold_gains` afterwards to fold the gains into weights.
    """
    from snnconvert.graph.passes import add_module_after

    names = []
    for node in list(gm.graph.nodes):
        if node.name not in neurons:
            continue
        neuron, scale = neurons[node.name]
        scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1)
        set_module(gm, node.target, neuron)
        before = add_module_after(gm, node.args[0], Gain.of(1.0 / scale), f"{node.name}_in_gain", replace_uses=False)
        node.args = (before,)
        users = list(node.users)
        if len(users) == 1 and kind_of(gm, users[0]) is Kind.QUANT:
            set_module(gm, users[0].target, Gain.of(scale))
        else:
            add_module_after(gm, node, Gain.of(scale), f"{node.name}_out_gain")
        names.append(node.target)
    return names
