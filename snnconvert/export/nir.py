"""SNN -> NIR export (the ``nir`` package) for what NIR can represent.

Rate-coded (IF, soft reset) and LIF-family networks map onto NIR primitives: synapses become
``Conv2d``/``Affine``/``Linear``, neurons ``IF`` (``LIF`` with a learned leak), average pooling
``AvgPool2d``, flattening ``Flatten``, remaining gains ``Scale``; a residual sum is two edges into
the same node (NIR sums a node's inputs). The encoder's constant current is the ``Input`` node
and the classifier's summed current the ``Output`` node (the decoder averages it over the T steps).

TSA (SWS), one-hot M-LIF and multi-bit neurons, max-pooling of spike trains and per-channel pads
have no NIR primitive: export refuses them with one message naming the module types.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from snnconvert.atomic import write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.export import ExportFormat, ExportRequest, register_export_format
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.options import opt
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import Gain, SynapseConv2d, SynapseLinear


@dataclass
class NirExport:
    """What :func:`export_nir` wrote."""

    path: Path
    coding: str
    nodes: dict[str, str] = field(default_factory=dict)  # NIR node name -> primitive
    edges: list[tuple[str, str]] = field(default_factory=list)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy().astype(np.float32)


def _bias(module: SynapseConv2d | SynapseLinear, name: str) -> np.ndarray:
    out = module.weight.shape[0]
    if module.bias is None:
        return np.zeros(out, np.float32)
    gains = module.frame_bias_gain.detach().double()
    if not torch.all(gains == gains[0]):
        raise SnnConvertError(f"NIR cannot hold synapse {name}: its bias changes from step to step")
    return _array(module.bias * gains[0])


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None:
        raise SnnConvertError(f"NIR export needs shapes: node {node.name} has none (run the network once first)")
    return tuple(int(s) for s in meta.shape[1:])


def to_nir_graph(snn: SpikingNetwork, image_shape: tuple[int, int, int]) -> Any:
    """The ``nir.NIRGraph`` of ``snn`` (refusing what NIR cannot represent)."""
    import nir

    from snnconvert.graph.capture import propagate_shapes

    body = snn.body
    if not isinstance(body, fx.GraphModule):
        raise SnnConvertError("NIR export needs a converted network (an fx body)")
    refused = sorted({type(m).__name__ for m in snn.modules()
                      if isinstance(m, SpikingNeuron) and type(m).to_nir is SpikingNeuron.to_nir})
    if not isinstance(snn.encoder, RepeatEncoder) and type(snn.encoder).__name__ not in refused:
        refused.append(type(snn.encoder).__name__)
    if refused:
        raise SnnConvertError(
            f"NIR has no primitive for {', '.join(refused)} (the {snn.coding} coding's neurons): NIR export covers "
            f"rate/IF and LIF-family networks; export this network with {opt('export', 'format')} onnx")
    steps = snn.encoder.T if hasattr(snn.encoder, "T") else 1
    body = propagate_shapes(_float_copy(body), (steps, *image_shape))
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(image_shape)})}
    edges: list[tuple[str, str]] = []
    sources: dict[fx.Node, list[str]] = {}
    problems: list[str] = []
    for node in body.graph.nodes:
        if node.op == "placeholder":
            sources[node] = ["input"]
            continue
        if node.op == "output":
            out_shape = _shape(node.args[0])
            nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
            edges += [(s, "output") for s in sources[node.args[0]]]
            continue
        inputs = [a for a in node.all_input_nodes]
        if node.op == "call_function" and node.target in (operator.add, torch.add):
            sources[node] = [s for a in inputs for s in sources[a]]
            continue
        module = body.get_submodule(node.target) if node.op == "call_module" else None
        prim = _primitive(module, node, inputs, problems)
        if prim is None:
            sources[node] = [s for a in inputs for s in sources.get(a, [])]
            continue
        name = node.target if node.op == "call_module" else node.name
        nodes[name] = prim
        edges += [(s, name) for a in inputs for s in sources.get(a, [])]
        sources[node] = [name]
    if problems:
        raise SnnConvertError(f"NIR has no primitive for {'; '.join(problems)}; export with "
                              f"{opt('export', 'format')} onnx")
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"snnconvert.coding": snn.coding, "T": steps,
                                                             "decoder": "mean of the output current over T steps"})


def _float_copy(body: fx.GraphModule) -> fx.GraphModule:
    import copy

    return copy.deepcopy(body).float()


def _primitive(module: nn.Module | None, node: fx.Node, inputs: list[fx.Node], problems: list[str]) -> Any:
    import nir

    name = str(node.target)
    if isinstance(module, SynapseConv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            problems.append(f"{name} ({module.padding_mode} padding)")
            return None
        return nir.Conv2d(input_shape=_shape(inputs[0])[1:], weight=_array(module.weight), stride=module.stride,
                          padding=module.padding, dilation=module.dilation, groups=module.groups,
                          bias=_bias(module, name))
    if isinstance(module, SynapseLinear):
        if module.bias is None:
            return nir.Linear(weight=_array(module.weight))
        return nir.Affine(weight=_array(module.weight), bias=_bias(module, name))
    if isinstance(module, SpikingNeuron):
        primitive = module.to_nir(_shape(node))
        if primitive is None:
            problems.append(f"{type(module).__name__} at {name}")
        return primitive
    if isinstance(module, Gain):
        gain = module.gain.detach().double()
        shape = _shape(node)
        scale = (gain.reshape((-1,) + (1,) * (len(shape) - 1)) if gain.numel() > 1 else gain.reshape(()))
        return nir.Scale(scale=(torch.ones(shape, dtype=torch.float64) * scale).numpy().astype(np.float32))
    if isinstance(module, nn.AvgPool2d):
        k = np.array(nn.modules.utils._pair(module.kernel_size))
        s = np.array(nn.modules.utils._pair(module.stride or module.kernel_size))
        p = np.array(nn.modules.utils._pair(module.padding))
        if module.ceil_mode or (p.any() and not module.count_include_pad):
            problems.append(f"{name} (average pooling with ceil_mode or without counting the pad)")
            return None
        return nir.AvgPool2d(kernel_size=k, stride=s, padding=p)
    if isinstance(module, nn.Flatten):
        start = module.start_dim - 1 if module.start_dim > 0 else module.start_dim
        end = module.end_dim - 1 if module.end_dim > 0 else module.end_dim
        return nir.Flatten(input_type={"input": np.array(_shape(inputs[0]))}, start_dim=start, end_dim=end)
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return None
    what = type(module).__name__ if module is not None else getattr(node.target, "__name__", str(node.target))
    problems.append(f"{what} at {name}")
    return None


def export_nir(snn: SpikingNetwork, path: str | Path, image_shape: tuple[int, int, int]) -> NirExport:
    """Write ``snn`` as a NIR graph (HDF5, via ``nir.write``), atomically.

    ``image_shape``: (C, H, W) of one input image.
    """
    import io

    import nir

    graph = to_nir_graph(snn, tuple(int(s) for s in image_shape))
    path = Path(path)
    buffer = io.BytesIO()  # HDF5 built in memory: no staging file anywhere (a full /tmp cannot fail it)
    nir.write(buffer, graph)
    blob = buffer.getvalue()
    write_atomically(path, lambda handle: handle.write(blob))
    return NirExport(path, snn.coding, {k: type(v).__name__ for k, v in graph.nodes.items()}, list(graph.edges))


def _write_for_cli(snn: SpikingNetwork, path: Path, request: ExportRequest) -> dict:
    result = export_nir(snn, path, request.image_shape)
    return {"path": str(result.path), "format": "nir", "coding": result.coding, "nodes": result.nodes,
            "edges": [list(e) for e in result.edges]}


register_export_format(ExportFormat("nir", "NIR graph (neuromorphic toolchains; rate/IF and LIF-family networks)",
                                    _write_for_cli, lambda info: f"{len(info['nodes'])} NIR nodes"))
