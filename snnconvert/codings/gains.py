"""Fold scale factors (``Gain`` nodes) into synaptic weights.

Conversion first writes every change of units explicitly: after a layer's spikes, ``Gain(C)``
turns unit spikes into real values; before a neuron, ``Gain(1/C)`` turns real pre-activations
into that neuron's units. This pass then moves the gains through linear operations and folds
them into the neighbouring synapse, which yields the recomputed weights of SWS eq 18,
``W = W_hat * C_i / C_o``, and leaves an explicit gain only where no weight can absorb it (an
identity shortcut, for example). The network's function is unchanged.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from snnconvert.graph.ops import module_of
from snnconvert.graph.passes import recompile_graph
from snnconvert.simulate.dropout import FrameDropout
from snnconvert.simulate.synapse import Gain, SynapseAffine, SynapseConv2d, SynapseLinear

_ADD = (operator.add, operator.iadd, torch.add)
_CHANNELWISE_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Dropout2d, FrameDropout)  # mask * (g x)
_CHANNELWISE_FUNCTIONS = (F.avg_pool2d, F.adaptive_avg_pool2d)
_SCALAR_FUNCTIONS = (F.pad, torch.flatten, torch.reshape, operator.getitem)
_SCALAR_METHODS = ("view", "reshape", "flatten", "contiguous")


def _gain(gm: fx.GraphModule, node: fx.Node) -> Gain | None:
    mod = module_of(gm, node)
    return mod if isinstance(mod, Gain) else None


def _commutes(gm: fx.GraphModule, node: fx.Node, gain: Gain) -> bool:
    """Whether ``op(g * x) == g * op(x)`` for this single-tensor-input op and gain."""
    mod = module_of(gm, node)
    if mod is not None:
        return isinstance(mod, _CHANNELWISE_MODULES) or (isinstance(mod, nn.Flatten) and gain.gain.numel() == 1)
    tensor_inputs = [a for a in node.all_input_nodes if "tensor_meta" in a.meta or a.op == "placeholder"]
    if len(tensor_inputs) != 1 or node.args[0] is not tensor_inputs[0]:
        return False
    if node.op == "call_function" and node.target in _CHANNELWISE_FUNCTIONS:
        return True
    if gain.gain.numel() != 1:
        return False
    if node.op == "call_function":
        if node.target is F.pad:
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0)
            return not value
        return node.target in _SCALAR_FUNCTIONS
    return node.op == "call_method" and node.target in _SCALAR_METHODS


def _new_gain_node(gm: fx.GraphModule, value: torch.Tensor, source: fx.Node, before: fx.Node) -> fx.Node:
    name, i = "gain", 0
    while hasattr(gm, f"{name}_{i}"):
        i += 1
    gm.add_submodule(f"{name}_{i}", Gain.of(value))
    with gm.graph.inserting_before(before):
        node = gm.graph.call_module(f"{name}_{i}", (source,))
    node.meta = dict(source.meta)
    return node


def _remove(gm: fx.GraphModule, node: fx.Node) -> None:
    node.replace_all_uses_with(node.args[0])
    gm.graph.erase_node(node)


def _scale_out(mod: nn.Module, g: torch.Tensor) -> bool:
    """Fold a gain applied to a synapse's output into its weights and bias."""
    g = g.to(torch.float64)
    if bool((g == 1).all()) and isinstance(mod, (SynapseConv2d, SynapseLinear, SynapseAffine)):
        return True
    with torch.no_grad():
        if isinstance(mod, (SynapseConv2d, SynapseLinear)):
            if g.numel() not in (1, mod.weight.shape[0]):
                return False
            shape = (-1,) + (1,) * (mod.weight.dim() - 1)
            mod.weight.copy_(mod.weight.double() * g.view(shape) if g.numel() > 1 else mod.weight.double() * g)
            if mod.bias is not None:
                mod.bias.copy_(mod.bias.double() * g)
            return True
        if isinstance(mod, SynapseAffine):
            mod.scale.copy_(mod.scale.double() * g)
            mod.shift.copy_(mod.shift.double() * g)
            return True
    return False


def _scale_in(mod: nn.Module, g: torch.Tensor) -> bool:
    """Fold a gain applied to a synapse's input into its weights."""
    g = g.to(torch.float64)
    if bool((g == 1).all()) and isinstance(mod, (SynapseConv2d, SynapseLinear, SynapseAffine)):
        return True
    with torch.no_grad():
        if g.numel() == 1 and isinstance(mod, (SynapseConv2d, SynapseLinear)):
            mod.weight.copy_(mod.weight.double() * g)
            return True
        if isinstance(mod, SynapseConv2d) and mod.groups == 1 and g.numel() == mod.in_channels:
            mod.weight.copy_(mod.weight.double() * g.view(1, -1, 1, 1))
            return True
        if isinstance(mod, SynapseLinear) and g.numel() == mod.in_features:
            mod.weight.copy_(mod.weight.double() * g.view(1, -1))
            return True
        if isinstance(mod, SynapseAffine) and g.numel() in (1, mod.scale.numel()):
            mod.scale.copy_(mod.scale.double() * g)
            return True
    return False


def _broadcastable(a: Gain, b: Gain) -> bool:
    return 1 in (a.gain.numel(), b.gain.numel()) or a.gain.numel() == b.gain.numel()


def _split_shared(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        gain = _gain(gm, node)
        if gain is None or len(node.users) <= 1:
            continue
        for user in list(node.users)[1:]:
            copy_node = _new_gain_node(gm, gain.gain, node.args[0], user)
            user.replace_input_with(node, copy_node)


def _push_backward(gm: fx.GraphModule) -> bool:
    changed = False
    for node in list(gm.graph.nodes):
        gain = _gain(gm, node)
        if gain is None:
            continue
        src = node.args[0]
        if len(src.users) != 1:
            continue
        src_mod = module_of(gm, src)
        src_gain = _gain(gm, src)
        if src_gain is not None and _broadcastable(src_gain, gain):
            src_gain.gain = src_gain.gain.double() * gain.gain.double()
            _remove(gm, node)
        elif src_mod is not None and _scale_out(src_mod, gain.gain):
            _remove(gm, node)
        elif src.op == "call_function" and src.target in _ADD and all(
            isinstance(a, fx.Node) for a in src.args[:2]
        ):
            for arg in src.args[:2]:
                new = _new_gain_node(gm, gain.gain, arg, src)
                src.replace_input_with(arg, new)
            _remove(gm, node)
        elif _commutes(gm, src, gain):
            inp = src.args[0]
            new = _new_gain_node(gm, gain.gain, inp, src)
            src.replace_input_with(inp, new)
            _remove(gm, node)
        else:
            continue
        changed = True
    return changed


def _push_forward(gm: fx.GraphModule) -> bool:
    changed = False
    for node in list(gm.graph.nodes):
        gain = _gain(gm, node)
        if gain is None or len(node.users) != 1:
            continue
        user = next(iter(node.users))
        user_mod = module_of(gm, user)
        user_gain = _gain(gm, user)
        if user_gain is not None and _broadcastable(user_gain, gain):
            user_gain.gain = user_gain.gain.double() * gain.gain.double()
            _remove(gm, node)
        elif user_mod is not None and len(user.all_input_nodes) == 1 and _scale_in(user_mod, gain.gain):
            _remove(gm, node)
        elif _commutes(gm, user, gain) and len(user.users) >= 1:
            # move the gain after the op: op(g*x) -> g*op(x)
            after = next(iter(user.users))
            new = _new_gain_node(gm, gain.gain, user, after)
            user.replace_all_uses_with(new, delete_user_cb=lambda u, new=new: u is not new)
            _remove(gm, node)
        else:
            continue
        changed = True
    return changed


def fold_gains(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold gains into weights wherever the function is unchanged (in place; returns ``gm``)."""
    _split_shared(gm)
    while _push_backward(gm):  # every move goes strictly towards the inputs: terminates
        pass
    _split_shared(gm)  # a gain moved past an op (dropout, pooling) may now feed several users
    while _push_forward(gm):  # every move goes strictly towards the outputs: terminates
        _split_shared(gm)
    for node in list(gm.graph.nodes):
        gain = _gain(gm, node)
        if gain is not None and torch.allclose(gain.gain.double(), torch.ones(1, dtype=torch.float64), rtol=0, atol=0):
            _remove(gm, node)
    return recompile_graph(gm)
