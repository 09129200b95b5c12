"""Balanced-ternary SWS (beta = 3): digits in {-1, 0, 1} with weights 3^(Tc-k), 8 bits in 6 steps."""

from __future__ import annotations

import pytest
import torch
from helpers import quantize_random, randomize_batchnorm

from snnconvert.data import InputSpec
from snnconvert.ingest import load_model
from snnconvert.methods.sws.coding import SWSConfig, convert_sws
from snnconvert.methods.sws.neuron import SWSEncoder, tsa_dynamics
from snnconvert.models import cifar_resnet
from snnconvert.neurons.base import unfold_time

CIFAR = InputSpec(3, (32, 32), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SMALL = InputSpec(3, (16, 16), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _weights(Tc: int, beta: float = 3.0) -> torch.Tensor:
    return torch.tensor([beta ** (Tc - k) for k in range(1, Tc + 1)], dtype=torch.float64)


def test_ternary_digits_by_hand() -> None:
    # 100 = 81 + 27 - 9 + 1 = (1, 1, -1, 0, 1) in balanced ternary, weights 81, 27, 9, 3, 1
    frames = torch.tensor([[100.0], [0], [0], [0], [0]], dtype=torch.float64)
    spikes, membrane, emitted = tsa_dynamics(frames / 81.0, Ts=5, beta=3.0, qmax=121.0)
    assert spikes.view(-1).tolist() == [1.0, 1.0, -1.0, 0.0, 1.0]
    assert float(emitted) == 100.0


def test_silent_period_of_tc_rounds_every_value_exactly() -> None:
    torch.manual_seed(0)
    Tc = 6
    z = torch.randn(Tc, 4000, dtype=torch.float64) * 40
    v = (z * _weights(Tc).view(-1, 1)).sum(0)
    spikes, _, emitted = tsa_dynamics(z, Ts=Tc, beta=3.0, qmax=255.0)
    expected = torch.clamp(torch.floor(v + 0.5), 0, 255)  # ReLU and the 8-bit top, round half up
    assert torch.equal(emitted, expected)
    assert torch.equal((spikes * _weights(Tc).view(-1, 1)).sum(0), expected)
    assert set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_encoder_emits_balanced_ternary_digits_of_every_8bit_value() -> None:
    Tc = 6  # ceil(8 log 2 / log 3) = 6: (3^6 - 1) / 2 = 364 >= 255
    encoder = SWSEncoder(Tc, 3.0, 1, qmax=255).double()
    q = torch.arange(0, 256, dtype=torch.float64)
    frames = unfold_time(encoder(q.view(-1, 1, 1, 1)), Tc)
    assert set(frames.unique().tolist()) <= {-1.0, 0.0, 1.0}
    decoded = (frames * _weights(Tc).view(-1, 1, 1, 1, 1)).sum(0).view(-1)
    assert torch.equal(decoded, q)


@pytest.mark.parametrize("bits,beta,steps", [(8, 2.0, 8), (8, 3.0, 6), (4, 2.0, 4), (6, 3.0, 5), (4, 3.0, 4)])
def test_default_tc_is_the_fewest_steps_that_hold_the_range(bits: int, beta: float, steps: int) -> None:
    # (beta^Tc - 1) / (beta - 1) >= 2^n - 1. Balanced-ternary digits are signed, so Tc digits reach
    # (3^Tc - 1) / 2: 8 bits fit in ceil(8 log 2 / log 3) = 6 (364 >= 255), but 6 bits need 5
    # (4 reach 40 < 63) and 4 bits need 4 (3 reach 13 < 15)
    lm = load_model("lenet5")
    q = quantize_random(lm.module, lm.input_spec, bits=bits)
    snn = convert_sws(q, SWSConfig(beta=beta, Ts=0))
    assert snn.info["Tc"] == steps and snn.info["frames"] == steps


def _models() -> dict:
    lm = load_model("lenet5")
    return {
        "lenet5": lambda: (lm.module, lm.input_spec),
        "resnet20": lambda: (cifar_resnet("resnet20", 10), CIFAR),
        "resnet56": lambda: (cifar_resnet("resnet56", 10), SMALL),
    }


@pytest.mark.parametrize("name", ["lenet5", "resnet20", pytest.param("resnet56", marks=pytest.mark.slow)])
def test_beta3_at_ts_ge_tc_reproduces_the_quantized_ann_in_float64(name: str) -> None:
    torch.manual_seed(0)
    model, spec = _models()[name]()
    q = quantize_random(randomize_batchnorm(model), spec)
    snn = convert_sws(q, SWSConfig(beta=3.0, Ts=6))
    assert snn.info["Tc"] == 6
    x = torch.rand(2, *spec.example_shape(1)[1:], dtype=torch.float64)
    with torch.no_grad():
        expected = q.double()(x)
        got = snn(x)
    assert (got - expected).abs().max().item() <= 1e-9 * max(1.0, expected.abs().max().item())


def test_beta3_is_shorter_than_beta2_at_the_same_silent_period() -> None:
    lm = load_model("lenet5")
    q = quantize_random(lm.module, lm.input_spec)
    two, three = convert_sws(q, SWSConfig(beta=2.0, Ts=2)), convert_sws(q, SWSConfig(beta=3.0, Ts=2))
    layers = two.info["L_TSA"]
    assert two.info["T_inf"] == 8 + 2 * layers and three.info["T_inf"] == 6 + 2 * layers
