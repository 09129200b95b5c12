"""Running the networks of an evaluation: logits in batches that fit in memory, synapse loads and
the operation and energy counts, across ranks under torchrun."""

from __future__ import annotations

import copy
import resource
import sys
import time

import torch
from torch import Tensor, nn

from snnconvert.codings import get_coding
from snnconvert.configs.evaluate import EvaluateConfig
from snnconvert.core import QuantizedModel
from snnconvert.device import resolve_device
from snnconvert.distributed import DistContext
from snnconvert.evaluate.report import LayerOps, ModelScore, OpsReport
from snnconvert.progress import track
from snnconvert.simulate.chunks import chunkable
from snnconvert.simulate.gating import gated_state_ops
from snnconvert.simulate.memory import chunk_budget, fit_simulation_batch, largest_activation, snn_batch_size
from snnconvert.simulate.network import DTYPES, SpikingNetwork
from snnconvert.simulate.probes import SynapseLoad, synapse_probe


@torch.no_grad()
def run_logits(model: nn.Module, images: Tensor, *, batch_size: int, dtype: torch.dtype,
               label: str, show_progress: bool, device: torch.device | None = None) -> tuple[Tensor, float]:
    """Logits of ``model`` on ``images`` (batched, moved to ``device``), on the CPU in float64,
    and the wall time it took."""
    model.eval()
    outputs = []
    start = time.perf_counter()
    batches = range(0, len(images), batch_size)
    for i in track(batches, label, show=show_progress):
        outputs.append(model(images[i:i + batch_size].to(device=device, dtype=dtype)).double().cpu())
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return torch.cat(outputs), time.perf_counter() - start


def snn_dtype(snn: SpikingNetwork, config: EvaluateConfig) -> torch.dtype:
    """The precision ``snn`` is simulated in: ``config.snn_dtype`` when set, else its coding's own
    (``Coding.simulation_dtype``), else ``config.dtype``."""
    if config.snn_dtype != "auto":
        return DTYPES[config.snn_dtype]
    return DTYPES[get_coding(snn.coding).simulation_dtype or config.dtype]


def in_dtype(model: nn.Module, dtype: torch.dtype, device: torch.device | None = None) -> nn.Module:
    """``model`` itself when it already computes in ``dtype`` on ``device`` (default: where it
    is), else a converted copy (the caller's model is never changed)."""
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()
               and t.dtype in (torch.float32, torch.float64)]
    current = tensors[0].dtype if tensors else dtype
    where = tensors[0].device if tensors else torch.device("cpu")
    if current == dtype and (device is None or where == device):
        return model
    return copy.deepcopy(model).to(device=device or where, dtype=dtype)


def _topk(logits: Tensor, labels: Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == labels.view(-1, 1)).any(dim=1)
    return float(hits.double().mean())


def _score(name: str, logits: Tensor, labels: Tensor) -> ModelScore:
    return ModelScore(name, _topk(logits, labels, 1), _topk(logits, labels, 5) if logits.shape[1] > 5 else None)


def _agreement(a: Tensor, b: Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).double().mean())


def ops_report(snn: SpikingNetwork, loads: dict[str, SynapseLoad], e_mac: float, e_ac: float) -> OpsReport:
    coding = get_coding(snn.coding)
    state = sum(gated_state_ops(snn, coding.state_ops(snn)).values()) if coding.state_ops else 0.0
    layers = []
    first = next(iter(loads), None)
    for name, load in loads.items():
        is_first = name == first
        e_ann = load.macs * e_mac
        e_snn = load.synaptic_ops * (e_mac if is_first else e_ac)
        layers.append(LayerOps(name, load.macs, load.rate, load.synaptic_ops, e_ann, e_snn, is_first))
    ann = sum(lo.macs for lo in layers)
    syn = sum(lo.synaptic_ops for lo in layers)
    e_ann = sum(lo.energy_ann_pj for lo in layers)
    e_snn = sum(lo.energy_snn_pj for lo in layers)
    return OpsReport(layers, ann, syn, state, state + syn, e_ann / 1e6, e_snn / 1e6,
                     e_ann / e_snn if e_snn > 0 else float("inf"), e_mac, e_ac)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def runs_in_chunks(snn: SpikingNetwork, example: Tensor, device: torch.device) -> bool:
    """Whether ``snn`` will run images like ``example`` in time chunks on ``device``."""
    with torch.no_grad():
        return bool(chunk_budget(snn.time_chunk_bytes, device)) and chunkable(snn, example)


def simulation_batch(quantized: QuantizedModel, snn: SpikingNetwork, config: EvaluateConfig,
                     device: torch.device, *, show_progress: bool = False) -> tuple[int, str | None]:
    """Images per SNN batch that fit in memory (:func:`snnconvert.simulate.memory.fit_simulation_batch`:
    frames x batch x the largest activation, on ``device``), and a one-line note when that is
    fewer than ``--batch-size`` (printed to stderr with ``show_progress``). Not even one image
    fitting is a one-line error."""
    steps = max(1, int(snn.info.get("frames", 1)))
    available = None
    if device.type == "cuda":
        available = int(torch.cuda.mem_get_info(device)[0])
    # without an ANN (a network loaded from NIR) the SNN itself is measured, all its frames at once
    reference: nn.Module = quantized.model if quantized.model is not None else _AllFrames(snn)
    where = next(iter(reference.parameters()), torch.zeros(())).device
    example = torch.zeros(quantized.info.input_spec.example_shape(1), device=where)
    itemsize = torch.empty((), dtype=snn_dtype(snn, config)).element_size()
    batch = fit_simulation_batch(reference, example, steps if quantized.model is not None else 1, config.batch_size,
                                 element_size=itemsize,
                                 what=f"the {snn.coding} network", option="--batch-size", available=available)
    if batch >= config.batch_size:
        return batch, None
    note = (f"--batch-size {config.batch_size} does not fit in memory for the {snn.coding} network "
            f"({steps} time steps): the SNN runs {batch} images per batch")
    if show_progress:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return batch, note


class _AllFrames(nn.Module):
    """``snn`` run with all its frames folded at once (no time chunks), so that its layers'
    activations have their full size: what sizes a simulation when there is no ANN to measure."""

    def __init__(self, snn: SpikingNetwork) -> None:
        super().__init__()
        self.snn = snn

    def forward(self, images: Tensor) -> Tensor:
        setting, self.snn.time_chunk_bytes = self.snn.time_chunk_bytes, 0
        try:
            return self.snn(images)
        finally:
            self.snn.time_chunk_bytes = setting


def frame_activation(snn: SpikingNetwork, example: Tensor) -> int:
    """Elements per image and frame of the largest activation of ``snn`` on ``example`` (what
    :func:`~snnconvert.simulate.memory.largest_activation` measures of an ANN), for a network
    without one (loaded from NIR)."""
    frames = max(1, int(snn.info.get("frames", 1)))
    return max(1, largest_activation(_AllFrames(snn), example) // frames)


def wants_coding_reports(config: EvaluateConfig, snn: SpikingNetwork) -> bool:
    """Whether ``config`` asks for one of the SNN's coding's own reports (``coding``, ``all`` or by name)."""
    return config.wants("coding") or any(config.wants(extra.name) for extra in get_coding(snn.coding).reports)


def _run_snn(snn: SpikingNetwork, images: Tensor, config: EvaluateConfig, show_progress: bool,
             activation_elements: int, label: str = "SNN",
             device: torch.device | None = None, max_batch: int | None = None,
             ) -> tuple[Tensor, float, dict[str, SynapseLoad]]:
    snn.reset_stats()
    dtype = snn_dtype(snn, config)
    where = device if device is not None else resolve_device(config.device)
    with snn.recording(detail=wants_coding_reports(config, snn)), synapse_probe(snn) as loads:  # (chunk-aware)
        batch = snn_batch_size(int(snn.info.get("frames", 1)), min(config.batch_size, max_batch or config.batch_size),
                               activation_elements, torch.empty((), dtype=dtype).element_size(),
                               chunked=runs_in_chunks(snn, images[:1].to(dtype), where))
        logits, seconds = run_logits(snn, images, batch_size=batch, dtype=dtype, label=label,
                                     show_progress=show_progress,
                                     device=where)
    return logits, seconds, dict(loads)


def _combine_ranks(ctx: DistContext, snn: SpikingNetwork, logits: Tensor, loads: dict[str, SynapseLoad],
                   count: int, device: torch.device) -> tuple[Tensor, dict[str, SynapseLoad]]:
    """Every rank's share of one SNN run as one: logits gathered in order, neuron statistics
    (counters) summed, synapse loads (per-sample means) averaged with each rank's image count."""
    if not ctx.enabled:
        return logits, loads
    import torch.distributed as dist

    local = len(logits)
    for neuron in snn.neurons().values():
        for name, value in neuron.additive_stats().items():
            total = value.to(device)
            dist.all_reduce(total)
            neuron.set_stat(name, total)
    for name in sorted(loads):
        load = loads[name]
        weighted = torch.tensor([load.input_events * local], dtype=torch.float64, device=device)
        dist.all_reduce(weighted)
        load.input_events = float(weighted[0]) / max(count, 1)
    return ctx.gather_rows(logits, count, device), loads


def overall_spike_rate(snn: SpikingNetwork) -> float:
    """Spikes per neuron per inference over all neuron layers (the encoder excluded)."""
    stats = [s for s in snn.spike_stats() if s.name != "encoder"]
    neurons = sum(s.neurons for s in stats)
    return sum(s.events for s in stats) / max(neurons, 1)
