"""Stepwise weighted spike (SWS) coding with TSA neurons: exact conversion of a quantized ANN.

Conversion (SWS paper, appendix A.1):

* the input quantizer becomes an :class:`SWSEncoder` that emits the Tc signed digits of
  ``Q - Z`` of every pixel (so padding with zeros downstream is exact);
* every ReLU + activation quantizer becomes ``Gain(1/C_o) -> TSANeuron -> Gain(C_o)``, every
  conv/linear a synapse with the dequantized weights, and every bias is spread over the Tc
  input steps with the factor ``1 / sum_k beta^(Tc-k)`` (eq 19);
* max-pooling becomes an :class:`SWSMaxPoolNeuron` on the running maximum;
* :func:`~snnconvert.codings.gains.fold_gains` folds the scales into the weights, giving
  ``W = W_hat * C_i / C_o`` (eq 18) and explicit gains only on identity shortcuts;
* the classifier never fires: the decoder sums its output frames with weights beta^(Tc-k).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.utils.data import DataLoader

from snnconvert.codings.base import Coding, CodingReport, ConversionInputs, ReportTable
from snnconvert.codings.common import (
    insert_neurons,
    mark_spike_inputs,
    replace_synapses,
    rewrite_maxpools,
    take_input_pad,
)
from snnconvert.codings.gains import fold_gains
from snnconvert.codings.registry import register_coding
from snnconvert.errors import SnnConvertError
from snnconvert.graph.latency import attribute_delay, path_latency
from snnconvert.graph.ops import Kind, channel_concat_inputs, kind_of, module_of
from snnconvert.graph.passes import recompile_graph, set_module
from snnconvert.graph.support import check_supported
from snnconvert.methods.sws.config import OPTIONS, SWSConfig
from snnconvert.methods.sws.neuron import SWSEncoder, SWSMaxPoolNeuron, TSANeuron, tsa_dynamics
from snnconvert.neurons.base import SpikingNeuron, unfold_time
from snnconvert.options import opt
from snnconvert.progress import Progress
from snnconvert.quantize.exact import exact_reference
from snnconvert.quantize.modules import ActQuant
from snnconvert.quantize.quantizer import INPUT_QUANT
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.prefix_cache import PrefixRunner
from snnconvert.simulate.synapse import Gain, WeightedSumDecoder


def _sws_rules(gm: fx.GraphModule, node: fx.Node) -> str | None:
    kind = kind_of(gm, node)
    if kind is Kind.MAXPOOL:
        if not _pools_spikes(gm, node.args[0]):
            return ("SWS max-pooling must take a quantized ReLU output, a max-pool of one or a channel "
                    "concatenation of them (move it after the activation)")
        if module_of(gm, node) is None and node.kwargs.get("return_indices"):
            return "max-pooling with indices has no spiking equivalent"
    if kind is Kind.ACTIVATION:
        users = list(node.users)
        if len(users) != 1 or kind_of(gm, users[0]) is not Kind.QUANT:
            return "activation without its quantizer: quantize the model first (snnconvert quantize)"
    if kind is Kind.NORM:
        return "batch-norm left in the graph: run the prepare/quantize pipeline first"
    return None


def _pooled_range(source: nn.Module | None) -> float:
    """The top of the range of the spike trains a max-pool takes (its source layer's ``qmax``)."""
    if source is None or not hasattr(source, "qmax"):
        raise SnnConvertError("SWS max-pooling found no TSA layer before it after conversion; please report this "
                              "network")
    return float(source.qmax)


def _pools_spikes(gm: fx.GraphModule, src: object) -> bool:
    """Whether a max-pool of ``src`` pools SWS spike trains: ``src`` is a quantized ReLU output (a
    TSA layer's), another max-pool of such, or their concatenation along the channels (each
    channel one train; the scales, one per train, commute with the max)."""
    if not isinstance(src, fx.Node):
        return False
    kind = kind_of(gm, src)
    if kind is Kind.QUANT:
        return src.target != INPUT_QUANT
    if kind is Kind.MAXPOOL:
        return _pools_spikes(gm, src.args[0] if src.args else None)
    tensors = channel_concat_inputs(src)
    return tensors is not None and all(_pools_spikes(gm, t) for t in tensors)


def _check_quantized(q: fx.GraphModule, cfg: SWSConfig) -> ActQuant:
    names = [n.target for n in q.graph.nodes if n.op == "call_module"]
    if INPUT_QUANT not in names:
        raise SnnConvertError("SWS conversion needs a quantized model (run `snnconvert quantize` first)")
    check_supported(q, (_sws_rules,), stage="SWS conversion")
    input_quant: ActQuant = q.get_submodule(INPUT_QUANT)
    for name, mod in q.named_modules():
        if isinstance(mod, ActQuant) and cfg.codable_max() < mod.qmax:
            raise SnnConvertError(
                f"{opt(SWSConfig, 'Tc')} {cfg.Tc} with beta {cfg.beta:g} encodes at most {cfg.codable_max():g}, "
                f"less than the {mod.bits}-bit range 0..{mod.qmax} of {name}; raise {opt(SWSConfig, 'Tc')} or "
                f"quantize with fewer bits"
            )
    return input_quant


def _silent_periods(cfg: SWSConfig, layers: list[str]) -> dict[str, int]:
    if isinstance(cfg.Ts, list):
        if len(cfg.Ts) != len(layers):
            raise SnnConvertError(
                f"--Ts lists {len(cfg.Ts)} silent periods but the network has {len(layers)} neuron layers "
                f"({', '.join(layers[:4])}{', ...' if len(layers) > 4 else ''})"
            )
        return dict(zip(layers, cfg.Ts, strict=True))
    value = cfg.Tc if cfg.Ts == "auto" else int(cfg.Ts)
    return dict.fromkeys(layers, value)


def convert_sws(quantized: fx.GraphModule, cfg: SWSConfig) -> SpikingNetwork:
    """Convert a finalized quantized graph into an SWS spiking network (float64 weights)."""
    cfg.validate()
    cfg = cfg.resolved(quantized)
    input_quant = _check_quantized(quantized, cfg)
    gm = copy.deepcopy(quantized).double()
    Tc, beta = cfg.Tc, cfg.beta
    bias_gains = torch.full((Tc,), 1.0 / cfg.codable_max(), dtype=torch.float64)
    replace_synapses(gm, bias_gains)

    # Encoder: frames are digits of Q - Z; Gain(C_in) turns them into real values.
    quant_node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == INPUT_QUANT)
    pad = take_input_pad(gm, quant_node, strict=True)
    pad = pad.double() if pad is not None else None
    set_module(gm, INPUT_QUANT, Gain.of(input_quant.scale.detach().double()))
    encoder = SWSEncoder(Tc, beta, input_quant.scale.numel(), input_quant.qmax,
                         pad.padding if pad else None, pad.values.numel() if pad else 0).double()
    with torch.no_grad():
        encoder.scale.copy_(input_quant.scale.detach())
        encoder.zero_point.copy_(input_quant.zero_point)
        if pad is not None:
            encoder.pad.values.copy_(pad.values)

    plan = {}
    for node in gm.graph.nodes:
        if kind_of(gm, node) is Kind.ACTIVATION:
            quant: ActQuant = gm.get_submodule(next(iter(node.users)).target)
            plan[node.name] = (TSANeuron(Tc, 0, beta, quant.qmax, threshold=0.5 if cfg.lowered_threshold else 1.0),
                               quant.scale.detach().double())
    layers = insert_neurons(gm, plan)
    pools = rewrite_maxpools(gm, lambda params, source: SWSMaxPoolNeuron(**params, Tc=Tc, Ts=0, beta=beta,
                                                                       qmax=_pooled_range(source)))
    for pool, source in pools:  # the rules guarantee a TSA layer (and its gain) before every pool
        layers.insert(layers.index(source) + 1, pool)
    recompile_graph(gm)
    fold_gains(gm)
    mark_spike_inputs(gm, encoder_spikes=True)
    silent = _silent_periods(cfg, layers)
    set_silent_periods(gm, silent)

    snn = SpikingNetwork("sws")
    snn.encoder = encoder
    snn.body = gm
    decoder = WeightedSumDecoder(Tc).double()
    with torch.no_grad():
        decoder.weights.copy_(torch.tensor([beta ** (Tc - k) for k in range(1, Tc + 1)], dtype=torch.float64))
    snn.decoder = decoder
    snn.info = sws_latency(snn, cfg)
    return snn


def neuron_modules(snn_body: fx.GraphModule) -> dict[str, TSANeuron | SWSMaxPoolNeuron]:
    return {
        n.target: snn_body.get_submodule(n.target)
        for n in snn_body.graph.nodes
        if n.op == "call_module" and isinstance(snn_body.get_submodule(n.target), (TSANeuron, SWSMaxPoolNeuron))
    }


def set_silent_periods(body: fx.GraphModule, silent: dict[str, int]) -> None:
    for name, neuron in neuron_modules(body).items():
        neuron.Ts = int(silent[name])


def _path(body: fx.GraphModule):
    """Delays along the body: every TSA layer adds its silent period ``Ts`` (eq 6)."""
    return path_latency(body, attribute_delay("Ts"), counts_as_layer=lambda m: isinstance(m, SpikingNeuron))


def sws_latency(snn: SpikingNetwork, cfg: SWSConfig) -> dict:
    """Latency facts of an SWS network (eq 6 generalised to per-layer silent periods)."""
    neurons = neuron_modules(snn.body)
    silent = {name: n.Ts for name, n in neurons.items()}
    path = _path(snn.body)
    ts_values = list(silent.values())
    return {
        "coding": "sws",
        "Tc": cfg.Tc,
        "beta": cfg.beta,
        "Ts": ts_values,
        "Ts_uniform": ts_values[0] if len(set(ts_values)) == 1 else None,
        "lowered_threshold": cfg.lowered_threshold,
        "neuron_layers": list(silent),
        "L_TSA": path.neuron_layers_on_path,
        "T_inf": cfg.Tc + path.output_delay,
        "pipeline_period": cfg.Tc + max(ts_values, default=0),
        "alignments": path.alignments,
        "frames": cfg.Tc,
        "latency": cfg.Tc + path.output_delay,
        "latency_terms": (
            f"T_inf = Tc + Ts*L_TSA = {cfg.Tc} + {ts_values[0]}*{path.neuron_layers_on_path}"
            if len(set(ts_values)) == 1
            else f"T_inf = Tc + sum of Ts on the longest path = {cfg.Tc} + {path.output_delay}"
        ),
    }


def amplification_ops(snn: SpikingNetwork) -> dict[str, float]:
    """First term of OPF (eq 10): every TSA neuron amplifies its membrane on each of its
    Tc + Ts steps. Uses the neuron counts recorded by the last evaluation."""
    ops = {}
    for name, neuron in snn.neurons().items():
        silent = getattr(neuron, "Ts", 0)
        ops[name] = float(neuron.neurons) * (neuron.steps_out + silent)
    return ops


def convert(inputs: ConversionInputs, cfg: SWSConfig) -> SpikingNetwork:
    """Coding-table entry point: convert, then pick silent periods when ``Ts == "auto"``."""
    if inputs.quantized is None:
        raise SnnConvertError("SWS conversion needs a quantized model (run `snnconvert quantize` first)")
    cfg.validate()
    cfg = cfg.resolved(inputs.quantized)
    snn = convert_sws(inputs.quantized, cfg)
    if cfg.Ts == "auto":
        loader = _search_images(inputs, cfg, f"{opt(SWSConfig, 'Ts')} auto")
        result = auto_silent_periods(snn, inputs.quantized, loader, cfg,
                                     show_progress=inputs.show_progress, device=inputs.device)
        snn.info["auto"] = result
    elif cfg.residual_tolerance is not None:
        loader = _search_images(inputs, cfg, opt(SWSConfig, "residual_tolerance"))
        images = _calibration_images(loader, cfg.auto_limit)
        max_ts = cfg.Tc if cfg.auto_max is None else cfg.auto_max
        snn.info["residual_boost"] = boost_silent_periods(snn, images, cfg.residual_tolerance, max_ts)
        snn.info.update(sws_latency(snn, cfg))
    return snn


def _search_images(inputs: ConversionInputs, cfg: SWSConfig, what: str) -> DataLoader:
    """The calibration images a search over silent periods runs on (its seeded sample when the
    pool offers one); ``what`` (the option that asked) needs calibration data."""
    if inputs.calibration is None:
        raise SnnConvertError(f"{what} needs calibration data (the quantize step's {opt('quantize', 'data')})")
    if inputs.calibration_sample is not None:
        return inputs.calibration_sample(cfg.auto_limit, cfg.auto_seed)
    return inputs.calibration


def _calibration_images(loader: DataLoader, limit: int) -> torch.Tensor:
    batches, count = [], 0
    for images, _labels in loader:
        batches.append(images)
        count += len(images)
        if count >= limit:
            break
    if not batches:
        raise SnnConvertError("--Ts auto: the calibration split is empty")
    return torch.cat(batches)[:limit]


def _holdout_split(count: int, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the images the search runs on and of those it holds out (a seeded ``share``,
    at least one image when the share is above 0 and two images are there)."""
    held = min(count - 1, max(1, round(share * count))) if share > 0 and count > 1 else 0
    order = torch.randperm(count, generator=torch.Generator().manual_seed(int(seed)))
    return order[held:].sort().values, order[:held].sort().values


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor, dtype: torch.dtype, batch: int = 250) -> torch.Tensor:
    return torch.cat([model(images[i:i + batch].to(dtype)).argmax(1) for i in range(0, len(images), batch)])


@torch.no_grad()
def silent_period_profile(snn: SpikingNetwork, images: torch.Tensor, max_ts: int,
                          batch: int = 250, start: int = 0) -> dict[str, list[float]]:
    """For each neuron layer, the share of its neurons whose output differs from the exact one
    (Ts = Tc) when its silent period is ``start``, ..., ``max_ts`` (entry i: ``start + i``), on
    the inputs it receives when every layer is exact."""
    neurons = neuron_modules(snn.body)
    saved = {name: n.Ts for name, n in neurons.items()}
    Tc = snn.info["Tc"]
    set_silent_periods(snn.body, dict.fromkeys(neurons, Tc))
    mismatched = {name: torch.zeros(max_ts + 1 - start, dtype=torch.float64) for name in neurons}
    totals = dict.fromkeys(neurons, 0)
    hooks = []

    def make_hook(name: str, neuron: TSANeuron | SWSMaxPoolNeuron):
        def hook(module, inputs, output) -> None:
            exact = unfold_time(output, Tc)
            frames = unfold_time(inputs[0], Tc)
            z = neuron.increments(frames) if isinstance(neuron, SWSMaxPoolNeuron) else frames
            weights = torch.tensor([neuron.beta ** (Tc - k) for k in range(1, Tc + 1)], dtype=z.dtype,
                                   device=z.device)
            shape = (Tc,) + (1,) * (z.dim() - 1)
            exact_value = (exact * weights.view(shape)).sum(0)
            for ts in range(start, max_ts + 1):
                spikes, _, _ = tsa_dynamics(z, Ts=ts, beta=neuron.beta, qmax=neuron.qmax)
                value = (spikes * weights.view(shape)).sum(0)
                mismatched[name][ts - start] += float((value != exact_value).sum())
            totals[name] += exact_value.numel()
        return hook

    for name, neuron in neurons.items():
        hooks.append(neuron.register_forward_hook(make_hook(name, neuron)))
    try:
        dtype = snn.compute_dtype()
        for i in range(0, len(images), batch):
            snn(images[i:i + batch].to(dtype))
    finally:
        for h in hooks:
            h.remove()
        set_silent_periods(snn.body, saved)
    return {name: (mismatched[name] / max(totals[name], 1)).tolist() for name in neurons}


def boost_silent_periods(snn: SpikingNetwork, images: torch.Tensor, tolerance: float, max_ts: int,
                         batch: int = 250) -> dict[str, Any]:
    """Raise each neuron layer's silent period (never lower it, at most ``max_ts``) to the
    smallest one at which at most ``tolerance`` of its neurons round differently from exact on
    ``images`` (:func:`silent_period_profile`, in the network's dtype: float64 as converted).

    With Ts below Tc a layer fires before its last inputs are in; a late input larger than the
    2^Ts - 1/2 its remaining digits can absorb leaves a residual outside [-1/2, 1/2). Such
    errors are rare and concentrated in a few layers (the stem, first convolutions of blocks),
    but every one seeds a cascade of one-integer differences downstream. Returns the profile,
    the silent periods before and after, and the layers raised."""
    neurons = neuron_modules(snn.body)
    before = {name: n.Ts for name, n in neurons.items()}
    first = min(before.values(), default=0)
    profile = silent_period_profile(snn, images, max(max_ts, first), batch, start=first)
    chosen = {}
    for name, ts in before.items():
        while ts < max_ts and profile[name][ts - first] > tolerance:
            ts += 1
        chosen[name] = ts
    set_silent_periods(snn.body, chosen)
    return {"tolerance": tolerance, "images": len(images), "before": before, "after": chosen,
            "raised": {n: chosen[n] - before[n] for n in chosen if chosen[n] != before[n]},
            "profile_first_Ts": first, "profile": {k: [round(v, 8) for v in vals] for k, vals in profile.items()}}


def _on(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` if it is on ``device`` (or has no tensors), else a copy moved there."""
    tensors = list(module.parameters()) + list(module.buffers())
    if all(t.device == device for t in tensors):
        return module
    return copy.deepcopy(module).to(device)


def _simulated(snn: SpikingNetwork, device: torch.device, dtype: torch.dtype) -> SpikingNetwork:
    """A copy of ``snn`` on ``device`` in ``dtype``: float64 is how ``evaluate`` simulates SWS (exact
    sums in its spike-input synapses, float64 membranes); float32 runs the search's many candidates
    about 1.6x faster."""
    return copy.deepcopy(snn).to(device=device, dtype=dtype)


class _Evaluations:
    """The ``--Ts auto`` evaluations of one search: a :class:`PrefixRunner` over the calibration
    images with the images that disagreed in any evaluation so far first (its ``head`` batch), and
    the list of trials (every full or early-stopped evaluation, for the frontier)."""

    def __init__(self, snn: SpikingNetwork, images: torch.Tensor, reference: torch.Tensor, names: list[str],
                 cfg: SWSConfig, progress: Progress) -> None:
        self.snn, self.images, self.reference, self.names, self.cfg = snn, images, reference, names, cfg
        self.progress = progress
        self.set_target(cfg.auto_agreement)
        self.trials: list[dict] = []
        self.passed: dict[tuple, float] = {}  # setting -> its agreement, for every setting that met its target
        self.hard: dict[int, None] = {}  # calibration images that disagreed at least once, in the order found
        self.nodes_run = self.nodes_full = self.cache_bytes = 0
        self.order = list(range(len(images)))
        self.runner = self._runner(head=0)

    def set_target(self, target: float) -> None:
        """The agreement the following evaluations must reach (and the disagreements that allows)."""
        self.target = target
        self.allowed = math.floor((1.0 - target) * len(self.images) + 1e-9)

    def _runner(self, head: int) -> PrefixRunner:
        self.head = head
        self.ordered_reference = self.reference[self.order]
        return PrefixRunner(self.snn, self.images[self.order], self.names, lambda neuron: neuron.Ts, head=head,
                            dtype=self.snn.compute_dtype())

    def _record(self, result) -> None:
        for position in result.mismatched:
            self.hard.setdefault(self.order[position], None)

    def hard_first(self) -> None:
        """Put every image that has disagreed so far into the first batch (a new runner: the
        cache restarts) unless it is there already."""
        if not self.hard or set(self.order[:self.head]) == set(self.hard):
            return
        self._retire()
        head = list(self.hard)
        taken = set(head)
        self.order = head + [i for i in range(len(self.images)) if i not in taken]
        self.runner = self._runner(head=len(head))

    def _retire(self) -> None:
        self.nodes_run += self.runner.nodes_run
        self.nodes_full += self.runner.nodes_full
        self.cache_bytes = max(self.cache_bytes, self.runner.bytes)

    def passes(self, periods: dict[str, int], step: str, *, complete: bool = False) -> bool:
        """Evaluate ``periods`` on every calibration image (stopping once it has failed, unless
        ``complete``) and record the trial; True when it meets the target."""
        set_silent_periods(self.snn.body, periods)
        result = self.runner.evaluate(self.ordered_reference, max_mismatches=None if complete else self.allowed)
        self._record(result)
        value = result.agreement
        t_inf = self.cfg.Tc + _path(self.snn.body).output_delay
        self.trials.append({"step": step, "agreement": value, "T_inf": t_inf,
                            "passed": value >= self.target, "target": self.target, "images_compared": result.images,
                            "stopped_early": result.stopped_early})
        self.progress.advance(detail=step, T_inf=t_inf,
                              agreement=f"{'<' if result.stopped_early else ''}{100 * value:.2f}%")
        if value >= self.target:
            self.passed[tuple(sorted(periods.items()))] = value
        return value >= self.target

    def head_mismatches(self, periods: dict[str, int]) -> int:
        """How many of the images that have disagreed so far (the head batch) disagree under ``periods``."""
        set_silent_periods(self.snn.body, periods)
        return self.runner.evaluate(self.ordered_reference, batches=1).mismatches

    def summary(self) -> dict[str, Any]:
        """Node share run and cache size over every runner of the search (call once, at the end)."""
        self._retire()
        return {"nodes_run_share": self.nodes_run / self.nodes_full if self.nodes_full else 1.0,
                "cache_bytes": self.cache_bytes, "hard_images": len(self.hard)}


def auto_silent_periods(snn: SpikingNetwork, quantized: fx.GraphModule, calibration: DataLoader,
                        cfg: SWSConfig, *, show_progress: bool = False,
                        device: torch.device | None = None) -> dict:
    """``--Ts auto``: per layer, the smallest silent periods that keep the SNN's predictions in
    agreement with the quantized ANN's on calibration images (at least ``cfg.auto_agreement``).
    Every setting it keeps was evaluated on all those images and met the target.

    1. Uniform: bisection on one silent period ``k`` for every layer gives the smallest ``k*``
       that meets the target (``Ts = Tc`` is exact, so some ``k`` always does).
    2. Repair, from ``k* - 1`` everywhere (which failed): the images that disagreed so far go
       first; every layer still at ``k* - 1`` is tried at ``k*`` on those images, and the one that
       leaves the fewest of them disagreeing is raised (ties: the layer whose outputs differ most
       from exact rounding at ``k* - 1``, from one profiling pass). This repeats until the setting
       meets the target on all images. At worst every layer is raised, back to the uniform ``k*``.
    3. Lower levels (``k* - 2``, ..., 0): the layers at the level above are ordered by that
       profile (the least affected first), and bisection finds the longest prefix of that order
       that can drop one level while the network still meets the target.
    4. Refinement: every layer (least affected first) whose silent period can still drop a step
       is tried alone at one step less and kept when the network still meets the target; rounds
       repeat until no single layer can drop.

    Phases 2-4 stop once ``cfg.auto_budget_s`` seconds are spent; the result is then the last
    setting that met the target (at worst the uniform ``k*``). The mismatch profile and the
    disagreeing images only order candidates; every kept setting was evaluated on every image.
    Evaluations re-run only the layers after the first changed one (:class:`PrefixRunner`) and
    stop once they have failed; with the images that disagreed first, most failing candidates
    stop after one small batch. ``trials`` lists every evaluation (setting, T_inf, agreement): the
    T_inf against agreement frontier. The evaluations run on ``device`` (default: the CPU) on a
    float32 copy (about 1.6x faster than ``evaluate``'s exact simulation, whose rounding differs from
    it on a few images in a thousand); ``snn`` stays where it is and keeps its dtype.

    Held-out images (``cfg.auto_holdout`` of the pool, seeded) are never searched on. When the
    chosen setting's agreement on them is below the requested target, the search fitted its own
    images: phases 1-4 run again with half the disagreements allowed (0.995 -> 0.9975 -> ...), at
    most ``cfg.auto_rounds`` more times. ``rounds`` records each round's target, T_inf and
    held-out agreement, measured with ``evaluate``'s exact simulation; the last round's held-out
    figure decided that the search stop, so it is an estimate, not a measurement on unseen images
    (the test split is that).
    """
    device = torch.device("cpu") if device is None else device
    started = time.perf_counter()
    pool = _calibration_images(calibration, cfg.auto_limit).to(device)
    if len(pool) < cfg.auto_limit and show_progress:
        print(f"note: --Ts auto searches on {len(pool)} images: the calibration pool holds fewer than "
              f"--auto-limit {cfg.auto_limit}", file=sys.stderr, flush=True)
    max_ts = cfg.Tc if cfg.auto_max is None else cfg.auto_max
    # the reference is the quantized ANN in exact arithmetic, as evaluate's agreement is
    pool_reference = _predict(_on(exact_reference(quantized), device), pool, torch.float64)
    searched, held = _holdout_split(len(pool), cfg.auto_holdout, cfg.auto_seed)
    images, reference = pool[searched], pool_reference[searched]
    simulated = _simulated(snn, device, torch.float32)  # the candidates
    exact = _simulated(snn, device, torch.float64)  # the held-out estimate, as evaluate simulates
    names = list(neuron_modules(simulated.body))
    with Progress(f"--Ts auto on {len(images)} images: evaluations", show=show_progress) as progress:
        runs = _Evaluations(simulated, images, reference, names, cfg, progress)
        rounds: list[dict[str, Any]] = []
        target, floor_ts = cfg.auto_agreement, 0
        while True:
            runs.set_target(target)
            found = _search_round(runs, simulated, images, names, cfg, max_ts, floor_ts)
            key = tuple(sorted(found["chosen"].items()))
            if key not in runs.passed:  # the uniform max_ts, taken as exact without an evaluation
                runs.passes(found["chosen"], f"uniform Ts={max_ts} (exact)", complete=True)
            set_silent_periods(exact.body, found["chosen"])
            held_agreement = (float((_predict(exact, pool[held], torch.float64) == pool_reference[held])
                                    .double().mean()) if len(held) else None)
            rounds.append({"target": target, "T_inf": cfg.Tc + _path(exact.body).output_delay,
                           "uniform_Ts": found["uniform_Ts"],
                           "searched_agreement": runs.passed.get(key, runs.trials[-1]["agreement"]),
                           "holdout_agreement": held_agreement,
                           "seconds": found["seconds"], "phases": found["phases"]})
            # held-out images below the requested agreement: the search fitted its own images; search again with
            # half the disagreements allowed (settings below the last uniform Ts failed a looser target already)
            if (held_agreement is None or held_agreement >= cfg.auto_agreement or len(rounds) > cfg.auto_rounds
                    or runs.allowed == 0):
                break
            target, floor_ts = 1.0 - (1.0 - target) / 2.0, found["uniform_Ts"]
    chosen = found["chosen"]
    set_silent_periods(snn.body, chosen)
    snn.info.update(sws_latency(snn, cfg))
    holdout = {"images": len(held), "agreement": held_agreement} if len(held) else None
    return {"uniform_Ts": found["uniform_Ts"], "images": len(images), "images_requested": cfg.auto_limit,
            "holdout": holdout, "target": cfg.auto_agreement, "search_target": target, "rounds": rounds,
            "searched_agreement": rounds[-1]["searched_agreement"],
            "trials": runs.trials, "repairs": found["repairs"], **runs.summary(),
            "evaluations": len(runs.trials), "seconds": time.perf_counter() - started,
            "per_layer_seconds": found["per_layer_seconds"], "refine_seconds": found["refine_seconds"],
            "budget_spent": found["budget_spent"], "chosen": dict(chosen), "T_inf": snn.info["T_inf"],
            "profile": {k: [round(v, 6) for v in vals] for k, vals in found["profile"].items()}}


def _longest_passing(count: int, check: Callable[[int], bool]) -> int:
    """Largest m in [0, count] with check(m), assuming check(0) and monotone passing."""
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if check(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _search_round(runs: _Evaluations, simulated: SpikingNetwork, images: torch.Tensor, names: list[str],
                  cfg: SWSConfig, max_ts: int, floor_ts: int) -> dict[str, Any]:
    """Phases 1-4 of :func:`auto_silent_periods` at the target ``runs`` holds; the uniform
    silent period is searched in ``[floor_ts, max_ts]``."""
    started = time.perf_counter()
    # 1. uniform: m levels below max_ts
    drop = _longest_passing(max_ts - floor_ts, lambda m: runs.passes(dict.fromkeys(names, max_ts - m),
                                                                     f"uniform Ts={max_ts - m}"))
    k_star = max_ts - drop
    chosen = dict.fromkeys(names, k_star)  # always a setting that was evaluated and met the target
    # the candidates are ordered by their mismatch one step down, and no layer goes above k*
    profile = silent_period_profile(simulated, images, k_star - 1) if k_star > 0 else {}
    per_layer_start = time.perf_counter()
    phases = {"uniform": per_layer_start - started}

    def out_of_budget() -> bool:
        return cfg.auto_budget_s is not None and time.perf_counter() - per_layer_start > cfg.auto_budget_s

    def position(name: str) -> int:
        return names.index(name)

    repairs: list[dict[str, Any]] = []
    spent = False
    # 2. repair: from k* - 1 everywhere, raise the layer that fixes most disagreeing images, until it passes
    if k_star > 0 and not (spent := out_of_budget()):
        level = k_star - 1
        trial = dict.fromkeys(names, level)
        runs.hard_first()
        ok = runs.passes(trial, f"repair from uniform Ts={level}", complete=True)
        while not ok and not (spent := out_of_budget()):
            low = [n for n in names if trial[n] == level]
            if not low:
                break
            runs.hard_first()
            # deepest first: each candidate re-runs only from its own layer on the head batch
            scores = {n: runs.head_mismatches({**trial, n: k_star})
                      for n in sorted(low, key=position, reverse=True)}
            best = min(low, key=lambda n: (scores[n], -profile[n][level], position(n)))
            repairs.append({"raised": best, "to": k_star, "head_images": len(runs.hard),
                            "head_mismatches": dict(scores)})
            trial = {**trial, best: k_star}
            ok = runs.passes(trial, f"repair: {best} to Ts={k_star} ({len(repairs)} raised)")
        if ok:
            chosen = trial
    phases["repair"] = time.perf_counter() - per_layer_start
    # 3. lower levels: the longest prefix (least affected first) that drops one level
    for level in range(k_star - 2, -1, -1):
        if spent or (spent := out_of_budget()):
            break
        movable = sorted((n for n in names if chosen[n] == level + 1), key=lambda n: profile[n][level])

        def lowered(m: int, base: dict[str, int] = chosen, movable: list[str] = movable,
                    level: int = level) -> dict[str, int]:
            return {**base, **dict.fromkeys(movable[:m], level)}

        runs.hard_first()
        m = _longest_passing(len(movable), lambda m, lowered=lowered, level=level:
                             runs.passes(lowered(m), f"{m} layers to Ts={level}"))
        if m == 0:
            break
        chosen = lowered(m)
    # 4. refinement: each layer alone, one step at a time, while the budget lasts
    refine_start = time.perf_counter()
    phases["lower_levels"] = refine_start - per_layer_start - phases["repair"]
    improved = True
    while improved and not spent:
        improved = False
        runs.hard_first()
        candidates = sorted((n for n in names if chosen[n] > 0),
                            key=lambda n: (profile[n][chosen[n] - 1] if n in profile else 0.0, position(n)))
        for name in candidates:
            if spent := out_of_budget():
                break
            trial = {**chosen, name: chosen[name] - 1}
            if runs.passes(trial, f"{name} to Ts={trial[name]}"):
                chosen, improved = trial, True
    phases["refinement"] = time.perf_counter() - refine_start
    return {"uniform_Ts": k_star, "chosen": chosen, "profile": profile, "repairs": repairs, "budget_spent": spent,
            "phases": phases,
            "per_layer_seconds": time.perf_counter() - per_layer_start,
            "refine_seconds": time.perf_counter() - refine_start, "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------- reports


def residual_stats(snn: SpikingNetwork) -> list[dict[str, Any]] | None:
    """Final membrane residuals of every TSA layer in units of theta, scaled by 1/beta^Ts
    (fig 5a), from the last recorded evaluation. Neurons held by the clamp are excluded and
    counted separately. Per layer: mean, 95th percentile and max of |r|, the share with
    |r| > 1/2 (their output is not the rounded value), the share held at the clamp, and the
    histogram with its range."""
    rows = []
    for name, neuron in snn.neurons().items():
        if not isinstance(neuron, TSANeuron) or float(neuron.samples) == 0:
            continue
        hist = neuron.residual_hist.double()
        bins = hist.numel()
        centers = torch.linspace(-neuron.residual_range, neuron.residual_range, bins + 1, dtype=torch.float64)
        centers = (centers[:-1] + centers[1:]) / 2
        total = max(float(hist.sum()), 1.0)
        all_neurons = float(neuron.samples) * float(neuron.neurons)
        order = torch.argsort(centers.abs())
        cdf = hist[order].cumsum(0) / total
        idx = int(torch.searchsorted(cdf, torch.tensor([0.95], dtype=torch.float64)).clamp(max=bins - 1))
        nonzero = centers[hist > 0].abs()
        rows.append({
            "name": name,
            "mean_abs": float((hist * centers.abs()).sum() / total),
            "p95_abs": float(centers.abs()[order][idx]),
            "max_abs": float(nonzero.max()) if len(nonzero) else 0.0,
            "over_half": float(hist[centers.abs() > 0.5 + 1e-9].sum() / total),
            "clamped": float(neuron.clamped_count) / max(all_neurons, 1.0),
            "histogram": hist.tolist(),
            "range": neuron.residual_range,
        })
    return rows or None


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def residual_tables(rows: list[dict[str, Any]]) -> list[ReportTable]:
    return [ReportTable(
        "residual after the last step (units of theta, x 1/beta^Ts; fig 5a)",
        ("layer", "mean |r|", "p95 |r|", "max |r|", "|r| > 1/2", "held at clamp (0 or 2^n-1)"),
        [(r["name"], f"{r['mean_abs']:.3f}", f"{r['p95_abs']:.3f}", f"{r['max_abs']:.3f}", _pct(r["over_half"]),
          _pct(r["clamped"])) for r in rows],
    )]


def residual_plot(rows: list[dict[str, Any]], directory: Path, title: str) -> list[Path]:
    """Probability density of |residual| per TSA layer (SWS paper fig 5a): one line per layer,
    coloured by depth (a colour bar names them when there are many), and the 1/2 bound."""
    import numpy as np

    from snnconvert.reports.plots import colormap, figure, layer_colorbar, save_figure

    fig, ax = figure(7, 4)
    cmap = colormap("viridis")
    top = 0.0
    for i, row in enumerate(rows):
        hist = np.asarray(row["histogram"])
        edges = np.linspace(-row["range"], row["range"], len(hist) + 1)
        centers = np.round(np.abs((edges[:-1] + edges[1:]) / 2), 6)
        xs = np.unique(centers)
        ys = np.array([hist[centers == x].sum() for x in xs])
        ys = ys / max(ys.sum() * (edges[1] - edges[0]), 1e-12)
        top = max(top, float(ys.max(initial=0.0)))
        named = len(rows) <= 8 or i in (0, len(rows) // 2, len(rows) - 1)  # many layers: first, middle, last
        ax.plot(xs, ys, color=cmap(i / max(len(rows) - 1, 1)), lw=1.6 if named else 0.8, alpha=0.9,
                label=f"{i + 1}: {row['name']}" if named else None)
    ax.axvline(0.5, color="red", ls="--", lw=1, label="1/2 (rounding bound)")
    ax.set_xlabel("|residual| (units of theta, scaled by 1/beta^Ts)")
    ax.set_ylabel("probability density")
    ax.set_xlim(0, max(0.55, 1.05 * max(r["max_abs"] for r in rows)))  # every residual, and the 1/2 line
    ax.set_ylim(0, top * 1.05 if top > 0 else 1.0)
    ax.set_title(f"{title}: final membrane residuals per TSA layer")
    if len(rows) > 8:
        layer_colorbar(fig, ax, cmap, len(rows), "TSA layer")
    ax.legend(fontsize=7, title="TSA layer (1 = first)" if len(rows) > 8 else None, title_fontsize=7)
    return [save_figure(fig, directory / "residuals.png")]


def search_data(snn: SpikingNetwork) -> dict[str, Any] | None:
    """The ``--Ts auto`` search of this network (every trial), or None when it was not searched."""
    auto = snn.info.get("auto")
    if not auto:
        return None
    return {k: auto[k] for k in ("uniform_Ts", "images", "target", "search_target", "rounds", "trials", "evaluations",
                                 "seconds", "T_inf", "holdout") if k in auto}


def search_tables(data: dict[str, Any]) -> list[ReportTable]:
    trials = data["trials"]
    frontier: dict[int, tuple[float, bool]] = {}  # T_inf -> (best agreement, an upper bound: stopped early)
    for t in trials:
        value = (t["agreement"], not t.get("stopped_early", False))
        frontier[t["T_inf"]] = max(frontier.get(t["T_inf"], (0.0, True)), value)
    rows = [(str(t_inf), _pct(agree) if exact else f"< {_pct(agree)}", "yes" if agree >= data["target"] else "no")
            for t_inf, (agree, exact) in sorted(frontier.items())]
    seconds = f", {data['seconds']:.0f} s" if "seconds" in data else ""
    held = data.get("holdout")
    unseen = (f"; the chosen setting on {held['images']} held-out calibration images: {_pct(held['agreement'])}"
              if held else "")
    return [ReportTable(
        f"--Ts auto: best agreement at each T_inf over {len(trials)} evaluations on {data['images']} "
        f"calibration images{seconds} (target {_pct(data['target'])}{unseen}; '<': the evaluation stopped once it "
        "had failed, so only a bound is known)",
        ("T_inf", "best agreement", "meets target"), rows)]


def search_plot(data: dict[str, Any], directory: Path, title: str) -> list[Path]:
    """Every evaluated setting as (T_inf, agreement); the target line and the chosen setting."""
    from snnconvert.reports.plots import figure, save_figure

    trials = data["trials"]
    fig, ax = figure(6, 4)
    ok = [t for t in trials if t["passed"]]
    bad = [t for t in trials if not t["passed"] and not t.get("stopped_early")]
    early = [t for t in trials if t.get("stopped_early")]
    ax.scatter([t["T_inf"] for t in bad], [100 * t["agreement"] for t in bad], s=14, color="tab:gray",
               label="below target")
    if early:
        ax.scatter([t["T_inf"] for t in early], [100 * t["agreement"] for t in early], s=14, marker="v",
                   color="tab:gray", alpha=0.6, label="below target (stopped early: upper bound)")
    ax.scatter([t["T_inf"] for t in ok], [100 * t["agreement"] for t in ok], s=14, color="tab:blue",
               label="meets target")
    if "T_inf" in data and ok:
        best = min(ok, key=lambda t: (t["T_inf"], -t["agreement"]))
        ax.scatter([best["T_inf"]], [100 * best["agreement"]], marker="*", s=160, color="tab:red",
                   label=f"chosen: T_inf {best['T_inf']}")
    ax.axhline(100 * data["target"], color="red", ls="--", lw=1, label=f"target {_pct(data['target'])}")
    ax.set_xlabel("T_inf (time steps)")
    ax.set_ylabel("agreement with the quantized ANN (%)")
    ax.set_title(f"{title}: --Ts auto search, {len(trials)} evaluations")
    ax.legend(fontsize=7)
    return [save_figure(fig, directory / "ts_auto_frontier.png")]


def summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """SWS latency facts: Tc, Ts (uniform or per layer), L_TSA, T_inf (eq 6), throughput."""
    ts = info["Ts"]
    rows = [
        ("Tc (coding steps)", str(info["Tc"])),
        ("Ts (silent period)", str(info["Ts_uniform"]) if info.get("Ts_uniform") is not None
         else f"per layer {min(ts)}..{max(ts)} (mean {sum(ts) / len(ts):.2f}): {','.join(map(str, ts))}"),
        ("L_TSA (neuron layers on the longest path)", str(info["L_TSA"])),
        ("T_inf = Tc + Ts x L_TSA (eq 6)", str(info["T_inf"])),
        *([("TSA threshold", "theta beta^Ts, not lowered (fig 5b ablation: not exact)")]
          if info.get("lowered_threshold") is False else []),
        ("pipelined throughput 1/(Tc+Ts)", f"1/{info['pipeline_period']} frames per step"),
    ]
    auto = info.get("auto")
    if auto:
        searched = auto.get("search_target", auto["target"])
        tightened = (f"; searched at {100 * searched:.2f}% after {len(auto['rounds'])} rounds (held-out images "
                     f"below the target)" if searched != auto["target"] else "")
        rows.append(("--Ts auto", f"best uniform Ts {auto.get('uniform_Ts')}, then per layer; {len(auto['trials'])} "
                                  f"evaluations on {auto['images']} calibration images (target "
                                  f"{100 * auto['target']:.1f}% agreement{tightened})"))
        phases = [r["phases"] for r in auto.get("rounds", []) if "phases" in r]
        if phases and "seconds" in auto:
            spent = {k: sum(p.get(k, 0.0) for p in phases) for k in phases[0]}
            rows.append(("--Ts auto time", f"{auto['seconds']:.0f} s: uniform {spent['uniform']:.0f} s, per level "
                                           f"{spent['repair'] + spent['lower_levels']:.0f} s, refinement "
                                           f"{spent['refinement']:.0f} s"
                                           + (f" over {len(phases)} rounds" if len(phases) > 1 else "")
                                           + (" (budget reached)" if auto.get("budget_spent") else "")))
        held = auto.get("holdout")
        if held:
            rows.append(("--Ts auto on held-out images", f"{100 * held['agreement']:.2f}% agreement on "
                                                         f"{held['images']} calibration images it did not search on "
                                                         "(an estimate for unseen images)"))
    return rows


CODING = register_coding(Coding.of(
    OPTIONS,
    convert=convert,
    needs_calibration=lambda cfg: cfg.Ts == "auto" or cfg.residual_tolerance is not None,
    summary_rows=summary_rows,
    state_ops=amplification_ops,
    sweep_keys=("Ts", "Tc", "beta"),
    simulation_dtype="float64",
    reports=(CodingReport("residual", "final membrane residuals of the TSA layers (fig 5a)", residual_stats,
                          residual_tables, residual_plot),
             CodingReport("search", "the --Ts auto search: T_inf against agreement of every evaluated setting",
                          lambda snn: search_data(snn), search_tables, search_plot)),
))

__all__ = ["CODING", "SWSConfig", "amplification_ops", "boost_silent_periods", "convert", "convert_sws",
           "set_silent_periods", "sws_latency", "neuron_modules"]
