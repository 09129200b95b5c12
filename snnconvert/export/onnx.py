"""SNN -> ONNX export.

``unrolled`` (the default): one graph from the image to the logits over all the network's time
steps, traced from the simulator itself (so the ONNX graph computes what ``snn(images)``
computes, frame for frame), optionally with every neuron layer's spike frames as extra outputs.
The batch axis stays dynamic. Neurons whose simulator code uses bit tricks ONNX cannot express
(the M-LIF fast path) or in-place updates the tracer mis-records (the TSA fast path) are swapped
for an export twin with the same dynamics in plain out-of-place ops.

``step``: a stateful single-step graph, ``(images, state...) -> (logits, state...)``, for
networks whose layers all run on one time base (each neuron layer consumes and emits one frame
per step: rate/IF and M-LIF). The state is every neuron layer's membrane (plus, for rate
max-pooling, its running sums and last pooled value; for M-LIF, its last output) and the running
readout; ``OnnxExport.initial_state`` gives each state's shape (per image) and initial value.
Running it T times from the initial state gives the simulator's logits. Codings whose layers are
offset in time (SWS: silent periods on Tc-digit trains) and neurons without a one-frame update
(multi-bit) are refused with the neuron type named; they export ``unrolled``.
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
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.neurons.integrate_fire import IFNeuron, RateMaxPool
from snnconvert.neurons.mlif import MLIFNeuron
from snnconvert.neurons.tsa import SWSEncoder, SWSMaxPoolNeuron, TSANeuron
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import Gain, SynapseAffine, SynapseConv2d, SynapseLinear, WeightedSumDecoder

MODES = ("unrolled", "step")
_OUT_OF_PLACE = (IFNeuron, RateMaxPool)
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


class _MLIFExport(MLIFNeuron):
    """An M-LIF layer whose dynamics use comparisons instead of float bit tricks (same values:
    the lane of ``r = u / theta`` is ``sum_s [r > 2^s] w_s`` with ``w_0 = 1, w_s = 2^(s-1)``)."""

    def _level(self, ratio: Tensor) -> Tensor:
        level = (ratio > 1.0).to(ratio.dtype)
        for s in range(1, self.S):
            level = level + (ratio > 2.0**s).to(ratio.dtype) * 2.0 ** (s - 1)
        return level

    def dynamics(self, inputs: Tensor) -> Tensor:
        dims = inputs.dim() - 1
        theta = self.per_channel(self.threshold, dims)
        leak = self.per_channel(self.leak, dims)
        beta = self.beta if leak is None else leak.to(inputs.dtype)
        outputs: list[Tensor] = []
        u = inputs[0]
        for t in range(inputs.shape[0]):
            if t > 0:
                if isinstance(beta, Tensor) or beta != 1.0:
                    u = u * beta
                u = u + inputs[t]
                u = u - outputs[-1] if theta is None else u - outputs[-1] * theta.to(inputs.dtype)
            outputs.append(self._level(u if theta is None else u / theta.to(inputs.dtype)))
        return torch.stack(outputs)


def tsa_spikes(inputs: Tensor, *, Ts: int, beta: float, qmax: float | None, qmin: float | None) -> Tensor:
    """The spikes of :func:`~snnconvert.neurons.tsa.tsa_dynamics` with out-of-place operations in
    the same order (the same values, bit for bit), which the ONNX exporter traces faithfully."""
    Tc = inputs.shape[0]
    reset = beta**Ts
    inverse = 1.0 / reset
    weights = [beta ** (Tc - k) for k in range(1, Tc + 1)]
    multiples = qmin == 0 and float(beta).is_integer()
    u = torch.zeros_like(inputs[0])
    emitted = torch.zeros_like(u)
    spikes: list[Tensor] = []
    for t in range(1, Ts + Tc + 1):
        u = torch.add(inputs[t - 1], u, alpha=beta) if t <= Tc else u * beta
        if t <= Ts:
            continue
        k = t - Ts
        w = weights[k - 1]
        a = torch.floor((u if reset == 1.0 else u * inverse) + 0.5).clamp(-1.0, 1.0)
        if multiples:
            a = torch.maximum(a, torch.clamp(emitted, max=w) / -w)
        elif qmin is not None:
            a = torch.maximum(a, -torch.floor(torch.clamp(emitted - qmin, max=w) / w))
        if qmax is not None and sum(weights[:k]) > qmax:
            a = torch.minimum(a, torch.floor(torch.clamp(qmax - emitted, max=w) / w))
        u = torch.sub(u, a, alpha=reset)
        emitted = torch.add(emitted, a, alpha=w)
        spikes.append(a)
    return torch.stack(spikes)


class _TSAExport(TSANeuron):
    def dynamics(self, inputs: Tensor) -> Tensor:
        return tsa_spikes(inputs, Ts=self.Ts, beta=self.beta, qmax=self.qmax, qmin=0.0)


class _SWSMaxPoolExport(SWSMaxPoolNeuron):
    def dynamics(self, inputs: Tensor) -> Tensor:
        return tsa_spikes(self.increments(inputs), Ts=self.Ts, beta=self.beta, qmax=self.qmax, qmin=0.0)


class _SWSEncoderExport(SWSEncoder):
    def dynamics(self, inputs: Tensor) -> Tensor:
        values = self.integers(inputs[0])
        first = (values / self.beta ** (self.Tc - 1)).unsqueeze(0)
        pulses = torch.cat([first, torch.zeros_like(first).expand(self.Tc - 1, *values.shape)])
        return tsa_spikes(pulses, Ts=0, beta=self.beta, qmax=None, qmin=None)


_TWINS: dict[type, type] = {MLIFNeuron: _MLIFExport, TSANeuron: _TSAExport, SWSMaxPoolNeuron: _SWSMaxPoolExport,
                            SWSEncoder: _SWSEncoderExport}


def exportable_copy(snn: SpikingNetwork) -> SpikingNetwork:
    """A float32 eval copy of ``snn`` with export twins in place of neurons whose simulator code
    (in-place fast paths, float bit tricks) the ONNX exporter cannot trace."""
    net = copy.deepcopy(snn).float().eval()
    for module in list(net.modules()):
        twin = _TWINS.get(type(module))
        if twin is not None:
            module.__class__ = twin  # same state, export-friendly dynamics
    for module in net.modules():
        if isinstance(module, SpikingNeuron):
            module.recording = False
            if isinstance(module, _OUT_OF_PLACE):  # their fast paths write with out=, which ONNX lacks
                module.needs_grad = _always  # type: ignore[method-assign]
    return net


def _always(_inputs: Tensor) -> bool:
    return True


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
            if isinstance(module, IFNeuron):
                self.states.append((f"membrane_{node.target}", node.target, float(module.init)))
            elif isinstance(module, MLIFNeuron):
                self.states += [(f"membrane_{node.target}", node.target, 0.0),
                                (f"output_{node.target}", node.target, 0.0)]
            elif isinstance(module, RateMaxPool):
                self.states += [(f"sums_{node.target}", node.target, 0.0), (f"pooled_{node.target}", node.target, 0.0)]
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
        if isinstance(module, IFNeuron):  # u += z; s = [u >= 1]; u -= s (threshold units)
            u = given[f"membrane_{name}"] + x
            spikes = (u >= 1.0).to(x.dtype)
            new[f"membrane_{name}"] = u - spikes
            return spikes
        if isinstance(module, MLIFNeuron):  # u = beta u + z - o_prev; o = lane of u (eqs 6-8)
            u = given[f"membrane_{name}"]
            if module.beta != 1.0:
                u = u * module.beta
            u = u + x - given[f"output_{name}"]
            level = _MLIFExport._level(module, u)
            new[f"membrane_{name}"], new[f"output_{name}"] = u, level
            return level
        if isinstance(module, RateMaxPool):  # increments of the max-pooled running sums
            sums = given[f"sums_{name}"] + x
            pooled = F.max_pool2d(sums, **module.pool)
            new[f"sums_{name}"], new[f"pooled_{name}"] = sums, pooled
            return pooled - given[f"pooled_{name}"]
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
        if isinstance(module, SpikingNeuron):
            plain = getattr(module, "threshold", None) is None and getattr(module, "leak", None) is None
            if not isinstance(module, (IFNeuron, MLIFNeuron, RateMaxPool)) or not plain:
                problems.append(f"{type(module).__name__} at {name}")
            elif isinstance(module, IFNeuron) and module.order != "mlif":
                problems.append(f"{type(module).__name__} at {name} (dtss order)")
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
        raise SnnConvertError(f"--mode step needs every layer on one time base with a one-frame update; the "
                              f"{snn.coding} network has {'; '.join(problems[:4])}; export --mode unrolled")
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
            out = tuple(meta.shape[1:])
            if isinstance(module, (IFNeuron, MLIFNeuron)):
                shapes[f"membrane_{node.target}"] = out
                shapes[f"output_{node.target}"] = out
            elif isinstance(module, RateMaxPool):
                shapes[f"sums_{node.target}"] = tuple(node.args[0].meta["tensor_meta"].shape[1:])
                shapes[f"pooled_{node.target}"] = out
    return shapes
