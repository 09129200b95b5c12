"""SNN -> ONNX export.

``unrolled`` (the default): one graph from the image to the logits over all the network's time
steps, traced from the simulator itself (so the ONNX graph computes what ``snn(images)``
computes, frame for frame), optionally with every neuron layer's spike frames as extra outputs.
The batch axis stays dynamic. Every
neuron runs its ``export_dynamics`` there: the same dynamics in plain out-of-place operations
(fast paths with float bit tricks or in-place updates are not traced faithfully).

``step``: a stateful single-step graph, ``(images, state...) -> (logits, state...)``, for
networks whose layers all run on one time base (each neuron layer consumes and emits one frame
per step: rate/IF and M-LIF). The state is what each
neuron layer declares (``step_states``: the membrane; for rate max-pooling its running sums and
last pooled value; for M-LIF its last output) plus the running readout, and each layer's
``step`` computes one frame; ``OnnxExport.initial_state`` gives each state's shape (per image)
and initial value. Running it T times from the initial state gives the simulator's logits.
Layers that say why they have no one-frame update (``step_refusal``: SWS trains offset in time,
multi-bit neurons) are refused with the neuron type named; they export ``unrolled``.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from snnconvert.atomic import write_atomically
from snnconvert.errors import SnnConvertError
from snnconvert.export import ExportFormat, ExportRequest, register_export_format
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.options import opt
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import Gain, SynapseAffine, SynapseConv2d, SynapseLinear, WeightedSumDecoder

MODES = ("unrolled", "step")
DEFAULT_OPSET = 17


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: Path
    mode: str
    coding: str
    steps: int  # time steps the graph covers (unrolled) or one step's frame count (step)
    inputs: list[str]
    outputs: list[str]
    neuron_layers: list[str] = field(default_factory=list)
    nodes: int = 0
    op_types: list[str] = field(default_factory=list)
    initial_state: dict[str, tuple[list[int], float]] = field(default_factory=dict)  # step: shape per image, value


def exportable_copy(snn: SpikingNetwork) -> SpikingNetwork:
    """A float32 eval copy of ``snn`` whose neurons run their
    :meth:`~snnconvert.neurons.base.SpikingNeuron.export_dynamics` (out-of-place operations the
    ONNX exporter traces faithfully; the same values), not recording."""
    net = copy.deepcopy(snn).float().eval()
    for module in net.modules():
        if isinstance(module, SpikingNeuron):
            module.recording = False
            module.exporting = True
    return net


class _Unrolled(nn.Module):
    """``images -> (logits, *spike frames of every neuron layer)``."""

    def __init__(self, snn: SpikingNetwork, spikes: bool) -> None:
        super().__init__()
        self.snn = snn
        self.names = list(snn.neurons()) if spikes else []

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        captured: dict[str, Tensor] = {}
        handles = []
        neurons = self.snn.neurons()
        for name in self.names:
            def hook(_m: nn.Module, _i: tuple, out: Tensor, name: str = name) -> None:
                captured[name] = out
            handles.append(neurons[name].register_forward_hook(hook))
        try:
            logits = self.snn(images)
        finally:
            for h in handles:
                h.remove()
        return (logits, *(captured[n] for n in self.names))


def spike_output_name(layer: str) -> str:
    return "spikes_" + layer.replace(".", "_")


def export_onnx(snn: SpikingNetwork, path: str | Path, *, mode: str = "unrolled", example: Tensor | None = None,
                spikes: bool = False, opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Write ``snn`` as an ONNX graph (see the module docstring for the modes).

    ``example`` is an input batch that fixes the image shape (default: one zero image of the
    shape the network was converted for, from ``snn.info['input_shape']`` when known). With
    ``spikes`` the spike frames of every neuron layer are extra outputs (``spikes_<layer>``,
    ``T_out * batch`` frames, time-major). The file is written atomically.
    """
    import onnx

    if mode not in MODES:
        raise SnnConvertError(f"--mode {mode!r} is not possible: use {' or '.join(MODES)}")
    if mode == "step":
        return _export_step(snn, Path(path), example, opset)
    if example is None:
        raise SnnConvertError("pass an example input batch (its shape fixes the exported image size)")
    net = exportable_copy(snn)
    wrapper = _Unrolled(net, spikes).eval()
    outputs = ["logits", *(spike_output_name(n) for n in wrapper.names)]
    import io

    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (example.float(),), buffer, dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=outputs,
                              dynamic_axes={"images": {0: "batch"}, **{o: {0: "frames"} for o in outputs[1:]},
                                            "logits": {0: "batch"}})
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SnnConvertError(f"the {snn.coding} network cannot be expressed in ONNX: {first}") from exc
    data = buffer.getvalue()
    model = onnx.load_from_string(data)
    steps = int(snn.info.get("T_inf") or snn.info.get("latency") or snn.info.get("T") or 0)
    helper_meta = {"snnconvert.coding": snn.coding, "snnconvert.mode": mode, "snnconvert.steps": str(steps)}
    onnx.helper.set_model_props(model, helper_meta)
    blob = model.SerializeToString()
    write_atomically(Path(path), lambda handle: handle.write(blob))
    return OnnxExport(Path(path), mode, snn.coding, steps, ["images"], outputs, wrapper.names,
                      len(model.graph.node), sorted({n.op_type for n in model.graph.node}))


# --------------------------------------------------------------------------- step mode


class _StepNet(nn.Module):
    """One time step of a synchronous network, every neuron's state explicit."""

    def __init__(self, snn: SpikingNetwork, shapes: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.body: fx.GraphModule = snn.body
        self.steps = int(snn.decoder.weights.numel())
        self.readout = float(snn.decoder.weights[0])
        self.states: list[tuple[str, str, float]] = []  # (state name, neuron, initial value)
        for node in self.body.graph.nodes:
            module = self.body.get_submodule(node.target) if node.op == "call_module" else None
            if isinstance(module, SpikingNeuron):
                self.states += [(state_name(st.name, node.target), node.target, float(st.init))
                                for st in module.step_states()]
        self.states.append(("readout", "output", 0.0))
        self.shapes = shapes

    def forward(self, images: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        given = dict(zip([s[0] for s in self.states], state, strict=True))
        new: dict[str, Tensor] = {}
        env: dict[fx.Node, Tensor] = {}
        out: Tensor | None = None
        for node in self.body.graph.nodes:
            if node.op == "placeholder":
                env[node] = images
                continue
            if node.op == "output":
                out = env[node.args[0]]
                continue
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            if node.op == "call_function":
                env[node] = node.target(*args, **kwargs)
                continue
            if node.op == "call_method":
                env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
                continue
            module = self.body.get_submodule(node.target)
            env[node] = self._module_step(module, node.target, args[0], given, new)
        assert out is not None
        readout = given["readout"] + out * self.readout
        new["readout"] = readout
        return (readout, *(new[name] for name, _, _ in self.states))

    @staticmethod
    def _module_step(module: nn.Module, name: str, x: Tensor, given: dict[str, Tensor],
                     new: dict[str, Tensor]) -> Tensor:
        if isinstance(module, SpikingNeuron):
            mine = {st.name: given[state_name(st.name, name)] for st in module.step_states()}
            out, after = module.step(x, mine)
            new.update({state_name(key, name): value for key, value in after.items()})
            return out
        if isinstance(module, (SynapseConv2d, SynapseLinear)):
            bias = None if module.bias is None else module.bias * module.frame_bias_gain[0]
            if isinstance(module, SynapseConv2d):
                return module._conv_forward(x, module.weight, bias)
            return F.linear(x, module.weight, bias)
        if isinstance(module, SynapseAffine):
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return x * module.scale.view(shape) + (module.shift * module.frame_bias_gain[0]).view(shape)
        if isinstance(module, Gain):
            gain = module.gain.to(x.dtype)
            return x * (gain if gain.numel() == 1 else gain.view((1, -1) + (1,) * (x.dim() - 2)))
        return module(x)


def _step_refusals(snn: SpikingNetwork) -> list[str]:
    problems = []
    if not isinstance(snn.encoder, RepeatEncoder):
        problems.append(f"{type(snn.encoder).__name__} (an encoder whose frames change from step to step)")
    if not isinstance(snn.decoder, WeightedSumDecoder) or not torch.all(snn.decoder.weights == snn.decoder.weights[0]):
        problems.append("a readout that weights the steps differently")
    for name, module in snn.body.named_modules():
        if isinstance(module, SpikingNeuron) and (why := module.step_refusal()) is not None:
            problems.append(f"{type(module).__name__} at {name} ({why})")
        gains = getattr(module, "frame_bias_gain", None)
        if gains is not None and not torch.all(gains == gains[0]):
            problems.append(f"{name} (a bias that changes from step to step)")
    return problems


def _export_step(snn: SpikingNetwork, path: Path, example: Tensor | None, opset: int) -> OnnxExport:
    import io

    import onnx

    if example is None:
        raise SnnConvertError("pass an example input batch (its shape fixes the exported image size)")
    if not isinstance(snn.body, fx.GraphModule):
        raise SnnConvertError("step export needs a converted network (an fx body)")
    problems = _step_refusals(snn)
    if problems:
        raise SnnConvertError(f"{opt(ExportRequest, 'mode')} step needs every layer on one time base with a one-frame "
                              f"update; the "
                              f"{snn.coding} network has {'; '.join(problems[:4])}; export "
                              f"with {opt(ExportRequest, 'mode')} unrolled")
    net = exportable_copy(snn)
    step = _StepNet(net, {}).eval()
    example = example.float()
    shapes = _state_shapes(step, example)
    init = {name: (list(shapes[name]), value) for name, _, value in step.states}
    state = [torch.full((example.shape[0], *shapes[name]), value) for name, _, value in step.states]
    names = [name for name, _, _ in step.states]
    inputs, outputs = ["images", *names], ["logits", *(f"next_{n}" for n in names)]
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(step, (example, *state), buffer, dynamo=False, opset_version=opset,
                              input_names=inputs, output_names=outputs,
                              dynamic_axes={n: {0: "batch"} for n in [*inputs, *outputs]})
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SnnConvertError(f"the {snn.coding} network cannot be expressed in ONNX: {first}") from None
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {"snnconvert.coding": snn.coding, "snnconvert.mode": "step",
                                        "snnconvert.steps": str(step.steps),
                                        "snnconvert.initial_state": json.dumps(init)})
    blob = model.SerializeToString()
    write_atomically(path, lambda handle: handle.write(blob))
    return OnnxExport(path, "step", snn.coding, step.steps, inputs, outputs, list(snn.neurons()),
                      len(model.graph.node), sorted({n.op_type for n in model.graph.node}), init)


def _state_shapes(step: _StepNet, example: Tensor) -> dict[str, tuple[int, ...]]:
    """Per-image shapes of every state, from one run of the body on one frame."""
    from torch.fx.passes.shape_prop import ShapeProp

    body = copy.deepcopy(step.body)
    steps = step.steps
    with torch.no_grad():
        ShapeProp(body).propagate(example[:1].expand(steps, *example.shape[1:]).contiguous())
    shapes: dict[str, tuple[int, ...]] = {}
    for node in body.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if node.op == "output":
            shapes["readout"] = tuple(node.args[0].meta["tensor_meta"].shape[1:])
        elif node.op == "call_module" and meta is not None:
            module = body.get_submodule(node.target)
            if isinstance(module, SpikingNeuron):
                frame = {"output": tuple(meta.shape[1:]), "input": tuple(node.args[0].meta["tensor_meta"].shape[1:])}
                for st in module.step_states():
                    shapes[state_name(st.name, node.target)] = frame[st.shape_of]
    return shapes


def state_name(state: str, layer: str) -> str:
    """The graph input / output name of a neuron layer's step state (``membrane_layer1.0.relu``)."""
    return f"{state}_{layer}"


def _write_for_cli(snn: SpikingNetwork, path: Path, request: ExportRequest) -> dict:
    result = export_onnx(snn, path, mode=request.mode, example=torch.zeros((1, *request.image_shape)),
                         spikes=request.spikes)
    info = {"path": str(result.path), "format": "onnx", "mode": result.mode, "coding": result.coding,
            "steps": result.steps, "inputs": result.inputs, "outputs": result.outputs, "nodes": result.nodes}
    if result.mode == "step":  # what a runtime needs to start the state
        info["initial_state"] = {name: {"shape": shape, "value": value}
                                 for name, (shape, value) in result.initial_state.items()}
    return info


register_export_format(ExportFormat("onnx", "ONNX graph (onnxruntime, any ONNX tool)", _write_for_cli,
                                    lambda info: f"{info['nodes']} nodes"))
