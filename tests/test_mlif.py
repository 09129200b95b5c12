"""One-hot multi-level LIF neuron (eqs 6-8) and the M-LIF coding (conversion of a float ANN)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnconvert.artifact import Artifact, load_artifact, new_manifest, save_artifact
from snnconvert.cli.config_flags import cli_message
from snnconvert.codings import ConversionInputs, get_coding
from snnconvert.data import load_split, make_loader
from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.graph import prepare
from snnconvert.ingest import load_model
from snnconvert.methods.mlif.coding import MLIFConfig
from snnconvert.methods.mlif.neuron import MLIFNeuron, fire_level, mlif_dynamics
from snnconvert.neurons.base import fold_time
from snnconvert.simulate.encoders import RepeatEncoder

CODING = get_coding("mlif")


def _next_up(x: float, dtype: torch.dtype) -> float:
    t = torch.tensor(x, dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(math.inf, dtype=dtype)))


# --- eqs 7-8: lane selection ----------------------------------------------------------------------

# u/theta -> lane value for S = 4 (windows (1,2] -> 1, (2,4] -> 2, (4,8] -> 4, (8, inf) -> 8)
S4_TABLE = [
    (-3.0, 0.0), (0.0, 0.0), (0.5, 0.0), (1.0, 0.0),
    ("up", 1.0, 1.0), (1.5, 1.0), (2.0, 1.0),
    ("up", 2.0, 2.0), (3.0, 2.0), (4.0, 2.0),
    ("up", 4.0, 4.0), (7.9, 4.0), (8.0, 4.0),
    ("up", 8.0, 8.0), (9.0, 8.0), (1000.0, 8.0), (math.inf, 8.0),
]


def _table(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    ratios, expected = [], []
    for row in S4_TABLE:
        if row[0] == "up":  # the next float above a window edge
            ratios.append(_next_up(row[1], dtype))
            expected.append(row[2])
        else:
            ratios.append(row[0])
            expected.append(row[1])
    return torch.tensor(ratios, dtype=dtype), torch.tensor(expected, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lane_selection_table_s4(dtype: torch.dtype) -> None:
    ratios, expected = _table(dtype)
    assert torch.equal(fire_level(ratios, 4), expected)
    # the same decisions through the dynamics with a threshold of 0.5 (u = 0.5 * ratio), one step
    out = mlif_dynamics((0.5 * ratios).view(1, -1), S=4, theta=0.5)
    assert torch.equal(out[0], expected)


def test_lane_selection_bucketize_path_and_fewer_lanes() -> None:
    ratios = torch.tensor([0.5, 1.0, 1.25, 2.0, 2.5, 4.0, 5.0, 64.0], dtype=torch.float16)
    assert fire_level(ratios, 4).tolist() == [0, 0, 1, 1, 2, 2, 4, 8]
    assert fire_level(ratios.float(), 2).tolist() == [0, 0, 1, 1, 2, 2, 2, 2]
    assert fire_level(ratios.float(), 1).tolist() == [0, 0, 1, 1, 1, 1, 1, 1]


def test_exactly_one_lane_per_neuron_and_step() -> None:
    levels = fire_level(torch.linspace(-4, 40, 2001), 3)
    assert set(levels.unique().tolist()) == {0.0, 1.0, 2.0, 4.0}


# --- eq 6: multi-step traces ------------------------------------------------------------------------


def test_trace_with_leak_and_reset() -> None:
    # S = 3, beta = 0.5, theta = 1:  u[t] = 0.5 u[t-1] + x[t] - o[t-1]
    #   t0: 1.5                       -> (1,2] -> 1
    #   t1: 0.75 + 3.0 - 1 = 2.75     -> (2,4] -> 2
    #   t2: 1.375 + 0.25 - 2 = -0.375 -> 0
    #   t3: -0.1875 + 5.0 - 0 = 4.8125 -> > 4 (top lane) -> 4
    #   t4: 2.40625 + 0 - 4 = -1.59375 -> 0
    x = torch.tensor([1.5, 3.0, 0.25, 5.0, 0.0], dtype=torch.float64).view(5, 1)
    trace = torch.empty_like(x)
    out = mlif_dynamics(x, S=3, beta=0.5, trace=trace)
    assert out.flatten().tolist() == [1.0, 2.0, 0.0, 4.0, 0.0]
    assert trace.flatten().tolist() == [1.5, 2.75, -0.375, 4.8125, -1.59375]
    # theta = 2 with doubled inputs: the membrane doubles, the lane decisions are the same
    out2 = mlif_dynamics(2 * x, S=3, beta=0.5, theta=2.0, trace=trace)
    assert out2.flatten().tolist() == [1.0, 2.0, 0.0, 4.0, 0.0]
    assert trace.flatten().tolist() == [3.0, 5.5, -0.75, 9.625, -3.1875]


def test_residual_carries_over_without_leak() -> None:
    # S = 2, beta = 1: 0.75 -> 0 | 1.5 -> 1 | 1.5 + 0.75 - 1 = 1.25 -> 1 | 1.25 + 0.75 - 1 = 1.0 -> 0
    # (1 is not > 1: the window (1, 2] is open on the left)
    x = torch.full((4, 1), 0.75, dtype=torch.float64)
    trace = torch.empty_like(x)
    assert mlif_dynamics(x, S=2, trace=trace).flatten().tolist() == [0.0, 1.0, 1.0, 0.0]
    assert trace.flatten().tolist() == [0.75, 1.5, 1.25, 1.0]


def test_neuron_module_on_folded_frames() -> None:
    neuron = MLIFNeuron(T=5, S=3, beta=0.5).double()
    a = torch.tensor([1.5, 3.0, 0.25, 5.0, 0.0], dtype=torch.float64)
    # b: 9 -> 4 (top lane) | 4.5 - 4 = 0.5 -> 0 | 0.25 -> 0 | 0.125 -> 0 | 0.0625 -> 0
    b = torch.tensor([9.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    frames = fold_time(torch.stack([a, b], dim=1).view(5, 2, 1))  # (T*B, 1), time-major
    with torch.no_grad():
        neuron.recording = True
        out = neuron(frames).view(5, 2)
        neuron.recording = False
    assert out[:, 0].tolist() == [1.0, 2.0, 0.0, 4.0, 0.0]
    assert out[:, 1].tolist() == [4.0, 0.0, 0.0, 0.0, 0.0]
    stats = neuron.stats("n")
    assert (stats.neurons, stats.lanes, stats.samples) == (1, 3, 2)
    assert stats.events_per_step == [1.0, 0.5, 0.0, 0.5, 0.0]  # per sample
    assert stats.rate == pytest.approx(2.0)  # 4 spikes / 2 samples / 1 neuron
    assert stats.density == pytest.approx(2.0 / (3 * 5))
    assert neuron.lane_counts.tolist() == [1.0, 1.0, 2.0]


# --- S = 1 is the classic LIF neuron (eqs 1-2) -----------------------------------------------------


def _lif_reference(x: torch.Tensor, beta: float, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs 1-2, written out independently: u[t] = beta u[t-1] + x[t] - theta o[t-1]; o = [u/theta > 1]."""
    u = torch.zeros_like(x[0])
    o = torch.zeros_like(x[0])
    spikes, trace = [], []
    for t in range(x.shape[0]):
        u = beta * u + x[t] - theta * o
        o = (u / theta > 1).to(x.dtype)
        trace.append(u.clone())
        spikes.append(o)
    return torch.stack(spikes), torch.stack(trace)


@pytest.mark.parametrize(("beta", "theta"), [(1.0, 1.0), (0.9, 0.7), (0.5, 1.3)])
def test_single_lane_equals_lif(beta: float, theta: float) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(16, 4, 50, generator=gen, dtype=torch.float64) * 1.6 - 0.2
    ref_spikes, ref_trace = _lif_reference(x, beta, theta)
    trace = torch.empty_like(x)
    spikes = mlif_dynamics(x, S=1, beta=beta, theta=theta, trace=trace)
    assert torch.equal(spikes, ref_spikes)
    assert torch.equal(trace, ref_trace)
    assert 0.1 < float(spikes.mean()) < 0.9  # the comparison exercises firing and silence


# --- conversion -------------------------------------------------------------------------------------


def _random_calibration(shape: tuple[int, ...], n: int = 8) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.rand((n, *shape[1:]), generator=gen), torch.zeros(n)), batch_size=4)


@pytest.fixture(scope="module")
def lenet() -> tuple:
    lm = load_model("lenet5")
    float_gm = prepare(lm.module, lm.input_spec)
    calib = make_loader(load_split("digits", "calib", lm.input_spec, limit=256), 128)
    split = load_split("digits", "eval", lm.input_spec)
    images = torch.stack([split.dataset[i][0] for i in range(len(split))])
    labels = torch.tensor([split.dataset[i][1] for i in range(len(split))])
    return lm, float_gm, calib, images, labels


def _convert(lenet: tuple, **options):
    lm, float_gm, calib, _, _ = lenet
    return CODING.convert(ConversionInputs(float_gm, None, lm.input_spec, calib), MLIFConfig(**options))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet20", {}),
        ("resnet18", {"num_classes": 10, "input_size": (32, 32)}),
        pytest.param("vgg16", {"num_classes": 10, "input_size": (32, 32)}, marks=pytest.mark.slow),
    ],
)
def test_conversion_runs_on_random_models(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    lm = load_model(name, "random", **kwargs)
    float_gm = prepare(lm.module, lm.input_spec)
    shape = lm.input_spec.example_shape(2)
    snn = CODING.convert(ConversionInputs(float_gm, None, lm.input_spec, _random_calibration(shape)),
                         MLIFConfig(S=3, T=2))
    with torch.no_grad(), snn.recording():
        logits = snn(torch.rand(shape))
    assert logits.shape == (2, 10)
    assert bool(torch.isfinite(logits).all())
    neurons = [n for n in snn.neurons().values() if isinstance(n, MLIFNeuron)]
    assert len(neurons) == len(snn.info["neuron_layers"]) > 0
    assert sum(s.events for s in snn.spike_stats()) > 0
    assert all(n.lanes == 3 and n.steps_out == 2 for n in neurons)


def test_conversion_on_lenet_info_and_accuracy(lenet: tuple) -> None:
    _, float_gm, _, images, labels = lenet
    snn = _convert(lenet, S=3, T=8)
    info = snn.info
    assert info["coding"] == "mlif"
    assert (info["S"], info["T"], info["leak"], info["frames"], info["latency"]) == (3, 8, 1.0, 8, 8)
    assert info["latency_terms"] == "T = 8, S = 3"
    assert info["neuron_layers"] == ["relu1", "relu2", "relu3", "relu4"]
    assert all(v > 0 for v in info["thresholds"].values())
    with torch.no_grad():
        ann = (float_gm(images).argmax(1) == labels).float().mean().item()
        acc = (snn(images).argmax(1) == labels).float().mean().item()
    assert ann > 0.98
    assert acc > 0.97  # measured 0.989 (S=3, T=8, 90th percentile thresholds, 256 calibration images)
    # max-pooling works on the spike frames of the neuron before it; its gain folded into conv2
    body = snn.body
    kinds = [type(body.get_submodule(n.target)).__name__ for n in body.graph.nodes if n.op == "call_module"]
    assert kinds.count("Gain") == 0
    assert kinds.index("MaxPool2d") == kinds.index("MLIFNeuron") + 1


class _Eq9Activation(nn.Module):
    """Reference for T = 1 (eq 9): theta * 2^s for u/theta in window s, written as explicit windows."""

    def __init__(self, theta: float, S: int) -> None:
        super().__init__()
        self.theta, self.S = theta, S

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        r = u / self.theta
        out = torch.zeros_like(u)
        for s in range(self.S):
            top = r <= 2 ** (s + 1) if s < self.S - 1 else torch.ones_like(r, dtype=torch.bool)
            out = torch.where((r > 2**s) & top, torch.full_like(u, self.theta * 2**s), out)
        return out


def test_single_step_network_is_the_log_quantized_ann(lenet: tuple) -> None:
    """At T = 1 the SNN computes the ANN with every ReLU replaced by eq 9's quantizer."""
    _, float_gm, _, images, _ = lenet
    snn = _convert(lenet, S=6, T=1, percentile=99.9, anchor="highest")
    reference = copy.deepcopy(float_gm)
    for name, theta in snn.info["thresholds"].items():
        reference.add_submodule(name, _Eq9Activation(theta, 6))
    with torch.no_grad():
        expected = reference(images)
        got = snn(images)
    assert float(expected.abs().max()) > 1.0  # the network is not silent
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() == 1.0


def test_single_step_with_paper_thresholds_is_silent(lenet: tuple) -> None:
    """At T = 1, u/theta <= 1 is silent: with theta at the 90th percentile the first layer passes
    at most ~10% of its activations (the paper fine-tunes from this initialisation)."""
    _, _, _, images, _ = lenet
    snn = _convert(lenet, S=3, T=1)
    with torch.no_grad(), snn.recording():
        snn(images)
    first = snn.spike_stats()[0]
    assert first.name.endswith("relu1")
    assert 0.0 < first.rate <= 0.12


def test_state_ops_and_lane_metrics(lenet: tuple) -> None:
    _, _, _, images, _ = lenet
    snn = _convert(lenet, S=3, T=4)
    with torch.no_grad(), snn.recording():
        snn(images[:64])
    ops = CODING.state_ops(snn)
    stats = {s.name: s for s in snn.spike_stats()}
    assert set(ops) == set(stats)
    for name, value in ops.items():
        assert value == stats[name].neurons * 4
    first = next(s for name, s in stats.items() if name.endswith("relu1"))
    assert first.neurons == 16 * 8 * 8  # lenet5 conv1: 16 channels on 8x8
    metrics = CODING.metrics(snn)
    assert len(metrics["lane_share"]) == 3
    assert sum(metrics["lane_share"]) == pytest.approx(1.0, abs=1e-5)
    for name, neuron in snn.neurons().items():
        assert float(neuron.lane_counts.sum()) == pytest.approx(stats[name].events * stats[name].samples)
    snn.reset_stats()
    assert all(float(n.lane_counts.sum()) == 0 for n in snn.neurons().values())


def test_leak_changes_the_result(lenet: tuple) -> None:
    _, _, _, images, _ = lenet
    with torch.no_grad():
        a = _convert(lenet, S=3, T=4, leak=1.0)(images[:32])
        b = _convert(lenet, S=3, T=4, leak=0.5)(images[:32])
    assert not torch.allclose(a, b)
    assert bool(torch.isfinite(b).all())


def test_artifact_round_trip_gives_identical_logits(lenet: tuple, tmp_path: Path) -> None:
    _, _, _, images, _ = lenet
    snn = _convert(lenet, S=3, T=4, leak=0.75)
    path = save_artifact(Artifact("snn", new_manifest("snn"), {"snn": snn}), tmp_path / "m.snnc")
    loaded = load_artifact(path).models["snn"]
    assert loaded.info == snn.info
    with torch.no_grad():
        assert torch.equal(loaded(images[:50]), snn(images[:50]))
    neuron = loaded.body.get_submodule("relu1")
    assert isinstance(neuron, MLIFNeuron) and (neuron.T, neuron.S, neuron.beta) == (4, 3, 0.75)


def test_sequence_input_feeds_one_frame_per_step() -> None:
    enc = RepeatEncoder(3)
    seq = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 1, 2, 2)  # (B, T, C, H, W)
    frames = enc(seq)
    assert frames.shape == (6, 1, 2, 2)
    for k in range(3):
        assert torch.equal(frames[2 * k : 2 * k + 2], seq[:, k])
    image = torch.rand(2, 1, 2, 2)
    assert torch.equal(enc(image), torch.cat([image] * 3))
    with pytest.raises(SnnConvertError, match="convert it with T 2") as info:
        enc(seq[:, :2])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"S": 0}, "^S 0"),
        ({"S": 17}, "^S 17"),
        ({"S": 2.5}, "^S 2.5"),
        ({"S": True}, "^S True"),
        ({"T": 0}, "^T 0"),
        ({"T": 1.5}, "^T 1.5"),
        ({"leak": 1.5}, "^leak 1.5"),
        ({"leak": -0.1}, "^leak -0.1"),
        ({"percentile": 0.0}, "^percentile 0.0"),
        ({"percentile": 101}, "^percentile 101"),
        ({"anchor": "middle"}, "^anchor 'middle'"),
    ],
)
def test_invalid_options_raise_one_line(options: dict, fragment: str) -> None:
    with pytest.raises(SnnConvertError, match=fragment) as info:
        MLIFConfig(**options).validate()
    assert "\n" not in str(info.value)
    (key,) = options
    assert isinstance(info.value, ConfigError) and (info.value.config, info.value.field) == (MLIFConfig, key)
    assert cli_message(info.value).startswith(f"--{key} ")  # the command line names the flag


def test_conversion_needs_calibration(lenet: tuple) -> None:
    lm, float_gm, _, _, _ = lenet
    with pytest.raises(SnnConvertError, match="calibration") as info:
        CODING.convert(ConversionInputs(float_gm, None, lm.input_spec, None), MLIFConfig())
    assert "\n" not in str(info.value)
