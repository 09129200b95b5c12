"""``adaptive_bits``: adaptive bit allocation of multi-bit SNNs (paper 002 §4, A.3, A.5.1, A.9).

``prepare`` turns a converted multi-bit SNN into one with learnable per-layer widths:

* every :class:`~snnconvert.methods.multibit.neuron.MultiBitNeuron` (and the input encoder) becomes an
  :class:`~snnconvert.methods.multibit.adaptive_neuron.AdaptiveMultiBitNeuron`: per-time-step thresholds and
  spike widths, a learnable ``T_l`` and temporal squeezing (eq 13) on one frame per layer;
* every conv / linear synapse becomes an adaptive synapse with a learnable weight width and
  step (eq 6, initialised by Algorithm 2 on its weights);
* the initial widths are ``init_bits`` W/S/T (paper: 4/4/2), the thresholds keep the converted
  clip ranges (``theta q_max``) at the initial spike width.

``loss`` is the regulating loss of eq 22, ``before_step`` the first-batch initialisation of the
thresholds (A.9 line 2, Algorithm 2 on the membrane potentials, in every mode) and the step-size
renewal of Algorithms 1-2 (``renewal``: none | activations | weights | both; off for a kind once its
average width is within 24 % of the initial gap to the target, A.9), ``record`` the average W / S / T
(and the learned widths into ``snn.info``), and
the widths and step sizes train by SGD at the fixed ``bits_lr`` (A.5.1; ``after_step``, on the
parameters ``own_parameters`` keeps out of the engine's optimizer), or with ``bits_optimizer=adam``
the widths join the engine's optimizer at ``bits_lr`` (``parameter_groups``). :func:`refresh_info` (after
``prepare`` and every epoch) keeps ``snn.info`` (T, widths, latency of the learned per-layer T)
in step with the learned widths. With ``learn_bits=False``
the widths stay at ``init_bits``: plain uniform quantization (the paper's U-quant baseline,
steps still learned).

The conversion must be one the squeezed (one-frame) network reproduces: ``squeeze="always"``, or
T = 1 in every layer (then both are the same).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, fx, nn

from snnconvert.errors import SnnConvertError
from snnconvert.finetune.methods import TrainingMethod, register_method
from snnconvert.graph.ops import Kind, kind_of, module_of
from snnconvert.methods.multibit.adaptive_neuron import AdaptiveMultiBitEncoder, AdaptiveMultiBitNeuron
from snnconvert.methods.multibit.config import ADAPTIVE_BITS, AdaptiveBitsConfig, MultiBitConfig
from snnconvert.methods.multibit.learnable import AdaptiveSynapseConv2d, AdaptiveSynapseLinear, LearnableWeights
from snnconvert.methods.multibit.metrics import allocation
from snnconvert.methods.multibit.neuron import MultiBitEncoder, MultiBitNeuron, TemporalSqueeze
from snnconvert.options import opt
from snnconvert.simulate.synapse import SynapseConv2d, SynapseLinear, WeightedSumDecoder

SHUTTING_SHARE = 0.24  # §4.4.2 / A.9: renewal stops within 24 % of the initial gap


# ------------------------------------------------------------------------------------ prepare


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _check_squeezable(model: nn.Module) -> None:
    info = getattr(model, "info", {})
    if getattr(model, "coding", None) != "multibit":
        raise SnnConvertError("adaptive_bits needs a multi-bit SNN: convert with `to-snn --coding multibit`")
    steps = [n.steps_out for n in model.neurons().values() if isinstance(n, MultiBitNeuron)]
    if info.get("squeeze") != "always" and any(s != 1 for s in steps):
        raise SnnConvertError(f"adaptive_bits trains squeezed layers (eq 13): convert with "
                              f"{opt(MultiBitConfig, 'squeeze')} always (or T = 1)")


def prepare(model: nn.Module, config: AdaptiveBitsConfig) -> nn.Module:
    """Learnable widths in place of the converted neurons and synapses (see the module docstring)."""
    if any(isinstance(m, AdaptiveMultiBitNeuron) for m in model.modules()):
        _set_learning(model, config)
        refresh_info(model)
        return model  # already adaptive (a fine-tuned artifact trained further)
    _check_squeezable(model)
    w0, s0, t0 = config.inits()
    wb, sb, tb = config.bound_values()
    kwargs = dict(bits_bound=sb, steps_bound=tb, init_bits=s0, init_steps=t0, rounding=config.rounding,
                  tau=config.tau)
    sizes = model.info.get("neuron_sizes", {})
    for name, neuron in list(model.neurons().items()):
        if isinstance(neuron, MultiBitEncoder):
            new = AdaptiveMultiBitEncoder.from_multibit(neuron, **kwargs)
        elif isinstance(neuron, MultiBitNeuron):
            new = AdaptiveMultiBitNeuron.from_multibit(neuron, **kwargs)
        else:
            continue
        new.elements.fill_(float(sizes.get(name, {}).get("neurons", 1)))
        _replace(model, "encoder" if neuron is model.encoder else f"body.{name}", new)
    body = model.body
    for name, mod in list(body.named_modules()):
        if isinstance(mod, TemporalSqueeze):
            _replace(body, name, TemporalSqueeze(1, 1))
        elif isinstance(mod, (SynapseConv2d, SynapseLinear)) and not isinstance(mod, LearnableWeights):
            mod.frame_bias_gain = torch.ones(1, dtype=mod.frame_bias_gain.dtype)
            if config.quantize_weights:
                cls = AdaptiveSynapseConv2d if isinstance(mod, SynapseConv2d) else AdaptiveSynapseLinear
                new = cls.from_synapse(mod, wb, w0)
                new.init_step(config.grid_iterations)
                _replace(body, name, new)
        elif hasattr(mod, "frame_bias_gain") and mod.frame_bias_gain.numel() != 1:
            mod.frame_bias_gain = torch.ones(1, dtype=mod.frame_bias_gain.dtype)
    if isinstance(body, fx.GraphModule):
        body.recompile()
    if isinstance(model.decoder, WeightedSumDecoder):
        model.decoder = WeightedSumDecoder(1).to(model.decoder.weights.dtype)
    model.info = {**copy.deepcopy(model.info), "squeeze": "always", "adaptive_bits": {
        "init_bits": config.init_bits, "target_bits": config.target_bits, "bounds": config.bounds,
        "renewal": config.renewal, "rounding": config.rounding, "learn_bits": config.learn_bits}}
    for m in model.modules():  # the renewal flags follow the mode (initialisation happens in any mode)
        if isinstance(m, AdaptiveMultiBitNeuron):
            m.renewal.fill_(float(config.renewal in ("activations", "both") and config.learn_bits))
        elif isinstance(m, LearnableWeights):
            m.renewal.fill_(float(config.renewal in ("weights", "both") and config.learn_bits))
    _set_learning(model, config)
    refresh_info(model)
    return model


def _set_learning(model: nn.Module, config: AdaptiveBitsConfig) -> None:
    for m in model.modules():
        if isinstance(m, AdaptiveMultiBitNeuron):
            m.threshold.requires_grad_(True)
            m.bits_hat.requires_grad_(config.learn_bits)
            m.steps_hat.requires_grad_(config.learn_bits)
        elif isinstance(m, LearnableWeights):
            m.weight_step.requires_grad_(True)
            m.bits_hat.requires_grad_(config.learn_bits)


# ------------------------------------------------------------------------------------ averages


def _neurons(model: nn.Module) -> list[AdaptiveMultiBitNeuron]:
    return [m for m in model.modules() if isinstance(m, AdaptiveMultiBitNeuron)]


def _synapses(model: nn.Module) -> list[LearnableWeights]:
    return [m for m in model.modules() if isinstance(m, LearnableWeights)]


def averages(model: nn.Module) -> dict[str, Tensor]:
    """``W``: weight-count average of B_w; ``S`` / ``T``: feature-element averages of the mean
    spike width over the active steps and of T_l (eq 22's averages; differentiable)."""
    from snnconvert.methods.multibit.learnable import width

    neurons, synapses = _neurons(model), _synapses(model)
    out: dict[str, Tensor] = {}
    if synapses:
        counts = torch.tensor([float(s.weight.numel()) for s in synapses])
        widths = torch.stack([width(s.bits_hat, s.bits_bound).float() for s in synapses])
        out["W"] = (widths * counts).sum() / counts.sum()
    if neurons:
        counts = torch.stack([n.elements.float() for n in neurons])
        out["S"] = (torch.stack([n.mean_bits().float() for n in neurons]) * counts).sum() / counts.sum()
        out["T"] = (torch.stack([n.steps_value().float() for n in neurons]) * counts).sum() / counts.sum()
    return out


def regulating_loss(model: nn.Module, config: AdaptiveBitsConfig) -> Tensor | None:
    """Eq 22's penalty: ``l1 (W - W*)^2 + l2 (T - T*)^2 + l3 (S - S*)^2`` (the targets of the
    current step with ``target_ramp_steps``)."""
    if not config.learn_bits:
        return None
    avg = averages(model)
    w_t, s_t, t_t = config.targets_at(int(model.adaptive_bits_step)) if hasattr(model, "adaptive_bits_step") \
        else config.targets()
    loss = None
    for key, target, lam in (("W", w_t, config.lambda_w), ("T", t_t, config.lambda_t), ("S", s_t, config.lambda_s)):
        if key in avg and lam > 0:
            term = lam * (avg[key] - target) ** 2
            loss = term if loss is None else loss + term
    return loss


# ------------------------------------------------------------------------------------ renewal


@torch.no_grad()
def renewal_step(model: nn.Module, config: AdaptiveBitsConfig, images: Tensor) -> dict[str, int]:
    """Algorithm A.9 lines 2 and 7-17. Thresholds never set from data (``recorded_bits`` 0) are
    initialised on this batch (line 2, whatever the mode); then, per the renewal mode, the shut-off
    check and Algorithm 1 for weights (on the weights) and activations (on the membrane potentials
    of one no-grad forward of ``images``) whose width changed. Returns how many quantizers renewed
    (initialisations included)."""
    fired = {"weights": 0, "activations": 0}
    avg = {k: float(v.detach()) for k, v in averages(model).items()}
    w_t, s_t, _ = config.targets()
    w_0, s_0, _ = config.inits()
    synapses, neurons = _synapses(model), _neurons(model)
    if "W" in avg and abs(avg["W"] - w_t) <= SHUTTING_SHARE * abs(w_0 - w_t):
        for syn in synapses:
            syn.renewal.fill_(0.0)
    fired["weights"] = sum(bool(syn.observe(config.grid_iterations, config.grid_power)) for syn in synapses)
    if "S" in avg and abs(avg["S"] - s_t) <= SHUTTING_SHARE * abs(s_0 - s_t):
        for n in neurons:
            n.renewal.fill_(0.0)

    def due(n: AdaptiveMultiBitNeuron) -> bool:
        recorded = n.recorded_bits.tolist()
        return any(r == 0 or (b != r and bool(n.renewal))
                   for b, r in zip(n.step_bits()[:n.steps], recorded, strict=False))

    pending = [n for n in neurons if due(n)]
    if pending:
        for n in pending:
            n.observe_iterations, n.observe_power = config.grid_iterations, config.grid_power
            n.renewed = []
        was = model.training
        model.eval()
        model(images)
        model.train(was)
        fired["activations"] = sum(len(n.renewed) for n in pending)
    return fired


# ------------------------------------------------------------------------------------ hooks


def _loss(model: nn.Module, config: AdaptiveBitsConfig) -> Tensor | None:
    return regulating_loss(model, config)


def _before_step(model: nn.Module, config: AdaptiveBitsConfig, step: int, images: Tensor) -> None:
    if not hasattr(model, "adaptive_bits_step"):  # the step eq 22's ramped targets are read at
        model.register_buffer("adaptive_bits_step", torch.zeros((), dtype=torch.long), persistent=False)
    model.adaptive_bits_step.fill_(step)
    renewal_step(model, config, images)


def _sgd_slots(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Parameter]]:
    """``(module, name, parameter)`` of every width (``B^_w``, ``B^_s``, ``T^``) and step size (the
    neurons' thresholds ``V_th^1``, the synapses' ``S_q``) that requires gradients."""
    for m in model.modules():
        names = ("bits_hat", "steps_hat", "threshold") if isinstance(m, AdaptiveMultiBitNeuron) \
            else ("bits_hat", "weight_step") if isinstance(m, LearnableWeights) else ()
        for name in names:
            p = getattr(m, name, None)
            if isinstance(p, nn.Parameter) and p.requires_grad:
                yield m, name, p


def sgd_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What ``bits_optimizer=sgd`` trains (see :func:`_sgd_slots`)."""
    return [p for _, _, p in _sgd_slots(model)]


@torch.no_grad()
def sgd_step(model: nn.Module, lr: float, momentum: float) -> int:
    """One SGD step (``v = momentum v + g; p -= lr v``) on :func:`sgd_parameters`, whose
    gradients it then clears; the velocities are buffers of the owning modules (not saved).
    Returns how many parameters moved."""
    moved = 0
    for m, name, p in _sgd_slots(model):
        if p.grad is None:
            continue
        key = f"{name}_velocity"
        velocity = getattr(m, key, None)
        if velocity is None or velocity.shape != p.shape:
            m.register_buffer(key, torch.zeros_like(p), persistent=False)
            velocity = getattr(m, key)
        velocity.mul_(momentum).add_(p.grad)
        p.sub_(lr * velocity)
        p.grad = None
        moved += 1
    return moved


def _after_step(model: nn.Module, config: AdaptiveBitsConfig, step: int) -> None:
    if config.bits_optimizer == "sgd":
        sgd_step(model, float(config.bits_lr), float(config.bits_momentum))


def _record(model: nn.Module, config: AdaptiveBitsConfig) -> dict[str, Any]:
    avg = {k: round(float(v.detach()), 4) for k, v in averages(model).items()}
    refresh_info(model)
    return {f"avg_{k}": v for k, v in avg.items()}


# ------------------------------------------------------------------------------------ learned facts


def learned_latency(model: nn.Module) -> tuple[int, int]:
    """``(latency, squeeze wait)`` of the learned per-layer T: the steps the frame-by-frame network
    with these T and ``squeeze="always"`` needs until its output is complete (what
    :func:`snnconvert.methods.multibit.coding.convert` reports for it). Each neuron layer waits for the
    ``T_in`` frames of its input (eq 13), a join of branches with different T for the frames of the
    shorter ones; the output is complete ``T_out`` steps after its first frame."""
    body = model.body
    encoder = model.encoder
    frames: dict[str, int] = {}
    delays: dict[str, int] = {}
    for node in body.graph.nodes:
        if node.op == "placeholder":
            frames[node.name] = encoder.steps if isinstance(encoder, AdaptiveMultiBitNeuron) else 1
            delays[node.name] = 0
            continue
        inputs = [i for i in node.all_input_nodes if i.name in frames]
        if not inputs or kind_of(body, node) is Kind.SHAPE:
            continue
        mod = module_of(body, node)
        target = max(frames[i.name] for i in inputs)
        if isinstance(mod, AdaptiveMultiBitNeuron):
            delays[node.name] = max(delays[i.name] for i in inputs) + target - 1
            frames[node.name] = mod.steps
        else:
            delays[node.name] = max(delays[i.name] + (frames[i.name] - 1 if frames[i.name] != target else 0)
                                    for i in inputs)
            frames[node.name] = target
    out = next(n for n in body.graph.nodes if n.op == "output")
    return delays[out.name] + frames[out.name], delays[out.name]


def refresh_info(model: nn.Module) -> None:
    """Make ``model.info`` describe the current learned widths: the summary facts of the multi-bit
    coding (``T``, ``bits_spike``, ``bits_weight`` and their per-layer lists), ``latency`` /
    ``latency_terms`` / ``squeeze_steps`` of the learned per-layer T (:func:`learned_latency`),
    ``frames`` (one squeezed frame per layer) and the learned allocation table."""
    from snnconvert.methods.multibit.coding import _latency_terms

    neurons = [n for n in model.neurons().values() if isinstance(n, AdaptiveMultiBitNeuron)]
    if not neurons:
        return
    info = dict(model.info)
    data = allocation(model)
    if data is not None:
        info["adaptive_bits"] = {**info.get("adaptive_bits", {}), "layers": data["layers"]}
    steps = [n.steps for n in neurons]
    spike_bits = [round(float(n.mean_bits().detach()), 3) for n in neurons]
    latency, waited = learned_latency(model)
    info.update(T=steps[0] if len(set(steps)) == 1 else steps, T_layers=steps,
                bits_spike=spike_bits[0] if len(set(spike_bits)) == 1 else spike_bits,
                bits_spike_layers=spike_bits, frames=1, latency=latency, squeeze_steps=waited,
                latency_terms=_latency_terms(steps, waited))
    weight_bits = sorted({s.bits for s in _synapses(model)})
    if weight_bits:
        info["bits_weight"] = weight_bits[0] if len(weight_bits) == 1 else weight_bits
    model.info = info


def _groups(model: nn.Module, config: AdaptiveBitsConfig) -> list[tuple[list[nn.Parameter], float]]:
    if config.bits_optimizer == "sgd":
        return []
    params = [p for m in model.modules() if isinstance(m, (AdaptiveMultiBitNeuron, LearnableWeights))
              for p in (m.bits_hat, getattr(m, "steps_hat", None)) if p is not None and p.requires_grad]
    return [(params, float(config.bits_lr))] if params else []


def _own(model: nn.Module, config: AdaptiveBitsConfig) -> list[nn.Parameter]:
    return sgd_parameters(model) if config.bits_optimizer == "sgd" else []


METHOD = register_method(TrainingMethod.of(
    ADAPTIVE_BITS,
    prepare=prepare,
    loss=_loss,
    before_step=_before_step,
    after_step=_after_step,
    record=_record,
    parameter_groups=_groups,
    own_parameters=_own,
))
