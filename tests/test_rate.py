"""Tests of the rate coding (snnconvert.methods.rate.coding) and its IF neurons (neurons.integrate_fire)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnconvert.artifact import Artifact, load_artifact, save_artifact
from snnconvert.codings import ConversionInputs, get_coding
from snnconvert.data import InputSpec, load_split, make_loader
from snnconvert.errors import ConfigError, SnnConvertError
from snnconvert.graph import prepare
from snnconvert.graph.modules import BoundedReLU
from snnconvert.ingest import load_model
from snnconvert.methods.rate import coding as rate
from snnconvert.methods.rate.neuron import (
    IFNeuron,
    RateMaxPool,
    if_dynamics,
    running_max_pool,
    window_max,
)
from snnconvert.simulate.synapse import Gain

# ----------------------------------------------------------------------------- IF dynamics


def _trace(values: list[float], init: float) -> tuple[list[float], float]:
    z = torch.tensor(values, dtype=torch.float64).view(-1, 1)
    spikes, membrane = if_dynamics(z, init=init)
    return spikes.view(-1).tolist(), float(membrane)


def test_if_soft_reset_trace_half_init() -> None:
    # u0 = 1/2; per step u += z, spike when u >= 1, then u -= 1 (dyadic values: exact in float)
    # t1: 0.5+0.25=0.75 -  | t2: 0.75+0.5=1.25 S -> 0.25 | t3: 0.25+0.75=1.0 S (>=) -> 0.0
    # t4: 0.0-0.5=-0.5 -   | t5: -0.5+1.5=1.0 S -> 0.0   | t6: 0.0 -  | t7: 0.25 -
    spikes, u = _trace([0.25, 0.5, 0.75, -0.5, 1.5, 0.0, 0.25], init=0.5)
    assert spikes == [0, 1, 1, 0, 1, 0, 0]
    assert u == 0.25


def test_if_soft_reset_trace_zero_init() -> None:
    # t1: 0.25 - | t2: 0.75 - | t3: 1.5 S -> 0.5 | t4: 0.0 - | t5: 1.5 S -> 0.5 | t6: 0.5 - | t7: 0.75 -
    spikes, u = _trace([0.25, 0.5, 0.75, -0.5, 1.5, 0.0, 0.25], init=0.0)
    assert spikes == [0, 0, 1, 0, 1, 0, 0]
    assert u == 0.75


def test_if_saturates_at_one_spike_per_step() -> None:
    # constant 2.5 from u0 = 0.5: u = 3.0 S 2.0 | 4.5 S 3.5 | 6.0 S 5.0 | 7.5 S 6.5 (charge piles up)
    spikes, u = _trace([2.5] * 4, init=0.5)
    assert spikes == [1, 1, 1, 1]
    assert u == 6.5


def test_if_count_is_rounded_rate_with_half_init() -> None:
    # constant input z in [0, 1]: N(T) = floor(T z + u0); u0 = 1/2 rounds, u0 = 0 truncates
    T = 16
    z = torch.arange(65, dtype=torch.float64) / 64  # dyadic: T z exact
    inputs = z.expand(T, -1).clone()
    counts_half = if_dynamics(inputs, init=0.5)[0].sum(0)
    counts_zero = if_dynamics(inputs, init=0.0)[0].sum(0)
    assert torch.equal(counts_half, torch.floor(T * z + 0.5))
    assert torch.equal(counts_zero, torch.floor(T * z))
    assert float((counts_half / T - z).abs().max()) <= 1 / (2 * T)
    assert float((counts_zero / T - z).mean()) < -1 / (4 * T)  # the truncation bias half_init removes


def test_if_neuron_module_on_folded_frames() -> None:
    T, B = 4, 2
    # sample 0: constant 0.5 -> u: 1.0 S 0 | 0.5 | 1.0 S | 0.5 ; sample 1: constant 2.5 (saturated)
    frames = torch.tensor([[0.5], [2.5]], dtype=torch.float64).repeat(T, 1)  # (T*B, 1), time-major
    neuron = IFNeuron(T, init=0.5)
    with torch.no_grad():
        neuron.recording = True
        out = neuron(frames).view(T, B)
    assert out[:, 0].tolist() == [1, 0, 1, 0]
    assert out[:, 1].tolist() == [1, 1, 1, 1]
    assert float(neuron.saturated_count) == 1  # sample 1 ends with u = 6.5 >= 1
    stats = neuron.stats("n")
    assert stats.events_per_step == [2.0 / B, 1.0 / B, 2.0 / B, 1.0 / B]
    assert stats.rate == pytest.approx(6 / B)


# ----------------------------------------------------------------------------- max-pooling


def test_running_max_pool_hand_trace() -> None:
    # window of two neurons: a = 1 0 0 1 1, b = 0 1 1 0 0
    # running sums a: 1 1 1 2 3, b: 0 1 2 2 2 -> max 1 1 2 2 3 -> increments 1 0 1 0 1
    a = [1.0, 0.0, 0.0, 1.0, 1.0]
    b = [0.0, 1.0, 1.0, 0.0, 0.0]
    x = torch.tensor([a, b]).t().reshape(5, 1, 1, 1, 2)  # (T, B, C, H, W)
    out = running_max_pool(x, dict(kernel_size=(1, 2), stride=(1, 2), padding=0, dilation=1, ceil_mode=False))
    assert out.view(-1).tolist() == [1, 0, 1, 0, 1]
    assert float(out.sum()) == max(sum(a), sum(b))  # spike-OR would give 5 spikes


def test_running_max_pool_count_is_max_of_counts() -> None:
    gen = torch.Generator().manual_seed(0)
    rates = torch.rand(1, 3, 2, 8, 8, generator=gen)
    spikes = (torch.rand(32, 3, 2, 8, 8, generator=gen) < rates).double()
    pool = dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)
    out = running_max_pool(spikes, pool)
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # still binary spikes
    assert torch.equal(out.sum(0), F.max_pool2d(spikes.sum(0), **pool))  # exact on decoded counts


@pytest.mark.parametrize(
    "k,s,p,d,ceil",
    [(2, None, 0, 1, False), (3, 2, 1, 1, True), ((2, 3), (2, 1), (1, 1), 2, False), (3, 3, 0, 1, True)],
)
def test_window_max_equals_max_pool2d(k, s, p, d, ceil) -> None:
    x = torch.randn(4, 3, 9, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(window_max(x, k, s, p, d, ceil), F.max_pool2d(x, k, s, p, d, ceil))


# ----------------------------------------------------------------------------- conversion


def _random_calib(shape: tuple[int, ...], n: int = 8) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, *shape, generator=gen)
    return DataLoader(TensorDataset(images, torch.zeros(n, dtype=torch.long)), batch_size=n)


@pytest.fixture(scope="module")
def lenet():
    lm = load_model("lenet5")
    float_gm = prepare(lm.module, lm.input_spec)
    calib = make_loader(load_split("digits", "calib", lm.input_spec, limit=512), 128)
    ev = load_split("digits", "eval", lm.input_spec)
    x = torch.stack([ev.dataset[i][0] for i in range(len(ev))])
    return lm, float_gm, calib, x


def _prefix_means(snn, x: torch.Tensor, steps: tuple[int, ...], batch: int = 108) -> dict[int, torch.Tensor]:
    """Decoder output after each of ``steps`` (<= T) from one run: the mean of the first t output
    frames (the network is causal, see test_prefix_of_a_longer_run_is_the_shorter_run)."""
    T = snn.info["T"]
    with torch.no_grad():
        frames = torch.cat([snn.body(snn.encoder(x[i:i + batch].to(snn.compute_dtype()))).double()
                            .view(T, len(x[i:i + batch]), -1) for i in range(0, len(x), batch)], dim=1)
    return {t: frames[:t].mean(0) for t in steps}


def test_prefix_of_a_longer_run_is_the_shorter_run(lenet) -> None:
    lm, float_gm, calib, x = lenet
    theta = rate.thresholds(float_gm, calib, rate.Config())
    long = rate.build(float_gm, theta, rate.Config(T=32, dtype="float64"))
    short = rate.build(float_gm, theta, rate.Config(T=8, dtype="float64"))
    with torch.no_grad():
        expected = short(x[:32])
    assert torch.allclose(_prefix_means(long, x[:32], (8,))[8], expected, rtol=0, atol=1e-9)


def test_lenet5_converges_to_the_ann(lenet) -> None:
    lm, float_gm, calib, x = lenet
    assert len(x) == 540  # the whole digits eval split
    theta = rate.thresholds(float_gm, calib, rate.Config(percentile=99.99))
    with torch.no_grad():
        ref = float_gm(x).double()
    agreement, error = {}, {}
    for half_init in (True, False):
        snn = rate.build(float_gm, theta, rate.Config(T=256, percentile=99.99, half_init=half_init))
        for T, out in _prefix_means(snn, x, (16, 256)).items():
            agreement[half_init, T] = float((out.argmax(1) == ref.argmax(1)).double().mean())
            error[half_init, T] = float((out - ref).pow(2).mean().sqrt())
    # measured: agreement 1.0 / 1.0 (half_init), 0.9926 / 1.0 (u0 = 0); logit RMS error 0.47 / 0.04
    # (half_init), 2.08 / 0.13 (u0 = 0); the ANN's logits have RMS 8.5
    assert agreement[True, 256] >= 0.98
    assert agreement[True, 16] <= agreement[True, 256]
    assert agreement[False, 16] < agreement[False, 256]
    assert error[True, 256] < 0.25 * error[True, 16]
    assert error[False, 256] < 0.25 * error[False, 16]
    assert error[True, 16] < 0.5 * error[False, 16]  # theta/2 removes the truncation bias


def test_lenet5_info_state_ops_and_stats(lenet) -> None:
    lm, float_gm, calib, x = lenet
    coding = get_coding("rate")
    inputs = ConversionInputs(float_gm, None, lm.input_spec, calib)
    snn = coding.convert(inputs, coding.config(T=8, percentile="max"))
    with torch.no_grad(), snn.recording():
        logits = snn(x[:16])
    assert logits.shape == (16, 10)
    info = snn.info
    assert (info["coding"], info["T"], info["frames"], info["latency"]) == ("rate", 8, 8, 8)
    assert info["latency_terms"] == "T = 8"
    assert info["percentile"] == "max" and info["half_init"] is True
    assert info["neuron_layers"] == ["relu1", "pool1_neuron", "relu2", "pool2_neuron", "relu3", "relu4"]
    pools = [m for m in snn.body.modules() if isinstance(m, RateMaxPool)]
    assert len(pools) == 2
    assert not any(isinstance(m, Gain) for m in snn.body.modules())  # every threshold folded into weights
    neurons = snn.neurons()
    ops = coding.state_ops(snn)
    assert set(ops) == set(neurons)
    # relu1: 16 channels of 8x8 (3x3 conv on the padded 8x8 input): 1024 neurons x 8 steps
    assert ops["relu1"] == 16 * 8 * 8 * 8
    assert ops["pool1_neuron"] == 16 * 4 * 4 * 8
    for stats in snn.spike_stats():
        assert stats.samples == 16
        assert 0 < stats.rate <= 8  # at most one spike per step
    clipped = coding.metrics(snn)
    assert set(clipped["clipped_share_per_layer"]) == {"relu1", "relu2", "relu3", "relu4"}
    assert 0 <= clipped["clipped_share"] < 0.05  # thresholds at the max: hardly anything clipped
    other = coding.convert(inputs, coding.config(T=4, percentile="max"))  # e.g. a sweep over T
    assert len(inputs.statistics) == 1  # the calibration pass was reused
    assert other.info["thresholds"] == snn.info["thresholds"]


def test_artifact_round_trip_identical_logits(lenet, tmp_path) -> None:
    lm, float_gm, calib, x = lenet
    inputs = ConversionInputs(float_gm, None, lm.input_spec, calib)
    snn = rate.convert(inputs, rate.Config(T=8, per_channel=True))
    path = save_artifact(Artifact("snn", {}, {"snn": snn}), tmp_path / "rate.snnc")
    loaded = load_artifact(path).models["snn"]
    assert loaded.info == snn.info
    with torch.no_grad():
        assert torch.equal(loaded(x[:32]), snn(x[:32]))


def test_resnet20_round_trip_and_per_channel(tmp_path) -> None:
    lm = load_model("resnet20", "random")
    float_gm = prepare(lm.module, lm.input_spec)
    snn = rate.convert(ConversionInputs(float_gm, None, lm.input_spec, _random_calib((3, 32, 32))),
                       rate.Config(T=4, per_channel=True))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    path = save_artifact(Artifact("snn", {}, {"snn": snn}), tmp_path / "r20.snnc")
    loaded = load_artifact(path).models["snn"]
    with torch.no_grad():
        out = snn(x)
        assert torch.equal(loaded(x), out)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert snn.info["latency"] == 4 and len(snn.info["neuron_layers"]) == 19


@pytest.mark.parametrize(
    "name,kwargs,pools",
    [  # resnet20: see test_resnet20_round_trip_and_per_channel
        ("resnet18", dict(num_classes=10, input_size=(32, 32)), 1),
        pytest.param("vgg16", dict(num_classes=10, input_size=(32, 32)), 5, marks=pytest.mark.slow),
    ],
)
def test_conversion_runs_on_zoo_models(name: str, kwargs: dict, pools: int) -> None:
    torch.manual_seed(0)
    lm = load_model(name, "random", **kwargs)
    float_gm = prepare(lm.module, lm.input_spec)
    snn = rate.convert(ConversionInputs(float_gm, None, lm.input_spec, _random_calib((3, 32, 32), 4)),
                       rate.Config(T=4))
    with torch.no_grad():
        out = snn(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    assert sum(isinstance(m, RateMaxPool) for m in snn.body.modules()) == pools
    assert snn.info["latency"] == 4


class _FunctionalPoolNet(nn.Module):
    """conv -> relu -> F.max_pool2d(3, 2, 1, ceil_mode) -> identity readout of every pooled value."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(18, 18)
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(4)) - 0.3)
            self.fc.weight.copy_(torch.eye(18))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(torch.relu(self.conv(x)), 3, 2, 1, ceil_mode=True)
        return self.fc(torch.flatten(y, 1))


def test_first_layer_and_max_pool_are_exact_up_to_rounding() -> None:
    # constant input: the first IF layer's count is round(T a / theta), so every decoded value is
    # within theta / (2T) of the ANN's; the max-pool of counts keeps that bound for the pooled values
    spec = InputSpec(channels=1, size=(5, 5))
    float_gm = prepare(_FunctionalPoolNet(), spec)
    assert any(n.op == "call_function" and n.target is F.max_pool2d for n in float_gm.graph.nodes)
    x = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(5))
    calib = DataLoader(TensorDataset(x, torch.zeros(3, dtype=torch.long)), batch_size=3)
    for T in (8, 64):
        snn = rate.convert(ConversionInputs(float_gm, None, spec, calib),
                           rate.Config(T=T, percentile="max", dtype="float64"))
        assert sum(isinstance(m, RateMaxPool) for m in snn.body.modules()) == 1
        (theta,) = snn.info["thresholds"].values()
        with torch.no_grad():
            ann, out = copy.deepcopy(float_gm).double()(x.double()), snn(x)
        assert float((out - ann).abs().max()) <= theta / (2 * T) + 1e-9
        assert float((out - ann).abs().max()) > 0  # not trivially exact: rounding is visible


# ----------------------------------------------------------------------------- bounded ReLU


class _Relu6Net(nn.Module):
    """1x1 conv (x -> 10 x) -> ReLU6 -> identity readout of every neuron."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.act = nn.ReLU6()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(16, 16)
        with torch.no_grad():
            self.conv.weight.fill_(10.0)
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.eye(16))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.act(self.conv(x))))


def test_bounded_relu_threshold_and_clip() -> None:
    spec = InputSpec(channels=1, size=(4, 4))
    float_gm = prepare(_Relu6Net(), spec)
    assert any(isinstance(m, BoundedReLU) for m in float_gm.modules())
    x = (torch.arange(16, dtype=torch.float32) / 15).view(1, 1, 4, 4)  # pre-activations 0 .. 10
    calib = DataLoader(TensorDataset(x, torch.zeros(1, dtype=torch.long)), batch_size=1)
    T = 32
    cfg = rate.Config(T=T, percentile="max", dtype="float64")
    snn = rate.convert(ConversionInputs(float_gm, None, spec, calib), cfg)
    assert list(snn.info["thresholds"].values()) == [6.0]  # max of the clipped output
    with torch.no_grad():
        ann, out = copy.deepcopy(float_gm).double()(x.double()), snn(x)
    # constant input into the first neuron layer: count = round(T z), z = min(10 x, 6) / 6
    assert float((out - ann).abs().max()) <= 6.0 / (2 * T) + 1e-9
    assert torch.equal(out[ann >= 6.0], torch.full_like(out[ann >= 6.0], 6.0))  # clip by saturation


def test_threshold_capped_at_bounded_relu_upper() -> None:
    float_gm = prepare(_Relu6Net(), InputSpec(channels=1, size=(4, 4)))
    (act,) = [n.name for n in float_gm.graph.nodes
              if n.op == "call_module" and isinstance(float_gm.get_submodule(n.target), BoundedReLU)]
    theta = rate.thresholds_from(float_gm, {act: {99.9: torch.tensor([8.0])}}, rate.Config(percentile=99.9))
    assert theta[act].tolist() == [6.0]
    theta = rate.thresholds_from(float_gm, {act: {99.9: torch.tensor([0.0])}}, rate.Config(percentile=99.9))
    assert theta[act].tolist() == [1.0]  # a layer that never fired gets threshold 1


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "options",
    [dict(T=0), dict(T=2.5), dict(T=True), dict(percentile=0), dict(percentile=101), dict(percentile="p99"),
     dict(percentile=True), dict(per_channel="yes"), dict(half_init=1), dict(dtype="float16")],
)
def test_invalid_config_is_one_line_error(options: dict) -> None:
    with pytest.raises(SnnConvertError) as err:
        rate.Config(**options).validate()
    (key,) = options
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"{key} ")  # names the field (the API's name for the option)
    assert isinstance(err.value, ConfigError) and err.value.field == key


def test_percentile_forms() -> None:
    assert rate.Config(percentile="max").percentile_value() == 100.0
    assert rate.Config(percentile="99.9").percentile_value() == 99.9
    assert rate.Config(percentile=99.99).percentile_value() == 99.99


def test_convert_without_calibration_is_an_error() -> None:
    lm = load_model("lenet5")
    float_gm = prepare(lm.module, lm.input_spec)
    with pytest.raises(SnnConvertError, match="calibration data"):
        rate.convert(ConversionInputs(float_gm, None, lm.input_spec, None), rate.Config())
