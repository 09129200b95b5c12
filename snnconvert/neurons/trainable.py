"""Make a converted network trainable: surrogates, learnable thresholds and leaks.

A converted network works in threshold units (theta = 1; the layer's real threshold is folded
into the weights), so a learnable threshold starts at 1 and a learnable leak at the neuron's
``beta`` (1 for IF neurons): the trainable copy computes exactly what the converted network
does until its parameters move. The M-LIF paper learns both, with their own learning rate in
some runs (000 A.3); :func:`neuron_parameters` groups them for the optimizer.

What each neuron learns is its own declaration
(:meth:`~snnconvert.neurons.base.SpikingNeuron.make_trainable`): M-LIF and IF neurons add
``threshold`` and ``leak`` parameters, multi-bit neurons train their spike amplitude, TSA / SWS
and max-pool neurons train through their surrogate only.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from snnconvert.errors import SnnConvertError
from snnconvert.neurons.surrogates import get_surrogate
from snnconvert.simulate.network import SpikingNetwork


def make_trainable(
    snn: SpikingNetwork,
    *,
    surrogate: str | None = None,
    learn_threshold: bool = False,
    learn_leak: bool = False,
    per_channel: bool = False,
) -> SpikingNetwork:
    """A deep copy of ``snn`` ready for BPTT fine-tuning (``snn`` itself is not changed).

    ``surrogate`` (a spec, e.g. ``"triangular:0.3"``; None keeps each neuron's own) is set on
    every neuron; an M-LIF neuron given a single-edge surrogate applies it at each lane's window
    edges. ``learn_threshold`` / ``learn_leak`` add ``threshold`` / ``leak`` parameters (see the
    module docstring), one per layer or, with ``per_channel``, one per channel (the channel
    count is read from the synapse feeding the neuron). The copy's forward pass is bit-exact
    with ``snn``'s, as long as the network is not cast to another dtype afterwards (a leak
    ``beta`` not representable in both dtypes would change).
    """
    spec = get_surrogate(surrogate).spec if surrogate is not None else None
    trainable = copy.deepcopy(snn)
    dtype = trainable.compute_dtype()
    device = next((p.device for p in trainable.parameters()), torch.device("cpu"))
    for name, neuron in trainable.neurons().items():
        if spec is not None:
            neuron.surrogate = spec
        if not (learn_threshold or learn_leak):
            continue
        count = (lambda name=name: _channels(trainable, name)) if per_channel else None
        neuron.make_trainable(learn_threshold=learn_threshold, learn_leak=learn_leak, channels=count,
                              dtype=dtype, device=device)
    return trainable


def neuron_parameters(snn: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters grouped for the optimizer: ``"threshold"`` (names containing
    ``threshold``), ``"leak"`` (names containing ``leak``) and ``"other"`` (all the rest,
    e.g. synapse weights and biases). Frozen parameters are left out; shared ones appear once."""
    groups: dict[str, list[nn.Parameter]] = {"threshold": [], "leak": [], "other": []}
    for name, param in snn.named_parameters():  # named_parameters already skips duplicates
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        key = "threshold" if "threshold" in leaf else "leak" if "leak" in leaf else "other"
        groups[key].append(param)
    return groups


def _channels(snn: SpikingNetwork, name: str) -> int:
    """Channels of the frames neuron layer ``name`` receives: from the synapse (or
    concatenation) that feeds it in the body graph."""
    body = snn.body
    if isinstance(body, fx.GraphModule):
        for node in body.graph.nodes:
            if node.op == "call_module" and node.target == name:
                found = _node_channels(body, node.args[0]) if node.args else None
                if found is not None:
                    return found
    raise SnnConvertError(f"cannot tell how many channels neuron layer {name!r} has; use per_channel=False")


_RESHAPES = ("view", "reshape", "flatten", "permute", "transpose", torch.flatten, torch.reshape)


def _node_channels(body: fx.GraphModule, node: object) -> int | None:
    """Channel count (axis 1) of the value ``node`` computes, or None when unknown."""
    for _ in range(10_000):  # walk up through channel-preserving ops
        if not isinstance(node, fx.Node):
            return None
        if node.op == "call_module":
            module = body.get_submodule(str(node.target))
            if isinstance(module, nn.Conv2d):
                return module.out_channels
            if isinstance(module, nn.Linear):
                return module.out_features
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                return module.num_features
            if isinstance(module, nn.Flatten):
                return None
        elif node.target in _RESHAPES:  # the channel axis moves
            return None
        elif node.op == "call_function" and node.target in (torch.cat, torch.concat):
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if dim != 1:
                return None
            parts = [_node_channels(body, a) for a in node.args[0]]
            return None if any(p is None for p in parts) else sum(parts)
        elif node.op == "placeholder":
            return None
        inputs = [a for a in node.args if isinstance(a, fx.Node)]
        if not inputs:
            return None
        node = inputs[0]
    return None
