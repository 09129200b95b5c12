"""Layer-wise calibration of a converted network against its ANN, right after conversion.

A coding that is not exact (its neurons quantize activations coarsely: M-LIF at small T, rate
coding at small T, ...) loses accuracy layer by layer; the errors compound. Calibration fits,
layer by layer from the input, the parameters of each neuron layer so that its time-averaged
output matches the ANN's activation at the same layer on the same calibration images, with the
layers below already calibrated (the facts used: bias correction and layer-wise weight
calibration of Li et al. 2021, "A Free Lunch From ANN"; the error of low-latency codings is a
mean offset plus a scale mismatch, Hao et al. 2023).

It works on the *unfolded* conversion graph, where every neuron layer reads
``Gain(1/theta) -> neuron -> Gain(theta)`` (what :func:`~snnconvert.codings.common.insert_neurons`
builds, before :func:`~snnconvert.codings.gains.fold_gains`), so nothing here names a coding:

* the **threshold** of a layer is a scale ``c`` on both gains (``1/(c theta)``, ``c theta``):
  for a positively homogeneous neuron that is exactly a threshold (and spike amplitude) change;
  ``c`` is chosen on a geometric grid by the mean squared error of the layer's decoded output;
* the **bias** is a per-channel current ``delta`` added to the synapse that feeds the layer
  (directly or through a residual add); it is fitted by the bias-correction iteration
  ``delta += mean(ANN - SNN)`` per channel, each step kept only if it lowers the error;
* ``layerwise`` also solves that synapse's weights and bias in closed form: ridge least squares
  from the SNN's time-averaged inputs (the calibrated layers below, spikes and all) to the ANN's
  pre-activation at the layer (less what a residual shortcut already brings), then fits the
  threshold and bias again; the better of the two fits is kept. After the last layer the
  classifier is refitted the same way to the ANN's logits (held closer to its weights: it has
  one row per image, not per position). The weights leave the quantized ANN's grid.

Layers the walk cannot pair with an ANN activation or adjust are left as they are and counted.
Everything is deterministic (fixed grid, fixed image order, no sampling).
"""

from __future__ import annotations

import copy
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from snnconvert.graph.ops import Kind, kind_of, module_of
from snnconvert.neurons.base import SpikingNeuron, unfold_time
from snnconvert.options import check_calibration
from snnconvert.simulate.synapse import Gain, SynapseAffine, SynapseConv2d, SynapseLinear

SCALE_GRID = tuple(2.0 ** (k / 2) for k in range(-10, 3))  # 1/32 .. 2 around the coding's threshold
REFINE = (2.0 ** -0.25, 2.0 ** 0.25)
BIAS_STEPS = 3
BATCH = 64
RIDGE = 1e-3  # weight fit: ridge toward the present weights, relative to the mean input energy
FIT_ROWS = 1 << 19  # a weight fit reads at most this many rows (positions of all images): every k-th
UNFOLD_ELEMENTS = 1 << 24  # patch values unfolded at once (images in chunks)
HEAD_RIDGE = 0.1  # the classifier's fit has one row per image, not per position: held closer
SAMPLE_PER_CHANNEL = 16384  # positions per channel the threshold and bias search evaluates


def check_mode(mode: str) -> None:
    """Raise the one-line error for an unknown ``--calibrate`` value."""
    check_calibration(mode, 1.0, 2)


class _Stepper(fx.Interpreter):
    """Run a graph on one input node by node, on demand: :meth:`value` executes nodes up to the
    one asked for, so calibrating layer by layer costs one pass over the network. Values are
    freed after their last user ran, unless pinned."""

    def __init__(self, gm: fx.GraphModule, x: Tensor) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.nodes = list(gm.graph.nodes)
        self.index = index = {n: i for i, n in enumerate(self.nodes)}
        self.last_use = {n: max((index[u] for u in n.users), default=index[n]) for n in self.nodes}
        self.pos, self.pinned = 0, set()
        self.args_iter = iter([x])

    def value(self, node: fx.Node) -> Tensor:
        while node not in self.env:
            if self.pos >= len(self.nodes):
                raise KeyError(node.name)
            n = self.nodes[self.pos]
            with torch.no_grad():
                self.env[n] = self.run_node(n)
            for used in n.all_input_nodes:
                if self.last_use[used] <= self.pos and used not in self.pinned and used is not node:
                    self.env.pop(used, None)
            self.pos += 1
        return self.env[node]

    def reachable(self, node: fx.Node) -> bool:
        """Whether :meth:`value` can still give ``node`` (held, or not run yet)."""
        return node in self.env or self.index.get(node, -1) >= self.pos

    def release(self, node: fx.Node) -> None:
        self.pinned.discard(node)
        if self.last_use[node] < self.pos:
            self.env.pop(node, None)


def _is_add(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add)) or \
        (node.op == "call_method" and node.target in ("add", "add_"))


_BIASED = (SynapseConv2d, SynapseLinear, SynapseAffine)


def _bias_of(mod: nn.Module) -> Tensor | None:
    if isinstance(mod, SynapseAffine):
        return mod.shift
    return getattr(mod, "bias", None)


@dataclass
class _Site:
    """One neuron layer of the unfolded graph and the knobs calibration may turn."""

    name: str  # the neuron's module name (the activation it replaced)
    neuron: SpikingNeuron
    current: fx.Node  # the real-unit input current (what the in-gain scales)
    in_gain: Gain
    out_gain: Gain
    reference: str  # the ANN activation node's name
    synapse: nn.Module | None = None  # where a bias shift goes (None: no bias knob)
    synapse_node: fx.Node | None = None


def _feeding_synapse(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module | None, fx.Node | None]:
    """The synapse whose bias shifts ``node``'s value one to one: ``node`` itself, or an operand
    of a residual add; the synapse must feed nothing else and add its bias equally every frame."""
    candidates = [node] if not _is_add(node) else [a for a in node.args if isinstance(a, fx.Node)]
    for cand in candidates:
        mod = module_of(gm, cand)
        if not isinstance(mod, _BIASED) or _bias_of(mod) is None or len(cand.users) != 1:
            continue
        gains = mod.frame_bias_gain
        if bool((gains == gains[0]).all()) and float(gains[0]) != 0.0:
            return mod, cand
    return None, None


def find_sites(gm: fx.GraphModule, reference: fx.GraphModule) -> tuple[list[_Site], list[str]]:
    """The calibratable neuron layers of ``gm`` in graph order, and the names of neuron layers
    that are not (no ANN activation of the same name, or no gains around them)."""
    acts = {str(n.target): n.name for n in reference.graph.nodes if kind_of(reference, n) is Kind.ACTIVATION}
    sites, skipped = [], []
    for node in gm.graph.nodes:
        mod = module_of(gm, node)
        if not isinstance(mod, SpikingNeuron):
            continue
        name = str(node.target)
        if name not in acts:  # a max-pool on spikes, an input encoder layer, ...
            continue
        before = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        in_gain = module_of(gm, before) if before is not None else None
        out_gain = None
        users = list(node.users)
        if len(users) == 1:
            out_gain = module_of(gm, users[0])
            if not isinstance(out_gain, Gain):  # a pool the gain moved behind
                nxt = list(users[0].users)
                out_gain = module_of(gm, nxt[0]) if len(nxt) == 1 else None
        if not isinstance(in_gain, Gain) or not isinstance(out_gain, Gain) or len(before.users) != 1 or \
                not isinstance(before.args[0], fx.Node):
            skipped.append(name)
            continue
        current = before.args[0]
        synapse, syn_node = _feeding_synapse(gm, current)
        sites.append(_Site(name, mod, current, in_gain, out_gain, acts[name], synapse, syn_node))
    return sites, skipped


def _channel_view(value: Tensor, dims: int) -> Tensor:
    value = value.reshape(-1)
    return value.reshape(()) if value.numel() == 1 else value.view((1, -1) + (1,) * (dims - 2))


@dataclass
class _LayerData:
    currents: list[Tensor]  # per batch: folded input current frames (float32)
    targets: list[Tensor]  # per batch: the ANN activation


def _sample(data: _LayerData, steps: int, limit: int = SAMPLE_PER_CHANNEL) -> _LayerData:
    """At most about ``limit`` positions per channel of every image batch together (every k-th,
    deterministic), as one frame batch ``(steps, C, 1, P)`` and target ``(1, C, 1, P)``: the
    neurons act element by element, so the search needs no spatial layout."""
    if data.targets[0].dim() < 3:  # (B, features): small enough as it is
        return _LayerData([torch.cat([unfold_time(c, steps) for c in data.currents], 1).flatten(0, 1)],
                          [torch.cat(data.targets)]) if len(data.targets) > 1 else data
    currents, targets = [], []
    for current, target in zip(data.currents, data.targets, strict=True):
        c = unfold_time(current, steps)  # (T, B, C, ...)
        currents.append(c.transpose(1, 2).flatten(2))  # (T, C, B*positions)
        targets.append(target.transpose(0, 1).flatten(1))  # (C, B*positions)
    current, target = torch.cat(currents, 2), torch.cat(targets, 1)
    stride = max(1, -(-target.shape[1] // limit))
    current, target = current[:, :, ::stride], target[:, ::stride]
    return _LayerData([current.unsqueeze(2).contiguous()], [target.unsqueeze(1).unsqueeze(0).contiguous()])


def _decoded(site: _Site, current: Tensor, scale: float | Tensor, delta: Tensor | None,
             dtype: torch.dtype) -> Tensor:
    """The layer's time-averaged output (real units) for threshold scale ``scale`` (per layer or
    per channel) and bias ``delta`` (per channel)."""
    z = current.to(dtype)
    dims = z.dim()
    if delta is not None:
        z = z + _channel_view(delta.to(dtype), dims)
    scale = _channel_view(torch.as_tensor(scale, dtype=dtype), dims)
    g_in = _channel_view(site.in_gain.gain.to(dtype), dims) / scale
    out = site.neuron(z * g_in)
    mean = unfold_time(out, site.neuron.steps_out).mean(0)
    return mean * (_channel_view(site.out_gain.gain.to(dtype), dims) * scale)


def _error(site: _Site, data: _LayerData, scale: float | Tensor, delta: Tensor | None,
           dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Per channel: the mean squared error against the ANN and the mean of ``ANN - SNN``."""
    sse = mean = None
    count = 0
    with torch.no_grad():
        for current, target in zip(data.currents, data.targets, strict=True):
            diff = target.to(dtype) - _decoded(site, current, scale, delta, dtype)
            if diff.dim() < 2:
                diff = diff.unsqueeze(1)
            flat = diff.transpose(0, 1).reshape(diff.shape[1], -1).double()
            sq, total = (flat * flat).sum(1), flat.sum(1)
            sse, mean = (sq, total) if sse is None else (sse + sq, mean + total)
            count += flat.shape[1]
    return sse / max(count, 1), mean / max(count, 1)


def _scaled(gain: Gain, scale: Tensor, inverse: bool) -> Tensor:
    """``gain`` times ``scale`` (or divided): one value when every channel's scale is the same."""
    scale = scale.to(gain.gain.dtype)
    if bool((scale == scale[0]).all()):
        scale = scale[:1]
    return gain.gain / scale if inverse else gain.gain * scale


@dataclass
class CalibrationResult:
    """What a calibration did: the proxy before and after, its seconds, per-layer errors."""

    mode: str
    seconds: float = 0.0
    fit_images: int = 0
    holdout_images: int = 0
    layers: int = 0
    calibrated: int = 0
    skipped: list[str] = field(default_factory=list)
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    layer_error: dict[str, list[float]] = field(default_factory=dict)  # name -> [mse before, after]
    stopped: bool = False  # the time budget ran out before the last layer
    head: bool = False  # the classifier was refitted to the ANN's logits
    refitted: list[str] = field(default_factory=list)  # synapses whose weights were solved (off the ANN's grid)
    reverted: bool = False  # the held-out agreement with the ANN fell: the conversion was kept as it was

    def as_info(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "seconds": round(self.seconds, 2), "fit_images": self.fit_images,
            "holdout_images": self.holdout_images, "layers": self.layers, "calibrated": self.calibrated,
            "skipped": self.skipped, "before": self.before, "after": self.after,
            "layer_mse": {k: [float(f"{v:.4g}") for v in pair] for k, pair in self.layer_error.items()},
            "stopped_by_budget": self.stopped, "reverted": self.reverted, "head": self.head,
            "refitted": [] if self.reverted else self.refitted,
        }


def _split(loader: Any, fit: int, holdout: int) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[Tensor, Tensor]]]:
    """The first ``fit`` calibration images for fitting and the next ``holdout`` for the proxy
    (fewer images: halves), in batches of at most :data:`BATCH`."""
    images, labels, want = [], [], fit + holdout
    for batch in loader:
        x, y = batch[0], batch[1]
        images.append(x)
        labels.append(y)
        if sum(len(i) for i in images) >= want:
            break
    if not images:
        return [], []
    x, y = torch.cat(images)[:want], torch.cat(labels)[:want]
    n_fit = fit if len(x) >= want else max(1, len(x) // 2)

    def batches(a: Tensor, b: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [(a[i:i + BATCH], b[i:i + BATCH]) for i in range(0, len(a), BATCH)]

    return batches(x[:n_fit], y[:n_fit]), batches(x[n_fit:], y[n_fit:])


@torch.no_grad()
def proxy(run: Callable[[Tensor], Tensor], reference: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> dict:
    """Top-1 against the labels and argmax agreement with the ANN on ``batches``."""
    hits = agree = total = 0
    for x, y in batches:
        pred = run(x).argmax(1)
        hits += int((pred == y).sum())
        agree += int((pred == reference(x).argmax(1)).sum())
        total += len(y)
    return {"top1": hits / max(total, 1), "agreement": agree / max(total, 1), "images": total}


def _apply_bias(site: _Site, delta: Tensor) -> None:
    bias = _bias_of(site.synapse)
    gain = float(site.synapse.frame_bias_gain[0])
    with torch.no_grad():
        bias.add_((delta / gain).to(bias.dtype).reshape(bias.shape) if delta.numel() == bias.numel()
                  else (delta / gain).to(bias.dtype).expand_as(bias))


def _fit_layer(site: _Site, data: _LayerData, dtype: torch.dtype) -> tuple[float, float, Tensor, Tensor | None]:
    """Threshold scale then bias of one layer, per channel (the neurons act element by element,
    so every channel's error depends on its own scale and bias alone): the mean squared error
    before and after, the scales and the bias shift (None: no bias to shift or none helps)."""
    before, _ = _error(site, data, 1.0, None, dtype)
    best_err, best_scale = before.clone(), torch.ones_like(before)
    best_delta = torch.zeros_like(before)
    biased = site.synapse is not None

    def consider(scale: float | Tensor) -> None:
        """Keep, per channel, the better of (scale, no shift) and (scale, one bias-correction step)."""
        nonlocal best_err, best_scale, best_delta
        scale = torch.as_tensor(scale, dtype=before.dtype).expand_as(before)
        err, chan = _error(site, data, scale, None, dtype)
        candidates = [(err, torch.zeros_like(chan))]
        if biased:
            candidates.append((_error(site, data, scale, chan, dtype)[0], chan))
        for err, shift in candidates:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale = torch.where(better, scale, best_scale)
            best_delta = torch.where(better, shift, best_delta)

    for scale in SCALE_GRID:
        consider(scale)
    center = best_scale.clone()
    for factor in REFINE:
        consider(center * factor)
    delta = None
    if biased:
        delta = best_delta
        for _ in range(BIAS_STEPS):
            _, chan = _error(site, data, best_scale, delta, dtype)
            trial = delta + chan
            err, _ = _error(site, data, best_scale, trial, dtype)
            better = err < best_err
            if not bool(better.any()):
                break
            best_err = torch.where(better, err, best_err)
            delta = torch.where(better, trial, delta)
        if not bool(delta.ne(0).any()):
            delta = None
    total, _ = _error(site, data, best_scale, delta, dtype)  # the channels' choices together
    if not float(total.mean()) <= float(before.mean()):
        return float(before.mean()), float(before.mean()), torch.ones_like(before), None
    return float(before.mean()), float(total.mean()), best_scale, delta


def _patches(syn: nn.Module, x: Tensor) -> Tensor:
    """The synapse's input as rows ``(positions, groups, fan_in)`` of a least-squares problem
    (image patches of a conv; the features of a linear layer)."""
    if isinstance(syn, SynapseLinear):
        return x.reshape(-1, 1, x.shape[-1])
    cols = F.unfold(x, syn.kernel_size, dilation=syn.dilation, padding=syn.padding, stride=syn.stride)
    b, k, positions = cols.shape
    return cols.view(b, syn.groups, k // syn.groups, positions).permute(0, 3, 1, 2).reshape(-1, syn.groups,
                                                                                            k // syn.groups)


def _least_squares(syn: nn.Module, inputs: list[Tensor], targets: list[Tensor], ridge: float,
                   gain: float) -> tuple[Tensor, Tensor]:
    """The weight and bias (in the synapse's layout, float64) that map the time-averaged
    ``inputs`` closest to ``targets`` (the ANN's pre-activation less what reaches the layer
    besides this synapse), ridge-regularized toward the present weights."""
    groups = 1 if isinstance(syn, SynapseLinear) else syn.groups
    out = syn.weight.shape[0]
    w0 = syn.weight.detach().double().reshape(groups, out // groups, -1)
    fan_in = w0.shape[-1]
    b0 = (syn.bias.detach().double() * gain if syn.bias is not None else torch.zeros(out, dtype=torch.float64))
    w0 = torch.cat([w0, b0.view(groups, out // groups, 1)], 2)  # (groups, out/g, fan_in + 1)
    gram = torch.zeros(groups, fan_in + 1, fan_in + 1, dtype=torch.float64)
    cross = torch.zeros(groups, fan_in + 1, out // groups, dtype=torch.float64)
    positions = [y[0, 0].numel() if y.dim() > 2 else 1 for y in targets]  # rows per image
    stride = max(1, -(-sum(len(y) * p for y, p in zip(targets, positions, strict=True)) // FIT_ROWS))
    for x, y, per_image in zip(inputs, targets, positions, strict=True):
        images = max(1, UNFOLD_ELEMENTS // max(per_image * (fan_in * groups + 1), 1))  # images unfolded at once
        for start in range(0, len(x), images):
            rows = _patches(syn, x[start:start + images])[::stride].double()
            rows = torch.cat([rows, torch.ones(rows.shape[0], groups, 1, dtype=rows.dtype)], 2)
            part = y[start:start + images]
            part = part.reshape(part.shape[0], out, -1).transpose(1, 2).reshape(-1, out) if part.dim() > 2 else part
            part = part[::stride].double().view(-1, groups, out // groups)
            gram += torch.einsum("ngk,ngj->gkj", rows, rows)
            cross += torch.einsum("ngk,ngo->gko", rows, part)
    lam = ridge * gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12).view(groups, 1, 1)
    eye = torch.eye(fan_in + 1, dtype=torch.float64).expand_as(gram)
    solved = torch.linalg.solve(gram + lam * eye, cross + lam * w0.transpose(1, 2))  # (groups, fan_in+1, out/g)
    solved = solved.transpose(1, 2).reshape(out, fan_in + 1)
    return solved[:, :-1].reshape(syn.weight.shape), solved[:, -1] / gain


def _solvable(syn: nn.Module) -> bool:
    """A conv or linear synapse with a bias whose patches :func:`_patches` can build."""
    if isinstance(syn, SynapseConv2d):
        return syn.bias is not None and syn.padding_mode == "zeros" and not isinstance(syn.padding, str)
    return isinstance(syn, SynapseLinear) and syn.bias is not None


def _with_weights(syn: nn.Module, weight: Tensor, bias: Tensor) -> nn.Module:
    """A copy of ``syn`` with ``weight`` and ``bias``."""
    trial = copy.deepcopy(syn)
    _copy_weights(weight, bias, trial)
    return trial


def _copy_weights(weight: Tensor, bias: Tensor, *targets: nn.Module) -> None:
    with torch.no_grad():
        for target in targets:
            target.weight.copy_(weight.to(target.weight.dtype))
            target.bias.copy_(bias.to(target.bias.dtype))


def _solve_weights(site: _Site, steps: list[_Stepper], pre: list[Tensor]) -> tuple[list[Tensor], nn.Module] | None:
    """Closed-form weight calibration of the feeding synapse: least squares from the SNN's
    time-averaged inputs to the ANN's pre-activation (Li et al. 2021 fit layer by layer; here in
    closed form). Returns the new input currents, or None when the synapse cannot be solved."""
    syn, node = site.synapse, site.synapse_node
    if not _solvable(syn):
        return None
    inputs = [step.env[node.args[0]] for step in steps]
    others = [step.env[site.current] - step.env[node] for step in steps]
    # frames per image from the batch sizes (the synapse's own bias gains may be fewer)
    means = [unfold_time(x, len(x) // len(p)).mean(0) for x, p in zip(inputs, pre, strict=True)]
    goals = [p.double() - unfold_time(o, len(o) // len(p)).mean(0).double() for p, o in zip(pre, others, strict=True)]
    weight, bias = _least_squares(syn, means, goals, RIDGE, float(syn.frame_bias_gain[0]))
    trial = _with_weights(syn, weight, bias)
    with torch.no_grad():
        return [trial(x) + o for x, o in zip(inputs, others, strict=True)], trial


def _refit_synapse(site: _Site, original: _Site, steps: list[_Stepper], pre: list[Tensor], targets: list[Tensor],
                   dtype: torch.dtype, fitted: tuple) -> tuple:
    """``layerwise``: solve the feeding synapse's weights (:func:`_solve_weights`), fit the
    threshold scale and bias again on the new currents, and keep whichever of the two fits
    ``fitted = (error, scale, delta, currents)`` and the new one has the lower error."""
    solved = _solve_weights(site, steps, pre)
    if solved is None:
        return fitted
    currents, trial = solved
    _, err, scale, delta = _fit_layer(site, _sample(_LayerData(currents, targets), site.neuron.steps_in), dtype)
    if not err < fitted[0]:
        return fitted
    _copy_weights(trial.weight, trial.bias, site.synapse, original.synapse)
    for step, current in zip(steps, currents, strict=True):
        step.env[site.current] = current
    return err, scale, delta, currents


def _fit_head(work: fx.GraphModule, gm: fx.GraphModule, decoder: nn.Module, snn_steps: list[_Stepper],
              ann_steps: list[_Stepper], reference: fx.GraphModule) -> str | None:
    """Least squares on the classifier: the synapse that makes the network's output, refitted so
    that the decoded logits match the ANN's on the fitted images; kept if their error falls.
    Returns its module name (None: not refitted)."""
    out = next(n for n in work.graph.nodes if n.op == "output")
    ref_out = next(n for n in reference.graph.nodes if n.op == "output")
    last, ref_last = out.args[0], ref_out.args[0]
    syn = module_of(work, last) if isinstance(last, fx.Node) else None
    if not _solvable(syn) or len(last.users) != 1 or not isinstance(ref_last, fx.Node) or \
            not isinstance(last.args[0], fx.Node):
        return None
    for step in snn_steps:
        step.pinned.add(last.args[0])
    frames = [step.value(last.args[0]) for step in snn_steps]
    logits = [step.value(ref_last).double() for step in ann_steps]
    try:
        with torch.no_grad():
            inputs = [decoder(x) for x in frames]
            gain = float(decoder(syn.frame_bias_gain.view(-1, 1).to(frames[0].dtype)).reshape(-1)[0])
    except (RuntimeError, ValueError):
        return None
    weight, bias = _least_squares(syn, inputs, logits, HEAD_RIDGE, gain)
    trial = _with_weights(syn, weight, bias)

    def error(module: nn.Module) -> float:
        with torch.no_grad():
            return sum(float(((decoder(module(x)).double() - y) ** 2).sum())
                       for x, y in zip(frames, logits, strict=True))

    if not error(trial) < error(syn):
        return None
    _copy_weights(trial.weight, trial.bias, syn, gm.get_submodule(str(last.target)))
    return str(last.target)


def _apply(site: _Site, scale: Tensor, delta: Tensor | None) -> None:
    with torch.no_grad():
        site.in_gain.gain = _scaled(site.in_gain, scale, True)
        site.out_gain.gain = _scaled(site.out_gain, scale, False)
    if delta is not None:
        _apply_bias(site, delta)


def calibrate(gm: fx.GraphModule, encoder: nn.Module, decoder: nn.Module, reference: fx.GraphModule,
              loader: Any, mode: str, *, seconds: float = 120.0, images: int = 256) -> CalibrationResult:
    """Calibrate the unfolded conversion graph ``gm`` (changed in place) layer by layer against
    ``reference`` (the ANN that takes the same images) on ``images`` images of ``loader``; the
    next ``images`` are held out for the proxy (top-1 and ANN agreement before and after).
    The fitting runs on a float32 copy, stepping the copy and the ANN through their graphs once
    (the changes are applied to ``gm`` in its own precision). Stops starting new layers once
    ``seconds`` have passed."""
    check_mode(mode)
    result = CalibrationResult(mode)
    if mode == "none" or loader is None:
        return result
    start = time.perf_counter()
    fit, holdout = _split(loader, images, images)
    if not fit or fit[0][0].dim() != 4:  # event sequences are not images of the ANN
        result.skipped.append("(input is not a batch of images)")
        return result
    work = copy.deepcopy(gm).float()
    enc, dec = copy.deepcopy(encoder).float(), copy.deepcopy(decoder).float()
    dtype = torch.float32
    reference = reference.eval()

    def run(x: Tensor) -> Tensor:
        return dec(work(enc(x.to(dtype)))).float()

    sites, skipped = find_sites(work, reference)
    originals, _ = find_sites(gm, reference)
    result.skipped, result.layers = skipped, len(sites) + len(skipped)
    result.fit_images = sum(len(b[0]) for b in fit)
    result.holdout_images = sum(len(b[0]) for b in holdout)
    result.before = proxy(run, reference, holdout or fit)
    saved = {name: value.detach().clone() for name, value in gm.state_dict().items()}
    ref_nodes = {n.name: n for n in reference.graph.nodes}
    with torch.no_grad():
        snn_steps = [_Stepper(work, enc(x.to(dtype))) for x, _ in fit]
    ann_steps = [_Stepper(reference, x) for x, _ in fit]
    for site, original in zip(sites, originals, strict=True):
        if time.perf_counter() - start > seconds:
            result.stopped = True
            break
        weights = mode == "layerwise" and site.synapse_node is not None and \
            isinstance(site.synapse, (SynapseConv2d, SynapseLinear))
        pins = (site.synapse_node, site.synapse_node.args[0]) if weights else ()
        for step in snn_steps:
            step.pinned.update(pins)
        currents = [step.value(site.current) for step in snn_steps]
        pre_node = ref_nodes[site.reference].args[0] if ref_nodes[site.reference].args else None
        weights = weights and isinstance(pre_node, fx.Node) and ann_steps[0].reachable(pre_node)
        for step in ann_steps:
            step.pinned.update((pre_node,) if weights else ())
        targets = [step.value(ref_nodes[site.reference]).float() for step in ann_steps]
        data = _LayerData(currents, targets)
        err0, err, scale, delta = _fit_layer(site, _sample(data, site.neuron.steps_in), dtype)
        if weights:  # the ANN's pre-activation is what the synapse should deliver
            pre = [step.value(pre_node).float() for step in ann_steps]
            for step in ann_steps:
                step.release(pre_node)
            fitted = (err, scale, delta, currents)
            refit = _refit_synapse(site, original, snn_steps, pre, targets, dtype, fitted)
            if refit is not fitted:
                result.refitted.append(str(site.synapse_node.target))
            err, scale, delta, currents = refit
            del pre
        _apply(site, scale, delta)
        _apply(original, scale, delta)
        if delta is not None:  # the captured currents already ran through the old bias
            for step, current in zip(snn_steps, currents, strict=True):
                step.env[site.current] = current + _channel_view(delta.to(dtype), current.dim())
        for step in snn_steps:
            for node in pins:
                step.release(node)
        result.layer_error[site.name] = [err0, err]
        result.calibrated += 1
        del currents, targets, data
    if mode == "layerwise" and not result.stopped:
        head = _fit_head(work, gm, dec, snn_steps, ann_steps, reference)
        result.head = head is not None
        result.refitted += [head] if head is not None else []
    del snn_steps, ann_steps
    result.after = proxy(run, reference, holdout or fit)
    if result.after["agreement"] < result.before["agreement"]:  # worse on the held-out images: keep the conversion
        _restore(gm, saved)
        result.reverted = True
    result.seconds = time.perf_counter() - start
    return result


def _restore(gm: fx.GraphModule, saved: dict[str, Tensor]) -> None:
    """Put back every parameter and buffer of ``gm`` as ``saved`` (a state dict taken before the
    calibration; shapes may have changed since: a per-layer gain became per-channel)."""
    for name, value in saved.items():
        owner, _, leaf = name.rpartition(".")
        module = gm.get_submodule(owner) if owner else gm
        if leaf in module._parameters and module._parameters[leaf] is not None:
            module._parameters[leaf] = nn.Parameter(value, requires_grad=module._parameters[leaf].requires_grad)
        else:
            module._buffers[leaf] = value


def summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """``to-snn`` rows describing a calibration recorded in ``info["calibration"]``."""
    cal = info.get("calibration")
    if not cal or cal.get("mode", "none") == "none":
        return [("calibration", "none")] if cal else []
    if not cal.get("before"):
        return [("calibration", f"{cal['mode']}: not run ({'; '.join(cal.get('skipped', [])) or 'no data'})")]
    b, a = cal["before"], cal["after"]
    if cal.get("reverted"):
        return [("calibration", f"{cal['mode']}: undone (the held-out agreement with the ANN fell from "
                                f"{100 * b['agreement']:.1f}% to {100 * a['agreement']:.1f}%); the network is "
                                "the plain conversion")]
    rows = [("calibration", f"{cal['mode']}: {cal['calibrated']} of {cal['layers']} neuron layers on "
                            f"{cal['fit_images']} calibration images, {cal['seconds']:.1f} s"
                            + (" (time budget reached)" if cal.get("stopped_by_budget") else "")),
            ("proxy before -> after", f"top-1 {100 * b['top1']:.1f}% -> {100 * a['top1']:.1f}%, agreement with "
                                      f"the ANN {100 * b['agreement']:.1f}% -> {100 * a['agreement']:.1f}% "
                                      f"({a['images']} held-out calibration images)")]
    return rows
