"""Tests of running rate-coded networks in time chunks (snnconvert.simulate.chunks): the same
floats as one unchunked call, the same statistics, and no state left between batches."""

from __future__ import annotations

import copy
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnconvert.codings import ConversionInputs
from snnconvert.data import InputSpec
from snnconvert.evaluate import ops_report
from snnconvert.graph import prepare
from snnconvert.methods.rate import coding as rate
from snnconvert.methods.rate.neuron import IFNeuron, RateMaxPool, running_max_pool, running_max_pool_chunk
from snnconvert.simulate.chunks import (
    chunkable,
    chunked_forward,
    run_in_chunks,
    steps_per_chunk,
)
from snnconvert.simulate.memory import CHUNK_BYTES as DEFAULT_CHUNK_BYTES
from snnconvert.simulate.memory import DEVICE_CHUNK_BYTES as DEFAULT_DEVICE_CHUNK_BYTES
from snnconvert.simulate.memory import chunk_budget
from snnconvert.simulate.probes import synapse_probe

T = 8


class _ResidualNet(nn.Module):
    """conv -> relu -> (conv -> relu) + skip -> max-pool -> conv -> relu -> linear."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 3 * 3, 5)
        with torch.no_grad():
            for m in (self.c1, self.c2, self.c3, self.fc):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a)) + a
        p = F.max_pool2d(b, 2)
        return self.fc(torch.flatten(torch.relu(self.c3(p)), 1))


def _snn(dtype: str = "float32", steps: int = T):
    spec = InputSpec(channels=2, size=(6, 6))
    float_gm = prepare(_ResidualNet(), spec)
    x = torch.rand(16, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    calib = DataLoader(TensorDataset(x, torch.zeros(16, dtype=torch.long)), batch_size=8)
    return rate.convert(ConversionInputs(float_gm, None, spec, calib),
                        rate.Config(T=steps, percentile=99.0, dtype=dtype))


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 2, 6, 6, generator=torch.Generator().manual_seed(seed))


def _recorded(snn, x: torch.Tensor, steps: int | None) -> tuple[torch.Tensor, dict, dict, dict]:
    """Logits, spike stats, saturation counts and synapse loads of one recorded run (``steps``:
    steps per chunk; None: unchunked)."""
    snn.reset_stats()
    with torch.no_grad(), snn.recording(), synapse_probe(snn) as loads:
        if steps is None:
            snn.time_chunk_bytes = 0
            out = snn(x)
        else:
            out = run_in_chunks(snn, x.to(snn.compute_dtype()), steps)
    stats = {s.name: asdict(s) for s in snn.spike_stats()}
    saturated = {name: float(n.saturated_count) for name, n in snn.neurons().items() if isinstance(n, IFNeuron)}
    return out, stats, saturated, {k: asdict(v) for k, v in loads.items()}


def test_the_net_has_a_residual_add_a_pool_and_can_chunk() -> None:
    snn = _snn()
    assert any(n.op == "call_function" and "add" in str(n.target) for n in snn.body.graph.nodes)
    assert sum(isinstance(m, RateMaxPool) for m in snn.body.modules()) == 1
    assert sum(isinstance(m, IFNeuron) for m in snn.body.modules()) == 3
    with torch.no_grad():
        assert chunkable(snn, _images(2, 0))
    assert not chunkable(snn, _images(2, 0))  # grad mode with trainable weights: all frames at once


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("steps", [1, 3, T])
def test_chunked_equals_unchunked(steps: int, dtype: str) -> None:
    snn = _snn(dtype)
    x = _images(5, 2)
    ref, ref_stats, ref_sat, ref_loads = _recorded(snn, x, None)
    out, stats, sat, loads = _recorded(snn, x, steps)
    if dtype == "float64":
        assert torch.equal(out, ref)  # bit for bit
    else:  # float32 GEMMs may round differently with fewer rows per call (measured: 4.8e-7)
        assert torch.allclose(out, ref, rtol=1e-6, atol=1e-5)
    assert stats == ref_stats  # spike counts per layer and step, samples, neurons
    assert sat == ref_sat
    assert loads == ref_loads  # the synapse inputs OPF and energy are computed from
    assert sum(sum(s["events_per_step"]) for s in stats.values()) > 0  # not trivially silent
    assert sum(sat.values()) > 0  # thresholds at p99: some neurons saturate (counted at the last chunk)
    report = ops_report(snn, _loads(snn, x, steps), 4.6, 0.9)  # OPF and energy
    assert asdict(report) == asdict(ops_report(snn, _loads(snn, x, None), 4.6, 0.9))


def _loads(snn, x: torch.Tensor, steps: int | None) -> dict:
    snn.reset_stats()
    with torch.no_grad(), snn.recording(), synapse_probe(snn) as loads:
        if steps is None:
            snn.time_chunk_bytes = 0
            snn(x)
        else:
            run_in_chunks(snn, x, steps)
    return dict(loads)


def _run_counting(snn, x: torch.Tensor, aware: bool) -> tuple[torch.Tensor, list[int], list[int]]:
    """Output, rows per max-pool call and rows per decoder call of ``snn(x)``."""
    pool_rows: list[int] = []
    decoder_rows: list[int] = []
    handles = [m.register_forward_hook(_count(pool_rows, aware)) for m in snn.body.modules()
               if isinstance(m, RateMaxPool)]
    handles.append(snn.decoder.register_forward_hook(_count(decoder_rows)))
    try:
        with torch.no_grad():
            out = snn(x)
    finally:
        for h in handles:
            h.remove()
    return out, pool_rows, decoder_rows


def test_forward_chunks_by_bytes_and_matches() -> None:
    snn = _snn()
    x = _images(4, 3)
    ref_net = copy.deepcopy(snn)
    ref_net.time_chunk_bytes = 0
    with torch.no_grad():
        ref = ref_net(x)
    # largest activation: 4 channels x 6 x 6 = 144 elements per image-step, 4 bytes, 4 images
    snn.time_chunk_bytes = 3 * 4 * 144 * 4  # three steps per chunk
    out, pool_rows, decoder_rows = _run_counting(snn, x, aware=False)
    assert pool_rows == [T * 4] and snn.chunk_elements == {}  # an unmarked body hook: all frames at once
    assert torch.equal(out, ref)
    out, pool_rows, decoder_rows = _run_counting(snn, x, aware=True)
    # the first chunk is one step (it measures the largest activation), then three at a time
    assert pool_rows == [4 * k for k in (1, 3, 3, 1)]
    assert snn.chunk_elements == {((2, 6, 6), torch.float32): 144}
    assert decoder_rows == [T * 4]  # the decoder runs once, on all output frames
    assert torch.allclose(out, ref, rtol=1e-6, atol=1e-5)
    out, pool_rows, _ = _run_counting(snn, x, aware=True)
    assert pool_rows == [4 * k for k in (3, 3, 2)]  # measured once per image shape
    assert torch.allclose(out, ref, rtol=1e-6, atol=1e-5)


def _count(calls: list[int], aware: bool = False):
    from snnconvert.simulate.chunks import chunk_aware

    def hook(_m, inputs, _o) -> None:
        calls.append(inputs[0].shape[0])
    return chunk_aware(hook) if aware else hook


def test_state_is_reset_between_batches() -> None:
    snn = _snn()
    a, b = _images(3, 4), _images(3, 5)
    ref = copy.deepcopy(snn)
    ref.time_chunk_bytes = 0
    with torch.no_grad():
        run_in_chunks(snn, a, 3)
        after_a = run_in_chunks(snn, b, 3)
        assert torch.equal(after_a, ref(b))
    for n in snn.neurons().values():
        assert n.time_window is None
        assert all(v is None for k, v in n._buffers.items() if k.startswith("chunk_state"))
    assert snn.time_window is None
    # an error inside a chunk leaves no state either
    with torch.no_grad(), pytest.raises(RuntimeError):
        run_in_chunks(snn, torch.rand(3, 1, 6, 6), 3)
    assert all(n.time_window is None for n in snn.neurons().values())
    with torch.no_grad():
        assert torch.equal(run_in_chunks(snn, b, 3), ref(b))


def test_max_pool_chunk_continues_running_sums() -> None:
    g = torch.Generator().manual_seed(6)
    x = (torch.rand(7, 2, 1, 4, 4, generator=g) < 0.4).double()
    pool = dict(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    whole = running_max_pool(x, pool)
    first, sums, pooled = running_max_pool_chunk(x[:4], pool, None)
    rest, _, _ = running_max_pool_chunk(x[4:], pool, (sums, pooled))
    assert torch.equal(torch.cat([first, rest]), whole)
    assert torch.equal(sums, x[:4].sum(0))  # the carried running sums: spike counts so far


def test_min_chunk_frames_is_weight_reuse_times_weights_over_activation_bytes() -> None:
    from snnconvert.simulate.chunks import min_chunk_frames
    from snnconvert.simulate.memory import WEIGHT_REUSE

    body = nn.Linear(100, 50)  # 5,050 floats = 20,200 bytes of weights
    # 1,000 activation elements (4,000 bytes) per frame: 4 x 20,200 / 4,000 = 20.2 -> 21 frames
    assert WEIGHT_REUSE == 4 and min_chunk_frames(body, 1000, 4) == 21
    assert min_chunk_frames(body, 10**6, 4) == 1  # small weights: the byte budget decides
    snn, x = _snn(steps=64), _images(2, 3)
    with torch.no_grad():
        snn(x)
    (key,) = snn.chunk_min_frames
    assert snn.chunk_min_frames[key] == min_chunk_frames(snn.body, snn_total_elements(snn, x), 4)


def snn_total_elements(snn, x: torch.Tensor) -> int:
    """Elements per image and step of the input and all leaf outputs of the body, from one
    unchunked run (each output's first row is one frame of one image)."""
    outs = [x[0].numel()]
    leaves = [m for m in snn.body.modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda _m, _i, o: outs.append(o[0].numel())) for m in leaves]
    try:
        snn.time_chunk_bytes = 0
        with torch.no_grad():
            snn(x[:1])
    finally:
        for h in handles:
            h.remove()
        snn.time_chunk_bytes = None
    return sum(outs)


FOUR_MIB = 4 * 2**20


def test_steps_per_chunk_and_when_chunking_is_off() -> None:
    assert steps_per_chunk(256, 32, 16 * 32 * 32, 4, DEFAULT_CHUNK_BYTES) == 16  # 32 MiB: 16 steps of 2 MiB
    assert steps_per_chunk(256, 32, 16 * 32 * 32, 4, FOUR_MIB) == 2  # ResNet-20, batch 32
    assert steps_per_chunk(8, 1, 10, 4, FOUR_MIB) == 8
    assert steps_per_chunk(256, 64, 10**6, 8, 1) == 1
    # the weight-reuse floor: ResNet-18 at 64x64, batch 8 (largest map 64 x 32 x 32): 4 MiB would be
    # 2 steps = 16 frames; a floor of 109 frames makes it ceil(109 / 8) = 14 steps
    assert steps_per_chunk(256, 8, 64 * 32 * 32, 4, FOUR_MIB) == 2
    assert steps_per_chunk(256, 8, 64 * 32 * 32, 4, FOUR_MIB, min_frames=109) == 14
    assert steps_per_chunk(8, 8, 64 * 32 * 32, 4, FOUR_MIB, min_frames=109) == 8  # at most T
    snn = _snn()
    x = _images(2, 7)
    with torch.no_grad():
        assert chunked_forward(snn, x) is not None  # the first call measures the largest activation
        assert chunked_forward(snn, x) is None  # then: 2 images x 8 steps fit one chunk of 32 MiB
        snn.time_chunk_bytes = 0
        assert chunked_forward(snn, x) is None  # off
        assert chunk_budget(None, torch.device("cpu")) == DEFAULT_CHUNK_BYTES
        assert chunk_budget(None, torch.device("cuda")) == DEFAULT_DEVICE_CHUNK_BYTES
        assert chunk_budget(0, torch.device("cpu")) == 0
        snn.time_chunk_bytes = 1
        x.requires_grad_(True)
        assert not chunkable(snn, x) or not torch.is_grad_enabled()
    with torch.enable_grad():
        assert not chunkable(snn, x)  # training needs all frames at once
    with torch.no_grad():  # 3 frames per sample but T = 8: left to the encoder's one-line error
        assert chunked_forward(snn, x.detach().unsqueeze(1).expand(2, 3, 2, 6, 6)) is None


def test_evaluate_reports_identical_with_and_without_chunks() -> None:
    import snnconvert
    from snnconvert.evaluate import EvaluateConfig, evaluate
    from snnconvert.ingest import load_model
    from snnconvert.quantize import QuantizeConfig

    q = snnconvert.quantize(load_model("lenet5"), data="digits", config=QuantizeConfig(bits=8, calib_limit=128),
                            eval_limit=0)
    snn = snnconvert.to_snn(q, "rate", T=16)
    off = copy.deepcopy(snn)
    off.time_chunk_bytes = 0
    # conv1 output 16 x 8 x 8 = 1024 elements per image-step: 30 images x 3 steps per chunk
    snn.time_chunk_bytes = 30 * 3 * 1024 * 4
    cfg = EvaluateConfig(limit=60, reports=("accuracy", "energy", "rates"), batch_size=30)
    chunked, folded = evaluate(q, snn, cfg).as_dict(), evaluate(q, off, cfg).as_dict()
    assert snn.chunk_elements == {((1, 8, 8), torch.float32): 1024}
    for key in ("accuracy", "ops", "rates", "coding_metrics", "coding_reports"):
        assert chunked[key] == folded[key], key  # accuracy, OPF and energy, spike rates, clipping
    assert chunked["ops"]["layers"] and chunked["rates"]


def test_affine_synapse_with_one_shift_runs_any_number_of_frames() -> None:
    """A per-channel affine (e.g. a BN left after a concatenation, DenseNet) with the same shift at
    every step gets a chunk of 1 step of a T=4 run: x * scale + shift, by hand."""
    from snnconvert.simulate.synapse import SynapseAffine

    affine = SynapseAffine(3, steps=4)
    affine.scale.copy_(torch.tensor([1.0, 2.0, -1.0]))
    affine.shift.copy_(torch.tensor([0.5, 0.0, 1.0]))
    frames = torch.ones(2, 3, 2, 2)  # 1 step x 2 images
    out = affine(frames)
    expected = torch.tensor([1.5, 2.0, 0.0]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    assert torch.equal(out, expected)
    affine.frame_bias_gain.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # shift only at the first step
    out = affine(torch.ones(4, 3, 1, 1))  # 4 steps x 1 image
    assert torch.equal(out[0].flatten(), torch.tensor([1.5, 2.0, 0.0]))
    assert torch.equal(out[1].flatten(), torch.tensor([1.0, 2.0, -1.0]))


def test_evaluate_batches_by_one_frame_per_image_when_the_network_runs_in_chunks() -> None:
    from snnconvert.evaluate import runs_in_chunks
    from snnconvert.simulate.memory import BATCH_BYTES as SNN_BATCH_BYTES
    from snnconvert.simulate.memory import snn_batch_size

    snn, x = _snn(steps=256), _images(2, 3)
    assert runs_in_chunks(snn, x[:1], torch.device("cpu"))
    snn.info["frames"] = 256
    elements = 4 * 6 * 6  # the largest activation per image and step (c1/c2: 4 x 6 x 6)
    # all 256 frames folded: 256 x 144 x 4 bytes = 147,456 per image -> 56 images in 8 MiB
    assert snn_batch_size(256, 1000, elements) == SNN_BATCH_BYTES // (256 * elements * 4) == 56
    # in chunks only one step per image must fit: 8 MiB / 576 bytes, capped by the batch size
    assert snn_batch_size(256, 1000, elements, chunked=True) == 1000
    assert snn_batch_size(256, 100_000, elements, chunked=True) == SNN_BATCH_BYTES // (elements * 4)
    snn.time_chunk_bytes = 0
    assert not runs_in_chunks(snn, x[:1], torch.device("cpu"))
