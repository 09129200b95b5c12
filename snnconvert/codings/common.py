"""Conversion steps every coding shares: synapses from ANN layers, neurons in place of
activations, calibration statistics, the input pad and max-pooling on spikes."""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, fx, nn

from snnconvert.errors import SnnConvertError
from snnconvert.graph.modules import ChannelAffine, PadWithValues
from snnconvert.graph.ops import Kind, channel_concat_inputs, kind_of, maxpool_params, module_of, traced_shape
from snnconvert.graph.passes import add_module_after, set_module, unique_name
from snnconvert.quantize.modules import QConv2d, QLinear
from snnconvert.simulate.dropout import FrameDropout, frame_dropout
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


@torch.no_grad()
def activation_percentiles(
    model: fx.GraphModule,
    loader,
    percentiles: tuple[float, ...],
    *,
    per_channel: bool = False,
    show_progress: bool = False,
    device: torch.device | None = None,
) -> dict[str, dict[float, Tensor]]:
    """Percentiles of every ReLU-type activation's output of a float graph, in one pass.

    Returns ``{activation node name: {p: value}}`` where ``value`` has one entry (per tensor) or
    one per channel. The input node is included under the name ``"input"`` (its |x| percentiles).
    Used by codings that set firing thresholds from data (rate, M-LIF, multi-bit). The forward
    passes run on ``device`` (a copy of ``model`` moves there); histograms stay on the CPU.
    """
    from snnconvert.progress import track
    from snnconvert.quantize.histogram import RangeDoublingHistogram

    hists: dict[str, RangeDoublingHistogram] = {}
    captured: dict[str, Tensor] = {}
    act_nodes = [n for n in model.graph.nodes if kind_of(model, n) is Kind.ACTIVATION]
    placeholder = next(n for n in model.graph.nodes if n.op == "placeholder")
    device = torch.device("cpu") if device is None else device
    runner = model if device.type == "cpu" else copy.deepcopy(model).to(device)
    interp = _Recorder(runner, {n.name for n in act_nodes} | {placeholder.name}, captured)
    for images, _labels in track(loader, "activation statistics", show=show_progress):
        captured.clear()
        with torch.no_grad():
            interp.run(images.to(device))
        for name, value in captured.items():
            value = value.detach().cpu()
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
    if inputs.calibration is None:
        raise SnnConvertError("this coding sets thresholds from calibration data, and none was given")
    key = ("percentiles", tuple(sorted(percentiles)), per_channel)
    if key not in inputs.statistics:
        inputs.statistics[key] = activation_percentiles(
            inputs.float_model, loader if loader is not None else inputs.calibration, tuple(sorted(percentiles)),
            per_channel=per_channel, show_progress=inputs.show_progress, device=inputs.device)
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


def take_input_pad(gm: fx.GraphModule, source: fx.Node, *, strict: bool) -> PadWithValues | None:
    """Remove the border pad of the folded input normalization that follows ``source`` (the
    input, or its quantizer) and return a copy of it: encoders pad before they encode, so border
    pixels become spike trains like any pixel. Every use of ``source`` must be the same pad;
    otherwise nothing is removed and, with ``strict``, that is an error."""
    users = list(source.users)
    pads = [module_of(gm, u) for u in users]
    if not users or not any(isinstance(p, PadWithValues) for p in pads):
        return None
    first = next(p for p in pads if isinstance(p, PadWithValues))
    same = all(isinstance(p, PadWithValues) and p.padding == first.padding and torch.equal(p.values, first.values)
               for p in pads)
    if not same:
        if strict:
            raise SnnConvertError("this coding supports one border pad on the input; this model's input stage "
                                  "pads differently for different layers")
        return None
    for u in users:
        u.replace_all_uses_with(source)
        gm.graph.erase_node(u)
    return copy.deepcopy(first)


def rewrite_maxpools(gm: fx.GraphModule,
                     make_pool: Callable[[dict[str, Any], nn.Module | None], nn.Module] | None = None,
                     ) -> list[tuple[str | None, str | None]]:
    """Max-pooling on spikes: a positive ``Gain`` in front of a max-pool moves behind it
    (``max(g x) = g max(x)`` for ``g > 0``), so the pool sees the spike frames of the neuron
    before it and the gain can fold into the next synapse. A channel concatenation of such gains
    (an Inception or Fire block's output) moves the same way, as one per-channel gain: the pool
    then takes the concatenated spike frames.

    With ``make_pool`` each pool becomes the module ``make_pool(params, source)`` (named
    ``<node>_neuron``; ``params`` are the pool's kernel, stride, padding, dilation and ceil mode,
    ``source`` the module whose output it now pools),
    otherwise the original op stays. Returns, per pool, the new module's name (or None) and the
    name of the module whose frames it pools when a gain moved (of a concatenation: the last one
    in the graph; or None)."""
    done = []
    for node in list(gm.graph.nodes):
        if kind_of(gm, node) is not Kind.MAXPOOL or not isinstance(node.args[0], fx.Node):
            continue
        src = node.args[0]
        gain = _positive_gain(gm, src)
        parts = [src.args[0]] if gain is not None else None
        if gain is None:
            concatenated = _cat_of_gains(gm, src)
            if concatenated is not None:
                parts, gain = concatenated
        source = src
        if parts is not None and len(parts) == 1:
            source = parts[0]
        elif parts is not None:
            with gm.graph.inserting_before(node):
                source = gm.graph.call_function(torch.cat, (list(parts), 1))
        with gm.graph.inserting_before(node):
            if make_pool is None:
                name = None
                pooled = gm.graph.create_node(node.op, node.target, (source, *node.args[1:]), dict(node.kwargs))
            else:
                params = maxpool_params(gm, node)
                params.pop("return_indices", None)
                name = unique_name(gm, f"{node.name}_neuron")
                gm.add_submodule(name, make_pool(params, _widest(gm, parts) if parts else module_of(gm, source)))
                pooled = gm.graph.call_module(name, (source,))
        out = add_module_after(gm, pooled, Gain.of(gain.clone()), f"{node.name}_gain", replace_uses=False) \
            if gain is not None else pooled
        for made in (pooled, out):  # the pool's shape, for a concatenation of pools further on
            made.meta.update({k: v for k, v in node.meta.items() if k == "tensor_meta"})
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        if parts is not None and len(parts) > 1 and not src.users:  # the concatenation of the scaled frames
            inputs = list(src.all_input_nodes)
            gm.graph.erase_node(src)
            for gain_node in inputs:
                if not gain_node.users:
                    gm.graph.erase_node(gain_node)
        done.append((name, _last_module(gm, parts) if parts else None))
    return done


def _positive_gain(gm: fx.GraphModule, node: fx.Node) -> Tensor | None:
    """The factor of a ``Gain`` node whose every entry is positive (it commutes with a max), else None."""
    module = module_of(gm, node)
    return module.gain if isinstance(module, Gain) and bool((module.gain > 0).all()) else None


def _channels(node: fx.Node) -> int | None:
    shape = traced_shape(node)
    return int(shape[1]) if shape is not None and len(shape) > 1 else None


def _cat_of_gains(gm: fx.GraphModule, node: fx.Node) -> tuple[list[fx.Node], Tensor] | None:
    """``torch.cat([g_1 x_1, ..., g_k x_k], 1)`` with positive gains ``g_i`` (one per tensor or per
    channel): the ``x_i`` and the per-channel gain of the whole, which a max-pool commutes with
    (each channel is one ``x_i``'s); None for anything else."""
    tensors = channel_concat_inputs(node)
    if tensors is None:
        return None
    parts, gains = [], []
    for tensor in tensors:
        gain = _positive_gain(gm, tensor) if isinstance(tensor, fx.Node) else None
        channels = _channels(tensor) if isinstance(tensor, fx.Node) else None
        if gain is None or channels is None or gain.numel() not in (1, channels):
            return None
        parts.append(tensor.args[0])
        gains.append(gain.double().reshape(-1).expand(channels))
    return parts, torch.cat(gains)


def _last_module(gm: fx.GraphModule, nodes: list[fx.Node]) -> str | None:
    """The module target of the node of ``nodes`` that comes last in the graph (None: not a module)."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    last = max(nodes, key=lambda n: order.get(n, -1))
    return str(last.target) if last.op == "call_module" else None


def _widest(gm: fx.GraphModule, nodes: list[fx.Node]) -> nn.Module | None:
    """Of the modules producing ``nodes``, the one with the largest ``qmax`` (the top of the range
    a pool of their outputs can reach), else the last one."""
    modules = [module_of(gm, n) for n in nodes]
    ranged = [m for m in modules if m is not None and hasattr(m, "qmax")]
    if ranged:
        return max(ranged, key=lambda m: float(m.qmax))
    return module_of(gm, nodes[-1])


def float_graph_rule(coding: str) -> Callable[[fx.GraphModule, fx.Node], str | None]:
    """The support rule (:func:`~snnconvert.graph.support.check_supported`) of codings that convert
    the prepared float graph: no batch-norm left, not the quantized graph, no max-pool that
    returns indices."""
    def rule(gm: fx.GraphModule, node: fx.Node) -> str | None:
        kind = kind_of(gm, node)
        if kind is Kind.NORM:
            return "batch-norm left in the graph: convert the prepared float model (snnconvert prepare)"
        if kind is Kind.QUANT:
            return f"{coding} converts the float model, not the quantized one"
        if kind is Kind.MAXPOOL and maxpool_params(gm, node).get("return_indices", False):
            return "max-pooling with indices has no spiking equivalent"
        return None
    return rule


_MOVING_FUNCTIONS = {torch.flatten, torch.reshape, torch.cat, torch.concat, torch.squeeze, torch.unsqueeze,
                     torch.transpose, torch.permute, torch.chunk, torch.split}
_MOVING_METHODS = {"view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze", "transpose", "permute",
                   "chunk", "split"}
# dropout: an identity at inference
_MOVING_MODULES = (nn.Flatten, nn.Identity, nn.ZeroPad2d, nn.Dropout, nn.Dropout2d, FrameDropout)


def _spike_grain(gm: fx.GraphModule, node: Any, grains: dict[str, int], encoder_spikes: bool) -> int:
    """``n`` when every value ``node`` carries is a multiple of ``1/n`` in [-1, 1] (``n`` a power of
    two), 0 when that is not known: spikes of a unit-spike neuron (n = 1), moved, sliced, zero-padded
    or concatenated, or average-pooled over a power-of-two window (n times the window)."""
    if not isinstance(node, fx.Node):
        return 0
    if node.name in grains:
        return grains[node.name]
    grain = 0
    sources = [a for a in node.all_input_nodes]
    module = gm.get_submodule(node.target) if node.op == "call_module" else None
    if node.op == "placeholder":
        grain = 1 if encoder_spikes else 0
    elif module is not None and getattr(module, "unit_spikes", False):
        grain = 1
    elif (isinstance(module, _MOVING_MODULES) or (node.op == "call_method" and node.target in _MOVING_METHODS)
          or (node.op == "call_function" and node.target in _MOVING_FUNCTIONS)
          or (node.op == "call_function" and node.target is torch.nn.functional.pad
              and not node.args[2:] and node.kwargs.get("value", 0) in (0, 0.0)
              and node.kwargs.get("mode", "constant") == "constant")
          or (node.op == "call_function" and node.target is operator.getitem and len(sources) == 1)):
        inner = [_spike_grain(gm, s, grains, encoder_spikes) for s in sources
                 if not (node.op == "call_function" and node.target is operator.getitem and s is not node.args[0])]
        grain = max(inner) if inner and all(inner) else 0
    elif isinstance(module, nn.AvgPool2d) and module.divisor_override is None and sources:
        kernel = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
        area = kernel[0] * kernel[1]
        inner = _spike_grain(gm, sources[0], grains, encoder_spikes)
        grain = inner * area if inner and area & (area - 1) == 0 and not module.ceil_mode else 0
    grains[node.name] = grain
    return grain


def mark_spike_inputs(gm: fx.GraphModule, encoder_spikes: bool) -> int:
    """Set ``spike_inputs`` of every conv / linear synapse of ``gm`` whose input is made of spikes
    (:mod:`snnconvert.simulate.synapse`: such a synapse sums exactly in float32); ``encoder_spikes``:
    the body's input is spikes too. Returns how many synapses were marked (in place)."""
    grains: dict[str, int] = {}
    marked = 0
    for node in gm.graph.nodes:
        module = module_of(gm, node)
        if isinstance(module, (SynapseConv2d, SynapseLinear)) and node.args:
            module.spike_inputs = _spike_grain(gm, node.args[0], grains, encoder_spikes)
            marked += bool(module.spike_inputs)
    return marked


def keep_dropout(body: fx.GraphModule, frames: int) -> int:
    """Turn the ANN's ``nn.Dropout`` / ``nn.Dropout2d`` layers left in ``body`` into
    :class:`FrameDropout` over ``frames`` frames per sample (in place); returns how many."""
    count = 0
    for node in body.graph.nodes:
        module = module_of(body, node)
        new = frame_dropout(module, frames) if module is not None else None
        if new is not None:
            set_module(body, node.target, new)
            count += 1
    return count
