"""Tests of the multi-bit spiking coding (adaptive-bit-allocation paper, eqs 7-9 and 13-16)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from snnconvert.artifact import Artifact, load_artifact, new_manifest, save_artifact
from snnconvert.codings import ConversionInputs, get_coding
from snnconvert.data import InputSpec, load_split, make_loader
from snnconvert.errors import SnnConvertError
from snnconvert.graph import prepare
from snnconvert.ingest import load_model
from snnconvert.methods.multibit.coding import MultiBitConfig
from snnconvert.methods.multibit.neuron import (
    MultiBitNeuron,
    TemporalSqueeze,
    multibit_dynamics,
    round_spikes,
    spike_range,
)
from snnconvert.quantize import QuantizeConfig, quantize_graph
from snnconvert.simulate.synapse import SynapseConv2d

CODING = get_coding("multibit")


def _trace(currents: list[float], *, bits: int, signed: bool = False, steps_out: int | None = None,
           tau: float = 1.0, squeeze: bool = False) -> tuple[list[float], float]:
    """Run one neuron (threshold 1) on explicit per-step currents; returns (spikes, last v)."""
    x = torch.tensor(currents, dtype=torch.float64).view(-1, 1)
    qmin, qmax = spike_range(bits, signed)
    spikes, v = multibit_dynamics(x, 1.0, steps_out=steps_out or len(currents), qmin=qmin, qmax=qmax,
                                  tau=tau, squeeze=squeeze)
    return spikes.view(-1).tolist(), float(v)


# --------------------------------------------------------------------------- rounding and clipping


def test_spike_ranges_eq15_eq16() -> None:
    assert spike_range(4, False) == (0, 15)
    assert spike_range(1, False) == (0, 1)
    assert spike_range(3, True) == (-3, 3)
    assert spike_range(2, True) == (-1, 1)
    assert spike_range(1, True) == (-1, 1)  # the paper's special case: ternary


def test_unsigned_rounding_is_half_up_with_clip() -> None:
    x = torch.tensor([-0.7, -0.5, 0.0, 0.49, 0.5, 1.5, 2.5, 14.6, 15.4, 20.0], dtype=torch.float64)
    # 0.5 -> 1 and 2.5 -> 3 (the 0.5 shift of eq 15, not round-half-even); clip at 2^4 - 1
    assert round_spikes(x, 0, 15).tolist() == [0, 0, 0, 0, 1, 2, 3, 15, 15, 15]


def test_signed_rounding_is_half_away_from_zero() -> None:
    x = torch.tensor([-4.0, -2.5, -1.0, -0.5, -0.49, 0.0, 0.5, 2.5, 3.7], dtype=torch.float64)
    s = round_spikes(x, -3, 3)
    # -1.0 -> -1: the shift -0.5 with truncation (a literal floor would give floor(-1.5) = -2)
    assert s.tolist() == [-3, -3, -1, -1, 0, 0, 1, 3, 3]
    assert not torch.signbit(s[4])  # no negative zero
    ternary = round_spikes(torch.tensor([-3.0, -0.6, 0.2, 0.7, 5.0]), -1, 1)
    assert ternary.tolist() == [-1, -1, 0, 1, 1]


# --------------------------------------------------------------------------- dynamics (eq 14)


def test_trace_constant_current() -> None:
    # B=2 (q_max 3), I = 1.25:  v1 = 1.25 -> 1;  v2 = 1.25 + 1.25 - 1 = 1.5 -> 2 (tie up);
    # v3 = 1.5 + 1.25 - 2 = 0.75 -> 1;  v4 = 0.75 + 1.25 - 1 = 1.0 -> 1.  Sum 5 = 4 * 1.25.
    spikes, v = _trace([1.25] * 4, bits=2)
    assert spikes == [1, 2, 1, 1]
    assert v == 1.0


def test_trace_varying_current_with_negative_membrane() -> None:
    # B=3: v1 = 0.75 -> 1;  v2 = 0.75 - 1 - 1 = -1.25 -> 0;  v3 = -1.25 + 2.5 = 1.25 -> 1;
    # v4 = 1.25 + 0.25 - 1 = 0.5 -> 1
    spikes, v = _trace([0.75, -1.0, 2.5, 0.25], bits=3)
    assert spikes == [1, 0, 1, 1]
    assert v == 0.5


def test_trace_clipping_keeps_the_charge() -> None:
    # B=2: v1 = 5 -> 3 (clip);  v2 = 5 - 3 = 2 -> 2;  v3 = 2 - 2 = 0 -> 0;  v4 = 0
    spikes, v = _trace([5.0, 0.0, 0.0, 0.0], bits=2)
    assert spikes == [3, 2, 0, 0]
    assert v == 0.0
    # saturation: v1 = 4 -> 3;  v2 = 4 + 4 - 3 = 5 -> 3;  v3 = 5 + 4 - 3 = 6 -> 3
    spikes, v = _trace([4.0, 4.0, 4.0], bits=2)
    assert spikes == [3, 3, 3]
    assert v == 6.0


def test_trace_signed_neuron_eq16() -> None:
    # B=3 signed (q in -3..3): v1 = -1.5 -> -2;  v2 = -1.5 + 0.25 + 2 = 0.75 -> 1;
    # v3 = 0.75 - 0.75 - 1 = -1.0 -> -1;  v4 = -1 + 4 + 1 = 4.0 -> 4 -> clip 3
    spikes, v = _trace([-1.5, 0.25, -0.75, 4.0], bits=3, signed=True)
    assert spikes == [-2, 1, -1, 3]
    assert v == 4.0


def test_trace_leak_tau2_literal_eq14() -> None:
    # v^t = v^{t-1}/2 + I - S^{t-1}:  v1 = 1 -> 1;  v2 = 0.5 + 1 - 1 = 0.5 -> 1;
    # v3 = 0.25 + 1 - 1 = 0.25 -> 0;  v4 = 0.125 + 1 - 0 = 1.125 -> 1
    spikes, v = _trace([1.0] * 4, bits=2, tau=2.0)
    assert spikes == [1, 1, 0, 1]
    assert v == 1.125


def test_squeeze_uses_the_mean_current() -> None:
    # T_in = 2 -> T_out = 3, mean 1.5:  v1 = 1.5 -> 2;  v2 = 1.5 + 1.5 - 2 = 1 -> 1;
    # v3 = 1 + 1.5 - 1 = 1.5 -> 2
    spikes, _ = _trace([1.0, 2.0], bits=2, steps_out=3)
    assert spikes == [2, 1, 2]
    # squeeze on equal T: [0, 2] is heard as [1, 1];  without it v1 = 0 -> 0, v2 = 2 -> 2
    assert _trace([0.0, 2.0], bits=2, squeeze=True)[0] == [1, 1]
    assert _trace([0.0, 2.0], bits=2)[0] == [0, 2]


def test_neuron_module_threshold_is_amplitude_and_stats_count_integers() -> None:
    neuron = MultiBitNeuron(2, 2, bits=3, channels=2).double()
    neuron.threshold.data.copy_(torch.tensor([0.5, 2.0]))
    frames = torch.tensor([[0.8, 3.0], [0.8, 3.0]], dtype=torch.float64)  # T=2 frames of B=1
    neuron.recording = True
    out = neuron(frames)
    # channel 0 in units of 0.5: 1.6 -> 2, then 1.6 + 1.6 - 2 = 1.2 -> 1
    # channel 1 in units of 2.0: 1.5 -> 2, then 1.5 + 1.5 - 2 = 1.0 -> 1
    assert out.tolist() == [[1.0, 4.0], [0.5, 2.0]]
    stats = neuron.stats("n")
    assert stats.events_per_step == [2.0, 2.0]
    assert stats.magnitude_per_step == [4.0, 2.0]  # integer spike magnitudes


def test_straight_through_gradient_reaches_the_threshold() -> None:
    neuron = MultiBitNeuron(1, 2, bits=3).double()
    neuron.threshold.requires_grad_(True)
    x = torch.tensor([[0.3, 0.9, 2.2]], dtype=torch.float64, requires_grad=True)
    out = neuron(x)
    with torch.no_grad():
        reference = neuron(x.detach())
    assert torch.equal(out.detach(), reference)  # the autograd path computes the same spikes
    out.sum().backward()
    assert neuron.threshold.grad is not None and torch.isfinite(neuron.threshold.grad).all()
    assert x.grad is not None and x.grad.abs().sum() > 0


# --------------------------------------------------------------------------- temporal squeezing


def test_temporal_squeeze_is_the_mean_repeated() -> None:
    frames = torch.arange(24, dtype=torch.float64).view(8, 3)  # T=4 frames of B=2 samples
    out = TemporalSqueeze(4, 3)(frames)
    mean = frames.view(4, 2, 3).mean(dim=0)
    assert out.shape == (6, 3)
    for k in range(3):
        assert torch.equal(out[2 * k:2 * k + 2], mean)


def test_squeeze_commutes_with_the_synapse() -> None:
    """Eq 13: squeezing the spikes before the synapse == squeezing the current after it."""
    g = torch.Generator().manual_seed(0)
    conv = SynapseConv2d(2, 3, 3, padding=1, steps=4).double()
    conv.weight.data = torch.randn(conv.weight.shape, generator=g, dtype=torch.float64)
    conv.bias.data = torch.randn(3, generator=g, dtype=torch.float64)
    spikes = torch.randint(0, 8, (4 * 2, 2, 5, 5), generator=g).double()  # T_in = 4, B = 2
    neuron = MultiBitNeuron(4, 2, bits=4).double()  # squeezes 4 -> 2
    after = neuron(conv(spikes))
    conv1 = SynapseConv2d(2, 3, 3, padding=1, steps=2).double()
    conv1.load_state_dict({**conv.state_dict(), "frame_bias_gain": torch.ones(2, dtype=torch.float64)})
    squeezed_current = conv1(TemporalSqueeze(4, 2)(spikes))
    before = MultiBitNeuron(2, 2, bits=4).double()(squeezed_current)
    torch.testing.assert_close(conv(spikes).view(4, 2, 3, 5, 5).mean(0),
                               squeezed_current.view(2, 2, 3, 5, 5)[0], rtol=0, atol=1e-12)
    assert torch.equal(after, before)


# --------------------------------------------------------------------------- figures on a tiny network


def _tiny() -> tuple[torch.fx.GraphModule, InputSpec, torch.Tensor]:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[0].fill_(1.0)
        model[0].weight[1].fill_(-1.0)
        model[0].bias.zero_()
        model[3].weight.fill_(1.0)
        model[3].bias.zero_()
    spec = InputSpec(channels=1, size=(4, 4))
    image = torch.zeros(1, 1, 4, 4)
    image[:, :, :2] = 1.0  # 8 of 16 pixels on
    return prepare(model, spec), spec, image


def _tiny_snn(**options):
    gm, spec, image = _tiny()
    snn = CODING.convert(ConversionInputs(gm, None, spec, [(image, torch.zeros(1, dtype=torch.long))]),
                         MultiBitConfig(bits_spike=4, **options))
    snn.encoder.threshold.data.fill_(0.125)  # pixel 1.0 -> 8 per step
    hidden = next(m for m in snn.body.modules() if isinstance(m, MultiBitNeuron))
    hidden.threshold.data.fill_(1.0)
    with torch.no_grad(), snn.recording():
        logits = snn(image)
    return snn, logits


def test_bit_budget_s_ace_ns_ace_by_hand() -> None:
    snn, logits = _tiny_snn(T=2)
    # conv windows sum 6, 6, 3, 3 ones (channel 0); channel 1 is negative -> silent. Linear sums 18.
    assert logits.tolist() == [[18.0, 18.0, 18.0]]
    m = CODING.metrics(snn)
    # MACs: conv 2x2x2 outputs x 9 = 72, linear 3 x 8 = 24; float weights count 16 bits (paper 002): B_w = 16
    assert m["MACs"] == 96 and m["float_bits"] == 16
    assert m["bit_budget"] == 2 * 16 * 4 == 128  # eq 7: T x B_w x B_s
    assert m["S-ACE"] == 72 * 2 * 16 * 4 + 24 * 2 * 16 * 4 == 12288  # eq 8: 9216 + 3072
    # firing rates: encoder 8 of 16 pixels each step, hidden 4 of 8 neurons each step -> 0.5
    assert m["NS-ACE"] == pytest.approx(0.5 * 12288, rel=1e-12)  # eq 9: 6144
    assert m["firing_rate"] == pytest.approx(0.5, rel=1e-12)
    assert m["NS-ACE_approx"] == pytest.approx(0.5 * 12288, rel=1e-12)
    # conv 2x1x3x3 = 18 weights + 2 biases, linear 3x8 = 24 weights + 3 biases: 47 values x 16 bits = 94 bytes
    assert m["model_size_MB"] == pytest.approx(94e-6, rel=1e-12)
    # the width is an option: at 32 bits every figure above doubles (B_w 16 -> 32), the size too (188 bytes)
    m32 = CODING.metrics(snn, float_bits=32)
    assert m32["bit_budget"] == 2 * 32 * 4 and m32["S-ACE"] == 24576
    assert m32["model_size_MB"] == pytest.approx(188e-6, rel=1e-12)
    converted32, _ = _tiny_snn(T=2, float_bits=32)
    assert CODING.metrics(converted32)["S-ACE"] == 24576  # the conversion's float_bits is the default
    assert CODING.state_ops(snn) == {"encoder": 16 * 2, _hidden_name(snn): 8 * 2}
    assert snn.info["latency"] == 2 and snn.info["latency_terms"] == "T = 2"
    assert snn.info["T"] == 2 and snn.info["bits_spike"] == 4 and snn.info["bits_weight"] == 32


def _hidden_name(snn) -> str:
    return next(name for name in snn.neurons() if name != "encoder")


def test_figures_with_per_layer_T_and_squeezing() -> None:
    snn, logits = _tiny_snn(T=[2, 4])  # encoder 2 steps, hidden layer 4 (squeezes 2 -> 4)
    assert logits.tolist() == [[18.0, 18.0, 18.0]]
    m = CODING.metrics(snn)
    # B_w = 16 (float weights), B_s = 4: 72 x 2 x 64 + 24 x 4 x 64 = 9216 + 6144
    assert m["S-ACE"] == 72 * 2 * 16 * 4 + 24 * 4 * 16 * 4 == 15360  # conv sees 2 frames, linear 4
    assert m["T_avg"] == pytest.approx((16 * 2 + 8 * 4) / 24)  # 16 input neurons at T 2, 8 hidden at T 4
    assert m["bit_budget"] == pytest.approx((16 * 2 + 8 * 4) / 24 * 16 * 4)
    assert CODING.state_ops(snn)[_hidden_name(snn)] == 8 * (4 + 2)
    assert snn.info["T"] == [2, 4]
    assert snn.info["latency"] == 1 + 4  # waits for the 2nd input frame, then 4 steps
    always, _ = _tiny_snn(T=2, squeeze="always")
    assert CODING.metrics(always)["S-ACE"] == 96 * 1 * 16 * 4 == 6144  # post-squeezing pipeline (fig A.1b)


# --------------------------------------------------------------------------- conversions


def _random_inputs(lm, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(lm.input_spec.example_shape(n), generator=g)


def _check_runs(lm, gm, options: dict) -> None:
    calib = [(_random_inputs(lm, 4), torch.zeros(4, dtype=torch.long))]
    snn = CODING.convert(ConversionInputs(gm, None, lm.input_spec, calib), MultiBitConfig(**options))
    with torch.no_grad(), snn.recording():
        out = snn(_random_inputs(lm, 2, seed=1))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    m = CODING.metrics(snn)
    assert m["S-ACE"] > 0 and 0 < m["firing_rate"] < 1
    if isinstance(options["T"], list):
        squeezes = [mod for mod in snn.body.modules() if isinstance(mod, TemporalSqueeze)]
        assert squeezes  # residual adds joining branches of different T
        assert snn.info["latency"] > max(options["T"])


@pytest.fixture(scope="module")
def resnet20():
    torch.manual_seed(0)
    lm = load_model("resnet20", "random")
    return lm, prepare(lm.module, lm.input_spec)


@pytest.mark.parametrize("options", [
    {"T": 2, "bits_spike": 4},
    {"T": [1, 2, 4] * 6 + [2, 2], "bits_spike": 3, "signed_first": True},  # encoder + 19 ReLUs
])
def test_resnet20_conversion_runs(resnet20, options: dict) -> None:
    _check_runs(*resnet20, options)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "vgg16"])
def test_imagenet_architectures_convert_at_32px(name: str) -> None:
    torch.manual_seed(0)
    lm = load_model(name, "random", num_classes=10, input_size=(32, 32))
    _check_runs(lm, prepare(lm.module, lm.input_spec), {"T": 2, "bits_spike": 4})


def _lenet_setup(bits: int = 4):
    lm = load_model("lenet5")
    gm = prepare(lm.module, lm.input_spec)
    calib = make_loader(load_split("digits", "calib", lm.input_spec, limit=256), 128)
    shape = lm.input_spec.example_shape(2)
    q = quantize_graph(gm, calib, QuantizeConfig(bits=bits), example_shape=shape).model
    images, _ = next(iter(make_loader(load_split("digits", "eval", lm.input_spec, limit=200), 200)))
    return lm, gm, q, calib, images


@pytest.fixture(scope="module")
def lenet():
    return _lenet_setup()


def test_lenet5_conversion_keeps_accuracy(lenet) -> None:
    lm, gm, q, calib, images = lenet
    snn = CODING.convert(ConversionInputs(gm, q, lm.input_spec, calib), MultiBitConfig(T=2, bits_spike=4))
    with torch.no_grad():
        out = snn(images)
        reference = gm(images).argmax(1)
    assert torch.isfinite(out).all()
    assert (out.argmax(1) == reference).float().mean() >= 0.95
    assert snn.info["weights"] == "quantized" and snn.info["bits_weight"] == 4


@pytest.mark.parametrize("bits,per_channel", [(4, False), (3, True)])
def test_t1_reproduces_the_quantized_ann(lenet, bits: int, per_channel: bool) -> None:
    """T = 1, B_s = the activation bits, thresholds = the quantizer scales: the quantized ANN."""
    lm, gm, _q, calib, images = lenet
    qcfg = QuantizeConfig(bits=bits, per_channel=per_channel)
    q = quantize_graph(gm, calib, qcfg, example_shape=lm.input_spec.example_shape(2)).model
    snn = CODING.convert(ConversionInputs(gm, q, lm.input_spec, None), MultiBitConfig(T=1, bits_spike=bits))
    assert snn.info["thresholds"] == "quantized"  # no calibration data needed
    assert [n.channels for n in snn.neurons().values()] == ([1, 16, 32, 120, 84] if per_channel else [1] * 5)
    with torch.no_grad():
        out = snn(images)
        expected = q(images)
    assert torch.equal(out.argmax(1), expected.argmax(1))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


def test_signed_first_layer_centres_exactly(lenet) -> None:
    """With 16-bit spikes the encoders are nearly lossless, so signed (centred, bias-corrected) and
    unsigned input layers must both give the float logits."""
    lm, gm, _q, calib, images = lenet
    x = images[:50]
    with torch.no_grad():
        reference = gm(x)
    for signed in (False, True):
        cfg = MultiBitConfig(T=1, bits_spike=16, percentile=100.0, signed_first=signed, dtype="float64")
        snn = CODING.convert(ConversionInputs(gm, None, lm.input_spec, calib), cfg)
        with torch.no_grad():
            out = snn(x)
            spikes = snn.encoder.dynamics(x.double().unsqueeze(0))
        torch.testing.assert_close(out.float(), reference, rtol=0, atol=2e-3)
        assert bool((spikes < 0).any()) == signed
    assert snn.info["input_center"] == pytest.approx([0.3056])


def test_artifact_round_trip_identical_logits(resnet20, tmp_path) -> None:
    lm, gm = resnet20
    calib = [(_random_inputs(lm, 4), torch.zeros(4, dtype=torch.long))]
    cfg = MultiBitConfig(T=[2, 1] * 9 + [2, 2], bits_spike=3, signed_first=True)
    snn = CODING.convert(ConversionInputs(gm, None, lm.input_spec, calib), cfg)
    x = _random_inputs(lm, 2, seed=3)
    with torch.no_grad():
        before = snn(x)
    path = save_artifact(Artifact("snn", new_manifest("snn"), {"snn": snn}), tmp_path / "mb.snnc")
    loaded = load_artifact(path).models["snn"]
    with torch.no_grad(), loaded.recording():
        after = loaded(x)
    assert torch.equal(before, after)
    assert loaded.info == snn.info
    assert CODING.metrics(loaded)["S-ACE"] == CODING.metrics(snn)["S-ACE"]


def test_config_round_trips_through_its_dict() -> None:
    cfg = MultiBitConfig(T="2,4,4", bits_spike=[4, 2])
    again = MultiBitConfig(**dataclasses.asdict(cfg))
    assert again.steps() == [2, 4, 4] and again.spike_bits() == [4, 2]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("options", [
    {"T": 0}, {"T": [2, 0]}, {"T": "two"}, {"T": 1.5}, {"bits_spike": 0}, {"bits_spike": 17},
    {"percentile": 0}, {"percentile": 101}, {"thresholds": "max"}, {"weights": "int8"},
    {"squeeze": "never"}, {"dtype": "float16"}, {"tau": 0.5}, {"per_channel": "yes"},
    {"signed_first": True, "encode_input": False},
])
def test_invalid_options_raise_one_line_errors(options: dict) -> None:
    with pytest.raises(SnnConvertError) as err:
        MultiBitConfig(**options).validate()
    assert "\n" not in str(err.value)


def test_conversion_errors_are_one_line(lenet) -> None:
    lm, gm, q, calib, _images = lenet
    cases = [
        (ConversionInputs(gm, q, lm.input_spec, calib), MultiBitConfig(T=[1, 2])),  # 5 neuron layers
        (ConversionInputs(gm, None, lm.input_spec, calib), MultiBitConfig(thresholds="quantized")),
        (ConversionInputs(gm, q, lm.input_spec, calib), MultiBitConfig(bits_spike=2, thresholds="quantized")),
        (ConversionInputs(gm, None, lm.input_spec, None), MultiBitConfig()),
        (ConversionInputs(gm, None, lm.input_spec, calib), MultiBitConfig(weights="quantized")),
    ]
    for inputs, cfg in cases:
        with pytest.raises(SnnConvertError) as err:
            CODING.convert(inputs, cfg)
        assert "\n" not in str(err.value)


def test_sweep_rows_carry_the_bit_figures() -> None:
    """`evaluate --sweep` rows of a multi-bit SNN carry eqs 7-9 and the model size of each setting."""
    from snnconvert.evaluate import EvaluateConfig, evaluate
    from snnconvert.pipeline import quantize, to_snn

    q = quantize("lenet5", data="digits", config=QuantizeConfig(bits=8), eval_limit=0)
    snn = to_snn(q, "multibit", T=1, bits_spike=4)
    report = evaluate(q, snn, EvaluateConfig(data="digits", limit=20, reports=("accuracy",),
                                             sweep={"bits_spike": [2, 4]}))
    synapses = snn.info["synapses"]
    assert {s["bits_weight"] for s in synapses} == {8}  # every weight quantized to 8 bits
    macs = sum(s["macs"] for s in synapses)
    weights, biases = sum(s["weights"] for s in synapses), sum(s["biases"] for s in synapses)
    for row, bits in zip(report.sweep, (2, 4), strict=True):
        m = row.coding_metrics
        assert row.setting == {"bits_spike": bits} and m["float_bits"] == 16
        assert m["bit_budget"] == 1 * 8 * bits  # eq 7: T x B_w x B_s
        assert m["S-ACE"] == macs * 1 * 8 * bits  # eq 8: every synapse sees B_s-bit spikes, one step
        assert 0 < m["NS-ACE"] < m["S-ACE"]  # eq 9: scaled by the recorded firing rates
        assert m["model_size_MB"] == pytest.approx((8 * weights + 16 * biases) / 8 / 1e6, rel=1e-12)
        assert "layers" not in m


def test_to_snn_calibrates_percentile_thresholds_and_leaves_exact_ones_alone() -> None:
    """B_s=2 spikes below 8-bit activations: the layers are calibrated against the float ANN, the
    held-out agreement rises, and the solved synapses count as float weights. B_s=8 with the quantized
    ANN's scales is exact: no calibration, with the reason, and the SNN equals the one converted
    without it."""
    from snnconvert.calibrate import summary_rows as calibration_rows
    from snnconvert.pipeline import quantize, to_snn

    q = quantize("lenet5", data="digits", config=QuantizeConfig(bits=8), eval_limit=0)
    narrow = to_snn(q, "multibit", T=1, bits_spike=2, calibrate="layerwise", calibrate_images=512)
    cal = narrow.info["calibration"]
    assert narrow.info["thresholds"] == "percentile" and cal["mode"] == "layerwise"
    assert cal["calibrated"] == cal["layers"] == len(narrow.info["neuron_layers"]) - 1  # all but the input encoder
    assert cal["fit_images"] == cal["holdout_images"] == 512
    # measured: held-out agreement 95.5 % -> 97.1 % (8 images of 512: no kernel's rounding moves that)
    assert not cal["reverted"] and cal["after"]["agreement"] > cal["before"]["agreement"] and cal["refitted"]
    # weights the calibration solved are off the 8-bit grid: the bit figures count them as floats
    bits = {s["name"]: s["bits_weight"] for s in narrow.info["synapses"]}
    assert all(bits[name] != 8 for name in cal["refitted"]) and all(
        b == 8 for name, b in bits.items() if name not in cal["refitted"])
    assert (f"({len(cal['refitted'])} synapses refitted" in narrow.info["weights"]) == bool(cal["refitted"])
    exact = to_snn(q, "multibit", T=1, bits_spike=8, calibrate="layerwise")
    plain = to_snn(q, "multibit", T=1, bits_spike=8)
    assert exact.info["thresholds"] == "quantized" and not exact.info["calibration"]["before"]
    assert calibration_rows(exact.info) == [("calibration", "layerwise: not run (exact: the thresholds are the "
                                                            "quantized ANN's scales)")]
    for (name, a), (_, b) in zip(exact.state_dict().items(), plain.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
