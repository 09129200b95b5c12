"""SWS coding: TSA neuron traces, exact conversion, the folded engine vs a step-by-step
reference, latency, options, --Ts auto."""

from __future__ import annotations

import pytest
import torch
import torchvision
from helpers import quantize_random, randomize_batchnorm

from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.ingest import load_model
from snnconvert.methods.sws.coding import SWSConfig, convert_sws
from snnconvert.methods.sws.neuron import SWSEncoder, TSANeuron, held_at_clamp, tsa_dynamics
from snnconvert.methods.sws.reference import reference_run
from snnconvert.models import cifar_resnet
from snnconvert.neurons.base import unfold_time

CIFAR = InputSpec(3, (32, 32), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SMALL = InputSpec(3, (16, 16), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # deep nets: fewer pixels


def _run(z: list[float], *, Ts: int, qmax: float = 7.0) -> tuple[list[float], float, float]:
    frames = torch.tensor(z, dtype=torch.float64).view(-1, 1)
    spikes, membrane, emitted = tsa_dynamics(frames, Ts=Ts, beta=2.0, qmax=qmax)
    return spikes.view(-1).tolist(), float(membrane), float(emitted)


def test_tsa_trace_with_silent_period() -> None:
    # Tc=3, Ts=1, inputs 1, 0.25, 0.5: V = 4 + 0.5 + 0.5 = 5. Threshold 1, reset 2.
    # t=1 u=1 (silent); t=2 u=2.25 -> +1, u=0.25; t=3 u=1.0 -> +1, u=-1; t=4 u=-2 -> -1, u=0.
    spikes, membrane, emitted = _run([1.0, 0.25, 0.5], Ts=1)
    assert spikes == [1.0, 1.0, -1.0] and membrane == 0.0 and emitted == 5.0


def test_tsa_rounds_half_up() -> None:
    # Tc=2, Ts=2, inputs 0.5, 0.5: V = 1.5. t=3: u=3 >= 2 -> +1 (weight 2), u=-1; t=4: u=-2, not < -2.
    spikes, membrane, emitted = _run([0.5, 0.5], Ts=2)
    assert spikes == [1.0, 0.0] and emitted == 2.0 and membrane / 4 == -0.5


def test_tsa_clamp_realises_relu_and_top_of_range() -> None:
    # V = -2 + 0.25 = -1.75: every negative spike would take the output below 0 and is not fired.
    spikes, membrane, emitted = _run([-1.0, 0.25], Ts=0)
    assert spikes == [0.0, 0.0] and emitted == 0.0 and membrane == -1.75
    assert bool(held_at_clamp(torch.tensor(membrane), torch.tensor(emitted), 0, 2.0, 7.0))
    # V = 2.5 * 4 = 10 > qmax = 7: saturates at 7 = 4 + 2 + 1.
    spikes, _, emitted = _run([2.5, 0.0, 0.0], Ts=0)
    assert spikes == [1.0, 1.0, 1.0] and emitted == 7.0
    # qmax = 5 below the codable 7: the clamp blocks the spike that would reach 6.
    spikes, _, emitted = _run([2.5, 0.0, 0.0], Ts=0, qmax=5.0)
    assert emitted == 5.0 and spikes == [1.0, 0.0, 1.0]


def test_silent_period_of_tc_rounds_every_value_exactly() -> None:
    torch.manual_seed(0)
    Tc = 6
    z = torch.randn(Tc, 4000, dtype=torch.float64) * 20
    weights = torch.tensor([2.0 ** (Tc - k) for k in range(1, Tc + 1)], dtype=torch.float64)
    v = (z * weights.view(-1, 1)).sum(0)
    spikes, _, emitted = tsa_dynamics(z, Ts=Tc, beta=2.0, qmax=63.0)
    expected = torch.clamp(torch.floor(v + 0.5), 0, 63)
    assert torch.equal(emitted, expected)
    assert torch.equal((spikes * weights.view(-1, 1)).sum(0), expected)


def test_encoder_is_exact_for_every_integer() -> None:
    Tc = 8
    encoder = SWSEncoder(Tc, 2.0, 1, qmax=510).double()
    encoder.zero_point.fill_(255.0)  # Q in 0..510 carries the real values -255..255
    q = torch.arange(0, 511, dtype=torch.float64)
    images = (q - 255).view(-1, 1, 1, 1)  # scale 1: Q = x + Z
    frames = unfold_time(encoder(images), Tc)
    weights = torch.tensor([2.0 ** (Tc - k) for k in range(1, Tc + 1)], dtype=torch.float64)
    decoded = (frames * weights.view(-1, 1, 1, 1, 1)).sum(0).view(-1)
    assert torch.equal(decoded, q - 255)


def test_constant_current_encoding_of_eq9_is_not_exact() -> None:
    # The docstring of SWSEncoder claims eq 9 (constant input, Ts=0) misencodes 126 of 511 integers.
    Tc = 8
    p = torch.arange(-255, 256, dtype=torch.float64)
    z = (p / 255).expand(Tc, -1).contiguous()
    spikes, _, _ = tsa_dynamics(z, Ts=0, beta=2.0, qmax=None, qmin=None)
    weights = torch.tensor([2.0 ** (Tc - k) for k in range(1, Tc + 1)], dtype=torch.float64)
    decoded = (spikes * weights.view(-1, 1)).sum(0)
    assert int((decoded != p).sum()) == 126


def _models() -> dict:
    return {
        "lenet5": lambda: (load_model("lenet5").module, load_model("lenet5").input_spec),
        "resnet20": lambda: (cifar_resnet("resnet20", 10), CIFAR),
        "resnet32": lambda: (cifar_resnet("resnet32", 10), SMALL),
        "resnet44": lambda: (cifar_resnet("resnet44", 10), SMALL),
        "resnet56": lambda: (cifar_resnet("resnet56", 10), SMALL),
        "resnet110": lambda: (cifar_resnet("resnet110", 10), SMALL),
        "resnet18": lambda: (torchvision.models.resnet18(num_classes=10), CIFAR),
        "vgg16": lambda: (torchvision.models.vgg16(num_classes=10), CIFAR),
    }


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16" else n for n in _models()])
def test_ts_ge_tc_reproduces_the_quantized_ann_in_float64(name: str) -> None:
    torch.manual_seed(0)
    model, spec = _models()[name]()
    q = quantize_random(randomize_batchnorm(model), spec)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=8))
    x = torch.rand(2, *spec.example_shape(1)[1:], dtype=torch.float64)
    with torch.no_grad():
        expected = q.double()(x)
        got = snn(x)
    assert (got - expected).abs().max().item() <= 1e-4 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("name,Ts", [("lenet5", 0), ("lenet5", 3), ("resnet20", 1), ("resnet20", [2, 0] * 9 + [1])])
def test_folded_engine_matches_step_by_step_reference(name: str, Ts) -> None:
    torch.manual_seed(1)
    model, spec = _models()[name]()
    q = quantize_random(randomize_batchnorm(model), spec)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=Ts))
    recorded = {}
    for layer, module in snn.body.named_modules():
        if hasattr(module, "Ts"):
            module.register_forward_hook(lambda m, i, o, n=layer: recorded.__setitem__(n, unfold_time(o, 8)))
    x = torch.rand(2, *spec.example_shape(1)[1:], dtype=torch.float64)
    with torch.no_grad():
        logits = snn(x)
    ref_logits, ref_spikes = reference_run(snn, x)
    assert set(ref_spikes) == set(recorded)
    for layer, frames in ref_spikes.items():
        assert torch.equal(torch.stack(frames), recorded[layer]), layer
    assert torch.allclose(logits, ref_logits, rtol=0, atol=1e-9)


def test_latency_and_residual_alignment() -> None:
    q = quantize_random(cifar_resnet("resnet20", 10).eval(), CIFAR)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=2))
    info = snn.info
    assert info["L_TSA"] == 19 and info["T_inf"] == 8 + 2 * 19 == info["latency"]
    assert info["pipeline_period"] == 10
    assert len(info["alignments"]) == 9  # one per residual add
    for a in info["alignments"]:
        assert sorted(a["added_delay"].values()) == [0, 2]  # the shortcut waits Ts for the skipped layer
    per_layer = [0, 1] * 9 + [3]
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=per_layer))
    assert snn.info["Ts"] == per_layer and snn.info["T_inf"] == 8 + sum(per_layer)


def test_maxpool_layers_count_in_latency() -> None:
    lm = load_model("lenet5")
    q = quantize_random(lm.module, lm.input_spec)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=1))
    assert snn.info["L_TSA"] == 6  # 4 ReLU neurons + 2 max-pool neurons on the path
    assert snn.info["T_inf"] == 14
    assert sum(isinstance(m, TSANeuron) for m in snn.modules()) == 4


def test_weights_are_recomputed_as_eq18() -> None:
    lm = load_model("lenet5")
    q = quantize_random(lm.module, lm.input_spec)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=2))
    c_in = float(q.get_submodule("relu1_quant").scale)
    c_out = float(q.get_submodule("relu2_quant").scale)
    layer = q.get_submodule("conv2")
    w_hat = layer.integer_weight().double() * layer.w_scale.double().view(-1, 1, 1, 1)
    syn = snn.body.get_submodule("conv2")
    assert torch.allclose(syn.weight, w_hat * c_in / c_out, rtol=1e-12)
    assert torch.allclose(syn.bias, layer.bias.double() / c_out, rtol=1e-6)
    assert torch.allclose(syn.frame_bias_gain, torch.full((8,), 1 / 255, dtype=torch.float64))  # eq 19


def test_invalid_options_are_one_line_errors() -> None:
    lm = load_model("lenet5")
    q = quantize_random(lm.module, lm.input_spec)
    for config, pattern in [
        (SWSConfig(Tc=4), "encodes at most 15"),
        (SWSConfig(Ts=[1, 2]), "lists 2 silent periods but the network has 6"),
        (SWSConfig(Ts=-1), "silent periods are integers"),
        (SWSConfig(beta=1.0), "amplification must be > 1"),
        (SWSConfig(Ts="fast"), "is not possible"),
    ]:
        with pytest.raises(SnnConvertError, match=pattern) as err:
            convert_sws(q, config)
        assert "\n" not in str(err.value)


def test_quantized_ann_is_required() -> None:
    lm = load_model("lenet5")
    from snnconvert.graph import prepare

    with pytest.raises(SnnConvertError, match="quantized model"):
        convert_sws(prepare(lm.module, lm.input_spec), SWSConfig())


@pytest.mark.slow
def test_ts_auto_meets_its_agreement_target_at_the_smallest_uniform_period() -> None:
    from snnconvert.methods.sws.coding import _predict, auto_silent_periods

    torch.manual_seed(0)
    model = randomize_batchnorm(cifar_resnet("resnet20", 10).eval())
    q = quantize_random(model, SMALL, images=64)
    images = torch.rand(96, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    loader = [(images[i:i + 32], torch.zeros(32, dtype=torch.long)) for i in range(0, 96, 32)]
    target = 0.98
    cfg = SWSConfig(Tc=8, Ts="auto", auto_agreement=target, auto_limit=96, auto_holdout=0.0)  # one round, all 96
    snn = convert_sws(q, cfg)
    auto = auto_silent_periods(snn, q, loader, cfg)
    k_star = auto["uniform_Ts"]
    uniform = {t["step"]: t["agreement"] for t in auto["trials"] if t["step"].startswith("uniform")}
    assert k_star > 0 and uniform[f"uniform Ts={k_star - 1}"] < target  # one shorter everywhere misses
    assert all(ts <= k_star for ts in snn.info["Ts"])  # never slower than the best uniform setting
    assert snn.info["T_inf"] <= 8 + k_star * snn.info["L_TSA"]
    reference = _predict(q.float(), images, torch.float32)
    agreement = float((_predict(snn.float(), images, torch.float32) == reference).float().mean())
    assert agreement >= target  # the chosen periods really meet the target on the calibration images


def test_residual_histograms_are_recorded_only_for_the_reports_that_read_them() -> None:
    from snnconvert.evaluate import EvaluateConfig, wants_coding_reports

    q = quantize_random(cifar_resnet("resnet20", 10).eval(), SMALL)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=2))
    assert not wants_coding_reports(EvaluateConfig(reports=("accuracy", "opf", "energy")), snn)
    assert all(wants_coding_reports(EvaluateConfig(reports=(r,)), snn) for r in ("residual", "coding", "all"))
    images = torch.rand(3, 3, 16, 16)
    tsa = [n for n in snn.neurons().values() if isinstance(n, TSANeuron)]
    for detail in (False, True):
        snn.reset_stats()
        with torch.no_grad(), snn.recording(detail=detail):
            snn(images)
        assert all(float(n.events_per_step.sum()) > 0 for n in tsa[:3])  # spikes are always counted
        histogram = sum(float(n.residual_hist.sum() + n.clamped_count) for n in tsa)
        assert (histogram > 0) == detail
    assert all(n.recording_detail and not n.recording for n in tsa)  # restored after the block
