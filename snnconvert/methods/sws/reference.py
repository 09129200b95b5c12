"""A naive step-by-step simulator of SWS networks, for checking the time-folded engine.

It runs absolute time t = 1, 2, ..., T_inf one step at a time, every node of the body on one
frame per step, each neuron with its own persistent state, and explicit delay lines for the
branches of residual additions. It shares no dynamics code with the engine (the TSA step is
written out here with plain comparisons), so agreement of the two is a real check of folding,
alignment, bias spreading and the vectorised dynamics. It is slow and meant for small nets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from snnconvert.graph.latency import attribute_delay, path_latency
from snnconvert.methods.sws.neuron import SWSEncoder, SWSMaxPoolNeuron, TSANeuron
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import SynapseAffine, SynapseConv2d, SynapseLinear


@dataclass
class _TSAState:
    u: Tensor
    emitted: Tensor


def tsa_step(state: _TSAState, z: Tensor | None, fire_index: int, *, Tc: int, Ts: int, beta: float,
             qmax: float | None, qmin: float | None, fraction: float = 0.5) -> Tensor:
    """One step of one TSA layer: amplify, integrate, and (if ``fire_index`` >= 1) fire spike
    number ``fire_index`` unless the clamp forbids it."""
    state.u = beta * state.u + (z if z is not None else 0.0)
    spikes = torch.zeros_like(state.u)
    if fire_index < 1:
        return spikes
    weight = beta ** (Tc - fire_index)
    threshold = beta**Ts * fraction  # V_th: half a spike (the paper) or a whole one (fig 5b)
    up = state.u >= threshold
    down = state.u < -threshold
    if qmax is not None:
        up = up & (state.emitted + weight <= qmax)
    if qmin is not None:
        down = down & (state.emitted - weight >= qmin)
    spikes[up] = 1.0
    spikes[down] = -1.0
    state.u = state.u - spikes * beta**Ts
    state.emitted = state.emitted + spikes * weight
    return spikes


def _synapse_step(module: nn.Module, x: Tensor, digit: int) -> Tensor:
    gain = float(module.frame_bias_gain[digit - 1])
    if isinstance(module, SynapseConv2d):
        y = F.conv2d(x, module.weight, None, module.stride, module.padding, module.dilation, module.groups)
        return y + gain * module.bias.view(1, -1, 1, 1) if module.bias is not None else y
    if isinstance(module, SynapseLinear):
        y = F.linear(x, module.weight)
        return y + gain * module.bias if module.bias is not None else y
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return x * module.scale.view(shape) + gain * module.shift.view(shape)


@torch.no_grad()
def reference_run(snn: SpikingNetwork, images: Tensor) -> tuple[Tensor, dict[str, list[Tensor]]]:
    """Simulate ``snn`` (an SWS network) step by step; returns the logits and, for every neuron
    layer, its output spikes in digit order (Tc frames)."""
    body = snn.body
    encoder: SWSEncoder = snn.encoder
    Tc, beta = encoder.Tc, encoder.beta
    delays = path_latency(body, attribute_delay("Ts")).delays
    total = Tc + max(delays.values())
    history: dict[str, dict[int, Tensor]] = {}  # node -> {digit: frame}
    states: dict[str, object] = {}
    spikes_out: dict[str, list[Tensor]] = {}

    values = encoder.integers(images.to(snn.compute_dtype()))
    enc_state = _TSAState(torch.zeros_like(values), torch.zeros_like(values))
    acc: Tensor | None = None
    out_node = next(n for n in body.graph.nodes if n.op == "output")
    for t in range(1, total + 1):
        for node in body.graph.nodes:
            d = delays[node.name]
            digit = t - d
            if node.op == "placeholder":
                pulse = values / beta ** (Tc - 1) if t == 1 else None
                frame = tsa_step(enc_state, pulse, t if t <= Tc else 0, Tc=Tc, Ts=0, beta=beta, qmax=None, qmin=None)
                if 1 <= t <= Tc:
                    history.setdefault(node.name, {})[t] = frame
                continue
            if node.op == "output":
                continue
            module = body.get_submodule(node.target) if node.op == "call_module" else None
            if isinstance(module, (TSANeuron, SWSMaxPoolNeuron)):
                _neuron_step(node, module, t, delays, history, states, spikes_out, Tc)
                continue
            if not 1 <= digit <= Tc:
                continue
            args = _resolve(node.args, history, digit)
            kwargs = _resolve(node.kwargs, history, digit)
            if isinstance(module, (SynapseConv2d, SynapseLinear, SynapseAffine)):
                result = _synapse_step(module, args[0], digit)
            elif module is not None:
                result = module(*args, **kwargs)
            elif node.op == "call_function":
                result = node.target(*args, **kwargs)
            else:
                result = getattr(args[0], node.target)(*args[1:], **kwargs)
            history.setdefault(node.name, {})[digit] = result
        last = out_node.args[0]
        digit = t - delays[last.name]
        if 1 <= digit <= Tc:
            frame = history[last.name][digit]
            acc = frame if acc is None else beta * acc + frame
    return acc, spikes_out


def _resolve(arg, history: dict[str, dict[int, Tensor]], digit: int):
    if isinstance(arg, fx.Node):
        if arg.name in history and digit in history[arg.name]:
            return history[arg.name][digit]
        raise KeyError(f"{arg.name} has no frame for digit {digit}")
    if isinstance(arg, (tuple, list)):
        return type(arg)(_resolve(a, history, digit) for a in arg)
    if isinstance(arg, dict):
        return {k: _resolve(v, history, digit) for k, v in arg.items()}
    return arg


def _neuron_step(node: fx.Node, module: TSANeuron | SWSMaxPoolNeuron, t: int, delays: dict[str, int],
                 history: dict[str, dict[int, Tensor]], states: dict[str, object],
                 spikes_out: dict[str, list[Tensor]], Tc: int) -> None:
    source = node.args[0]
    local = t - delays[source.name]  # this neuron's own time: input digit `local` arrives now
    if local < 1 or local > module.Ts + Tc:
        return
    frame = history[source.name].get(local) if local <= Tc else None
    if isinstance(module, SWSMaxPoolNeuron):
        st = states.setdefault(node.name, {"running": None, "pooled": None, "tsa": None})
        if frame is not None:
            st["running"] = frame if st["running"] is None else module.beta * st["running"] + frame
            pooled = F.max_pool2d(st["running"], **module.pool)
            z = pooled if st["pooled"] is None else pooled - module.beta * st["pooled"]
            st["pooled"] = pooled
        else:
            z = None
        if st["tsa"] is None:
            zero = torch.zeros_like(st["pooled"])
            st["tsa"] = _TSAState(zero, zero.clone())
        state = st["tsa"]
    else:
        if node.name not in states:
            zero = torch.zeros_like(frame)
            states[node.name] = _TSAState(zero, zero.clone())
        state = states[node.name]
        z = frame
    fire = local - module.Ts if local > module.Ts else 0
    spikes = tsa_step(state, z, fire, Tc=Tc, Ts=module.Ts, beta=module.beta, qmax=module.qmax, qmin=0.0,
                      fraction=getattr(module, "threshold", 0.5))
    if fire >= 1:
        history.setdefault(node.name, {})[fire] = spikes
        spikes_out.setdefault(node.target, []).append(spikes)
