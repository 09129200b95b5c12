"""SNN -> NIR export (the ``nir`` package): a graph that means what the simulator does.

Each neuron layer says what it is in NIR (:meth:`~snnconvert.neurons.base.SpikingNeuron.to_nir`):
the rate coding's IF neuron is ``nir.IF`` with ``r = 1/dt`` (the membrane adds the input once per
step of ``dt`` seconds), ``v_reset = 0`` and its threshold; a learned leak gives ``nir.LIF`` with
``tau = dt/(1 - leak)``. NIR's IF and LIF reset *to* ``v_reset`` and start at 0, so a network
whose neurons reset by subtraction or start at theta/2 (the rate coding's defaults) is refused
unless ``inexact`` writes it anyway with the differences in the metadata; convert with
``reset zero`` and without ``half_init`` for a file every consumer runs as snnconvert does. With
``reset="subtract"`` the file states (graph metadata ``reset``) that its neurons subtract their
threshold instead, which SpikingJelly and sinabs run when told (:meth:`NirExport.how_to_run`):
the rate coding's own reset, without the hard reset's loss on deep networks.

Synapses become ``Conv2d`` / ``Affine`` / ``Linear``; average pooling ``AvgPool2d``, or with
``pool="sum"`` ``SumPool2d`` with its ``1/k^2`` folded into the next synapse (norse and sinabs read
sum pooling only, SpikingJelly average pooling only); adaptive average pooling the fixed pool it
is for the traced shape; flattening ``Flatten``. Linear reshuffles of spike maps become 1x1
convolutions every consumer reads: gains between layers (diagonal weights), the option-A residual
shortcut's subsampling ``x[:, :, ::s, ::s]`` (stride s) and channel padding (zero rows), and the
per-channel input pad of a folded normalisation (a 1x1 conv that subtracts the pad value, then
the conv pads with zeros and adds back what the value contributed). A residual sum is two edges
into one node (NIR sums a node's inputs). The encoder's constant current is the ``Input`` node;
the classifier's current per step the ``Output`` node: the logits are its mean over the T steps
(graph metadata ``T``, ``dt``, ``decoder``). Everything else is refused in one message, by node
and cause.
"""

from __future__ import annotations

import copy
import math
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from snnconvert.atomic import write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.export import ExportFormat, ExportRequest, register_export_format
from snnconvert.export.nir_order import ORDERING_METADATA, ORDERS, order_depth_first
from snnconvert.graph.modules import PadWithValues
from snnconvert.neurons.base import NirNeuron, SpikingNeuron
from snnconvert.options import opt
from snnconvert.simulate.dropout import FrameDropout
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import Gain, SynapseConv2d, SynapseLinear

RESETS = {"hard": "zero", "subtract": "subtract"}
"""What a spike does to a membrane in the file (``--nir-reset``) -> the simulator's ``reset`` that
runs it: ``hard`` is NIR's meaning (set to ``v_reset = 0``); ``subtract`` is a convention the
file states in its metadata (subtract the threshold), which SpikingJelly and sinabs run when told
(see :meth:`NirExport.how_to_run`) and norse's IF cannot."""

SUBTRACT_STATED = ("subtract: a neuron that fires subtracts its threshold from its membrane (its IF/LIF v_reset "
                   "is not used); run with the reader's subtractive reset")
"""The graph metadata ``reset`` of a file written with ``reset="subtract"``."""


def states_subtraction(metadata: Any) -> bool:
    """Whether a NIR graph's metadata states the subtractive reset (``reset: subtract ...``, from
    any tool that follows the convention)."""
    stated = metadata.get("reset") if isinstance(metadata, dict) else None
    return isinstance(stated, str) and stated.startswith("subtract")


POOLS = ("avg", "sum")
"""How average pooling is written: ``AvgPool2d``, or ``SumPool2d`` with ``1/k^2`` folded into the next synapse."""

_PASS_THROUGH = (nn.Identity, nn.Dropout, FrameDropout)  # identities at inference


@dataclass
class NirExport:
    """What :func:`export_nir` wrote: the nodes (name -> NIR primitive) and edges, the time
    steps ``T`` and step ``dt`` the file states, and the simulator's behaviours the file does
    not state (empty unless written with ``inexact``)."""

    path: Path
    coding: str
    nodes: dict[str, str] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    T: int = 1
    dt: float = 1e-4
    differences: list[str] = field(default_factory=list)
    reset: str = "hard"  # what a spike does to a membrane in the file (RESETS)

    def how_to_run(self) -> list[str]:
        """The lines that tell a user how to reproduce the simulator's logits with the file."""
        steps = [f"feed the image as a constant input for T = {self.T} steps of dt = {self.dt:g} s and average the "
                 "output over the steps (graph metadata T, dt, decoder)"]
        if self.reset == "subtract":
            return steps + [f"the neurons reset by subtracting their threshold (graph metadata reset): SpikingJelly: "
                            f"import_from_nir(graph, dt={self.dt:g}), then v_reset = None on every IFNode/LIFNode; "
                            "sinabs: sinabs.from_nir(graph, batch_size=B), then spike_fn = SingleSpike and "
                            "min_v_mem = None on every IAF/LIF layer; norse's IF resets to a value only"]
        return steps + [f"norse: norse.torch.from_nir(graph, dt={self.dt:g}); SpikingJelly: import_from_nir(graph, "
                        f"dt={self.dt:g}); sinabs: sinabs.from_nir(graph, batch_size=B)"]


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy().astype(np.float32)


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None:
        raise SnnConvertError(f"NIR export needs shapes: node {node.name} has none (run the network once first)")
    return tuple(int(s) for s in meta.shape[1:])


def _what(node: fx.Node, module: nn.Module | None) -> str:
    """A node's kind for a user message: the module class, or the function's name (never a repr)."""
    if module is not None:
        return type(module).__name__
    return str(getattr(node.target, "__name__", node.op))


class _Graph:
    """One walk over the simulator's body that collects the NIR nodes, edges and problems."""

    def __init__(self, body: fx.GraphModule, *, dt: float, pool: str, reset: str = "zero") -> None:
        import nir

        self.nir, self.body, self.dt, self.pool, self.reset = nir, body, dt, pool, reset
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.sources: dict[fx.Node, list[str]] = {}
        self.problems: dict[str, list[str]] = defaultdict(list)  # cause -> node names
        self.differences: dict[tuple[tuple[str, ...], str], list[str]] = defaultdict(list)  # (what, fix) -> nodes
        self.out_scale: dict[fx.Node, torch.Tensor] = {}  # synapse -> factor per output channel
        self.in_scale: dict[fx.Node, float] = {}  # synapse -> factor on its whole input
        self.pad_values: dict[fx.Node, tuple[PadWithValues, fx.Node]] = {}  # conv -> the pad before it
        self.neurons: dict[fx.Node, NirNeuron] = {}
        self.geometry: dict[fx.Node, tuple | None] = {}  # pool -> (kh, kw, stride, padding); None: refused

    def module(self, node: fx.Node) -> nn.Module | None:
        return self.body.get_submodule(node.target) if node.op == "call_module" else None

    def refuse(self, node: fx.Node, cause: str) -> None:
        self.problems[cause].append(node.name)

    # -- pass 1: what folds where ------------------------------------------------------------------

    def plan(self) -> None:
        for node in self.body.graph.nodes:
            module = self.module(node)
            if isinstance(module, SpikingNeuron):
                self._plan_neuron(node, module)
            elif isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) and self.pool == "sum":
                self._plan_sum_pool(node, module)
            elif isinstance(module, PadWithValues):
                self._plan_pad(node, module)

    def _synapse_before(self, node: fx.Node) -> fx.Node | None:
        """The synapse whose only consumer is ``node`` (so its weights may be rescaled)."""
        inputs = node.all_input_nodes
        if len(inputs) != 1 or len(inputs[0].users) != 1:
            return None
        return inputs[0] if isinstance(self.module(inputs[0]), (SynapseConv2d, SynapseLinear)) else None

    def _synapse_after(self, node: fx.Node) -> fx.Node | None:
        """The synapse (or gain: a 1x1 conv in the file) ``node`` feeds through flattening alone
        (each hop its only consumer)."""
        while len(node.users) == 1:
            (node,) = node.users
            module = self.module(node)
            if isinstance(module, (SynapseConv2d, SynapseLinear, Gain)):
                return node
            if not isinstance(module, (nn.Flatten, *_PASS_THROUGH)):
                return None
        return None

    def _plan_neuron(self, node: fx.Node, module: SpikingNeuron) -> None:
        synapse = self._synapse_before(node)
        spec = module.to_nir(_shape(node), dt=self.dt, fold_input=synapse is not None, reset=self.reset)
        if spec is None:
            self.refuse(node, f"{type(module).__name__} (no NIR neuron; NIR export covers rate/IF and LIF-family "
                              "networks)")
            return
        if spec.refusal is not None:
            self.refuse(node, f"{type(module).__name__}: {spec.refusal}")
            return
        if spec.input_scale is not None and synapse is not None:
            self.out_scale[synapse] = torch.as_tensor(spec.input_scale, dtype=torch.float64).reshape(-1)
        if spec.differences:
            self.differences[(spec.differences, spec.fix)].append(node.name)
        self.neurons[node] = spec

    def _plan_sum_pool(self, node: fx.Node, module: nn.Module) -> None:
        kernel = self._pool_geometry(node, module)
        if kernel is None:
            return
        synapse = self._synapse_after(node)
        if synapse is None:
            self.refuse(node, "sum pooling whose output does not go to one synapse alone (nowhere to fold its "
                              "1/k^2; export with pool avg)")
            return
        self.in_scale[synapse] = self.in_scale.get(synapse, 1.0) / float(kernel[0] * kernel[1])

    def _plan_pad(self, node: fx.Node, module: PadWithValues) -> None:
        users = list(node.users)
        conv = self.module(users[0]) if len(users) == 1 else None
        left, right, top, bottom = module.padding
        if (not isinstance(conv, SynapseConv2d) or any(conv.padding) or conv.padding_mode != "zeros"
                or left != right or top != bottom):
            self.refuse(node, "PadWithValues that does not feed one unpadded convolution with a symmetric pad")
            return
        self.pad_values[users[0]] = (module, node)

    # -- pass 2: the nodes ------------------------------------------------------------------------

    def build(self) -> None:
        for node in self.body.graph.nodes:
            if node.op == "placeholder":
                self.sources[node] = ["input"]
            elif node.op == "output":
                self.nodes["output"] = self.nir.Output(output_type={"output": np.array(_shape(node.args[0]))})
                self.edges += [(s, "output") for s in self.sources.get(node.args[0], [])]
            elif node.op == "call_function" and node.target in (operator.add, torch.add) and len(node.args) == 2:
                self.sources[node] = [s for a in node.all_input_nodes for s in self.sources.get(a, [])]
            else:
                self._emit(node)

    def _inputs(self, node: fx.Node) -> list[str]:
        return [s for a in node.all_input_nodes for s in self.sources.get(a, [])]

    def _add(self, node: fx.Node, name: str, primitive: Any) -> None:
        self.nodes[name] = primitive
        self.edges += [(s, name) for s in self._inputs(node)]
        self.sources[node] = [name]

    def _emit(self, node: fx.Node) -> None:
        module = self.module(node)
        name = node.name  # fx's sanitised name: no dots, which a reader's module names cannot hold
        if isinstance(module, SynapseConv2d):
            self._conv(node, module, name)
        elif isinstance(module, SynapseLinear):
            self._linear(node, module, name)
        elif isinstance(module, SpikingNeuron):
            if node in self.neurons:
                self._add(node, name, self.neurons[node].node)
        elif isinstance(module, Gain):
            self._gain(node, module, name)
        elif isinstance(module, PadWithValues):
            self._pad_values(node, module, name)
        elif isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            kernel = self._pool_geometry(node, module)
            if kernel is not None:
                stride, padding = kernel[2], kernel[3]
                kind = self.nir.SumPool2d if self.pool == "sum" else self.nir.AvgPool2d
                self._add(node, name, kind(kernel_size=np.array(kernel[:2]), stride=np.array(stride),
                                           padding=np.array(padding)))
        elif isinstance(module, nn.Flatten):
            # negative dims: the same axes whether a reader counts the batch axis (norse) or not (NIR, sinabs,
            # SpikingJelly)
            shape = _shape(node.all_input_nodes[0])
            rank = len(shape) + 1
            start = module.start_dim - rank if module.start_dim >= 0 else module.start_dim
            end = module.end_dim - rank if module.end_dim >= 0 else module.end_dim
            if start < -len(shape):
                self.refuse(node, "flattening of the batch axis")
            self._add(node, name, self.nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start,
                                                   end_dim=end))
        elif isinstance(module, _PASS_THROUGH):
            self.sources[node] = self._inputs(node)
        elif node.op == "call_function" and node.target is operator.getitem:
            self._subsample(node, name)
        elif node.op == "call_function" and node.target is F.pad:
            self._channel_pad(node, name)
        else:
            self.refuse(node, f"{_what(node, module)} (no NIR primitive)")
            self.sources[node] = self._inputs(node)

    def _scaled_weight(self, node: fx.Node, module: SynapseConv2d | SynapseLinear) -> tuple[torch.Tensor, torch.Tensor]:
        """The synapse's weight and per-step bias with the folded factors (float64)."""
        weight = module.weight.detach().double() * self.in_scale.get(node, 1.0)
        out = weight.shape[0]
        if module.bias is None:
            bias = torch.zeros(out, dtype=torch.float64)
        else:
            gains = module.frame_bias_gain.detach().double()
            if not torch.all(gains == gains[0]):
                self.refuse(node, "synapse whose bias changes from step to step (NIR holds one bias)")
            bias = module.bias.detach().double() * gains[0]
        scale = self.out_scale.get(node)
        if scale is not None:
            scale = scale.expand(out) if scale.numel() == 1 else scale
            weight = weight * scale.view((-1,) + (1,) * (weight.dim() - 1))
            bias = bias * scale
        return weight, bias

    def _conv(self, node: fx.Node, module: SynapseConv2d, name: str) -> None:
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            self.refuse(node, f"convolution with {module.padding_mode} padding")
            return
        weight, bias = self._scaled_weight(node, module)
        padding = tuple(module.padding)
        input_shape = _shape(node.all_input_nodes[0])[1:]
        if node in self.pad_values:
            pad, _ = self.pad_values[node]
            left, _, top, _ = pad.padding
            padding = (top, left)
            values = pad.values.double()
            # conv(pad_m(x)) = conv(pad_0(x - m)) + sum(W * m): the pad node subtracts m, the bias adds it back
            bias = bias + (weight * values.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
            input_shape = (input_shape[0] - top * 2, input_shape[1] - left * 2)
        self._add(node, name, self.nir.Conv2d(input_shape=input_shape, weight=_array(weight), stride=module.stride,
                                              padding=padding, dilation=module.dilation, groups=module.groups,
                                              bias=_array(bias)))

    def _linear(self, node: fx.Node, module: SynapseLinear, name: str) -> None:
        weight, bias = self._scaled_weight(node, module)
        if module.bias is None and not torch.any(bias):
            self._add(node, name, self.nir.Linear(weight=_array(weight)))
        else:
            self._add(node, name, self.nir.Affine(weight=_array(weight), bias=_array(bias)))

    def _one_by_one(self, node: fx.Node, name: str, weight: torch.Tensor, stride: int = 1,
                    bias: torch.Tensor | None = None) -> None:
        """A 1x1 convolution (or a matrix on flat frames) for a linear reshuffle of spike maps."""
        shape = _shape(node.all_input_nodes[0])
        if bias is None:
            bias = torch.zeros(weight.shape[0], dtype=torch.float64)
        if len(shape) == 3:
            self._add(node, name, self.nir.Conv2d(input_shape=shape[1:], weight=_array(weight[:, :, None, None]),
                                                  stride=stride, padding=0, dilation=1, groups=1, bias=_array(bias)))
        elif len(shape) == 1 and stride == 1:
            self._add(node, name, self.nir.Affine(weight=_array(weight), bias=_array(bias)))
        else:
            self.refuse(node, f"{_what(node, self.module(node))} on {len(shape) + 1}-d frames")

    def _gain(self, node: fx.Node, module: Gain, name: str) -> None:
        channels = _shape(node)[0]
        gain = module.gain.detach().double().reshape(-1) * self.in_scale.get(node, 1.0)
        self._one_by_one(node, name, torch.diag(gain.expand(channels) if gain.numel() == 1 else gain))

    def _pad_values(self, node: fx.Node, module: PadWithValues, name: str) -> None:
        if not any(node is pad_node for _, pad_node in self.pad_values.values()):
            self.sources[node] = self._inputs(node)  # refused in plan()
            return
        values = module.values.double()
        self._one_by_one(node, name, torch.eye(values.numel(), dtype=torch.float64), bias=-values)

    def _subsample(self, node: fx.Node, name: str) -> None:
        index = node.args[1] if len(node.args) > 1 else None
        shape = _shape(node.all_input_nodes[0]) if node.all_input_nodes else ()
        whole = slice(None, None, None)
        if (isinstance(index, tuple) and len(index) == 4 and len(shape) == 3 and index[:2] == (whole, whole)
                and all(isinstance(s, slice) and s.start is None and s.stop is None for s in index[2:])
                and index[2].step == index[3].step and isinstance(index[2].step, int) and index[2].step >= 1):
            self._one_by_one(node, name, torch.eye(shape[0], dtype=torch.float64), stride=index[2].step)
            return
        self.refuse(node, "indexing other than x[:, :, ::s, ::s]")
        self.sources[node] = self._inputs(node)

    def _channel_pad(self, node: fx.Node, name: str) -> None:
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        shape = _shape(node.all_input_nodes[0])
        if (isinstance(pad, (tuple, list)) and len(pad) == 6 and not any(pad[:4]) and mode == "constant"
                and not value and len(shape) == 3 and min(pad[4:]) >= 0):
            before, after = int(pad[4]), int(pad[5])
            channels = shape[0]
            weight = torch.zeros(before + channels + after, channels, dtype=torch.float64)
            weight[before:before + channels] = torch.eye(channels, dtype=torch.float64)
            self._one_by_one(node, name, weight)
            return
        self.refuse(node, "padding other than zero channels (F.pad with (0, 0, 0, 0, a, b))")
        self.sources[node] = self._inputs(node)

    def _pool_geometry(self, node: fx.Node, module: nn.Module) -> tuple | None:
        """(kh, kw, stride, padding) of an average pool NIR can hold, or None (refused once)."""
        if node not in self.geometry:
            self.geometry[node] = self._measure_pool(node, module)
        return self.geometry[node]

    def _measure_pool(self, node: fx.Node, module: nn.Module) -> tuple | None:
        pair = nn.modules.utils._pair
        if isinstance(module, nn.AdaptiveAvgPool2d):
            size = _shape(node.all_input_nodes[0])[1:]
            out = [s if o is None else o for s, o in zip(size, pair(module.output_size), strict=True)]
            if any(s % o for s, o in zip(size, out, strict=True)):
                self.refuse(node, "adaptive average pooling whose input size is not a multiple of its output size")
                return None
            k = tuple(s // o for s, o in zip(size, out, strict=True))
            return (*k, k, (0, 0))
        k, s, p = pair(module.kernel_size), pair(module.stride or module.kernel_size), pair(module.padding)
        if module.ceil_mode or (any(p) and not module.count_include_pad) or module.divisor_override:
            self.refuse(node, "average pooling with ceil_mode, a divisor override or without counting the pad")
            return None
        if self.pool == "sum" and any(p):
            self.refuse(node, "sum pooling with padding (norse and sinabs ignore a sum pool's padding)")
            return None
        return (*k, s, p)


def _names(names: list[str], shown: int = 4) -> str:
    """Node names for a message: the first few, then how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def to_nir_graph(snn: SpikingNetwork, image_shape: tuple[int, int, int], *, dt: float = 1e-4, pool: str = "avg",
                 inexact: bool = False, order: str = "depth-first", reset: str = "hard") -> tuple[Any, list[str]]:
    """The ``nir.NIRGraph`` of ``snn`` and the simulator's behaviours it does not state (see the
    module docstring); refuses, in one message, every node NIR cannot hold and (unless
    ``inexact``) every neuron whose NIR node would behave differently. ``order``: ``depth-first``
    adds the zero-weight ordering nodes with which tools that run a graph depth-first (norse,
    sinabs) run its branches in order (:mod:`snnconvert.export.nir_order`), ``plain`` does not.
    ``reset``: ``hard`` (NIR's meaning) or ``subtract`` (a convention stated in the metadata, see
    :data:`RESETS`): the neurons must reset that way."""
    import nir

    from snnconvert.graph.capture import propagate_shapes

    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and math.isfinite(dt) and dt > 0):
        raise SnnConvertError(f"{opt(ExportRequest, 'nir_dt')} {dt!r} is not possible: give a time step > 0 seconds")
    if pool not in POOLS:
        raise SnnConvertError(f"{opt(ExportRequest, 'nir_pool')} {pool!r} is not possible: choose avg or sum")
    if reset not in RESETS:
        raise SnnConvertError(f"{opt(ExportRequest, 'nir_reset')} {reset!r} is not possible: choose "
                              f"{' or '.join(RESETS)}")
    if order not in ORDERS:
        raise SnnConvertError(f"{opt(ExportRequest, 'nir_order')} {order!r} is not possible: choose "
                              f"{' or '.join(ORDERS)}")
    body = snn.body
    if not isinstance(body, fx.GraphModule):
        raise SnnConvertError("NIR export needs a converted network (an fx body)")
    if not isinstance(snn.encoder, RepeatEncoder):
        kinds = sorted({type(m).__name__ for m in snn.modules()
                        if isinstance(m, SpikingNeuron) and type(m).to_nir is SpikingNeuron.to_nir})
        kinds = [name for name in kinds if name != type(snn.encoder).__name__]
        raise SnnConvertError(f"NIR has no input node for the {snn.coding} coding's {type(snn.encoder).__name__}"
                              f"{' and no neuron for ' + ', '.join(kinds) if kinds else ''}: NIR export covers "
                              "rate/IF and LIF-family networks fed the image as a constant current; export this "
                              f"network with {opt('export', 'format')} onnx")
    steps = int(snn.encoder.T)
    body = propagate_shapes(copy.deepcopy(body).double(), (steps, *image_shape))
    graph = _Graph(body, dt=float(dt), pool=pool, reset=RESETS[reset])
    graph.plan()
    graph.nodes["input"] = nir.Input(input_type={"input": np.array(image_shape)})
    graph.build()
    problems = [f"{cause} at {_names(names)}" for cause, names in graph.problems.items()]
    differences = [f"{_names(names)}: {' and '.join(what)}" for (what, _), names in graph.differences.items()]
    if differences and not inexact:
        fixes = sorted({fix for (_, fix) in graph.differences if fix})
        if reset == "hard" and any("reset by subtraction" in what for (what, _) in graph.differences):
            fixes.append(f"export with {opt(ExportRequest, 'nir_reset', assign=True)}subtract")
        stated = ("NIR's IF and LIF reset to v_reset from 0" if reset == "hard" else
                  f"with {opt(ExportRequest, 'nir_reset', assign=True)}subtract the file's neurons subtract their "
                  "threshold, from 0")
        problems += [f"{d} ({stated}{'; ' + ', '.join(fixes) if fixes else ''}, or "
                     f"pass {opt(ExportRequest, 'nir_inexact')})" for d in differences]
    if problems:
        raise SnnConvertError(f"NIR cannot hold this {snn.coding} network: {'; '.join(problems)}"
                              f"{'; or export with ' + opt('export', 'format') + ' onnx' if graph.problems else ''}")
    metadata = {"snnconvert.coding": snn.coding, "T": steps, "dt": float(dt),
                "decoder": "mean of the output over the T steps", "input": "the image, the same at every step"}
    if differences:
        metadata["snnconvert.differences"] = "; ".join(differences)
    if reset == "subtract":
        metadata["reset"] = SUBTRACT_STATED
    nodes, edges = graph.nodes, graph.edges
    if order == "depth-first":
        nodes, edges, added = order_depth_first(nodes, edges)
        if added:
            metadata[ORDERING_METADATA] = (f"{len(added)} zero-weight nodes ({_names(added)}) add 0 to a branch's "
                                           "end so that tools running the graph depth-first run it in order")
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata), differences


def export_nir(snn: SpikingNetwork, path: str | Path, image_shape: tuple[int, int, int], *, dt: float = 1e-4,
               pool: str = "avg", inexact: bool = False, order: str = "depth-first", reset: str = "hard") -> NirExport:
    """Write ``snn`` as a NIR graph (HDF5, via ``nir.write``), atomically (see the module docstring).

    ``image_shape``: (C, H, W) of one input image; ``dt``: the time step the file states in
    seconds; ``pool``: ``"avg"`` or ``"sum"``; ``inexact``: write neurons whose NIR node behaves
    differently (soft reset, theta/2 start) anyway, the differences recorded in the metadata;
    ``order``: ``"depth-first"`` (ordering nodes for norse and sinabs) or ``"plain"``; ``reset``:
    ``"hard"`` (NIR's reset to 0) or ``"subtract"`` (the stated convention of :data:`RESETS`).
    """
    import io

    import nir

    graph, differences = to_nir_graph(snn, tuple(int(s) for s in image_shape), dt=dt, pool=pool, inexact=inexact,
                                      order=order, reset=reset)
    path = Path(path)
    buffer = io.BytesIO()  # HDF5 built in memory: no staging file anywhere (a full /tmp cannot fail it)
    nir.write(buffer, graph)
    blob = buffer.getvalue()
    write_atomically(path, lambda handle: handle.write(blob))
    return NirExport(path, snn.coding, {k: type(v).__name__ for k, v in graph.nodes.items()}, list(graph.edges),
                     T=int(graph.metadata["T"]), dt=float(dt), differences=differences, reset=reset)


def _write_for_cli(snn: SpikingNetwork, path: Path, request: ExportRequest) -> dict:
    result = export_nir(snn, path, request.image_shape, dt=request.nir_dt, pool=request.nir_pool,
                        inexact=request.nir_inexact, order=request.nir_order, reset=request.nir_reset)
    return {"path": str(result.path), "format": "nir", "coding": result.coding, "nodes": result.nodes,
            "edges": [list(e) for e in result.edges], "T": result.T, "dt": result.dt,
            "differences": result.differences, "notes": result.how_to_run()}


register_export_format(ExportFormat("nir", "NIR graph (neuromorphic toolchains; rate/IF and LIF-family networks)",
                                    _write_for_cli, lambda info: f"{len(info['nodes'])} NIR nodes"))
