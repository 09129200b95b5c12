"""The remedy of the SWS depth study: extra silent steps for the layers whose residual needs them."""

from __future__ import annotations

import pytest
import torch
from helpers import quantize_random
from torch import nn

from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.methods.sws.coding import SWSConfig, boost_silent_periods, convert_sws, neuron_modules
from snnconvert.methods.sws.neuron import TSANeuron
from snnconvert.neurons.base import unfold_time

WEIGHTS8 = torch.tensor([2.0 ** (8 - k) for k in range(1, 9)], dtype=torch.float64)


def _one_neuron_snn(Ts: int):
    """pixel -> Linear(1, 1) -> ReLU -> Linear(1, 2), converted, with the encoder and the hidden
    synapse set so that the pixel -1 is the integer Q - Z = -1, the digits 0, ..., 0, -1 (the
    encoder rounds half up, so +1 would be 0, ..., 1, -1), and the hidden neuron receives -10 times
    the digits: the charge 10, all of it on the last step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 1, bias=False), nn.ReLU(), nn.Linear(1, 2)).eval()
    spec = InputSpec(1, (1, 1), None, (0.0,), (1.0,))
    q = quantize_random(model, spec)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=Ts))
    with torch.no_grad():
        snn.encoder.scale.fill_(1.0)
        snn.encoder.zero_point.fill_(1.0)
        snn.body.input_normalize.scale.fill_(1.0)  # the folded input scale: digits of Q arrive as they are
        snn.body.input_normalize.shift.fill_(0.0)
        linears = [m for m in snn.body.modules() if isinstance(m, nn.Linear)]
        linears[0].weight.fill_(-10.0)
    hidden = next(n for n in neuron_modules(snn.body).values())
    return snn, hidden


def _hidden_value(snn, hidden: TSANeuron, pixel: float) -> float:
    out = {}
    handle = hidden.register_forward_hook(lambda m, i, o: out.__setitem__("s", unfold_time(o, 8)))
    with torch.no_grad():
        snn(torch.full((1, 1, 1, 1), pixel, dtype=torch.float64))
    handle.remove()
    return float((out["s"].double().reshape(8, -1) * WEIGHTS8.view(-1, 1)).sum())


def test_boost_gives_the_layer_with_a_late_charge_one_more_silent_step() -> None:
    # The hidden neuron receives z_8 = 10 and nothing before (see _one_neuron_snn).
    # Ts = 2: the charge arrives when only the digits of weight 4, 2, 1 are left: it fires all
    # three (4, 2, 1: E = 7) and keeps a residual of 3 > 1/2. Ts = 3: the digits 8, 4, -2 give
    # E = 10, the exact value.
    snn, hidden = _one_neuron_snn(Ts=2)
    assert _hidden_value(snn, hidden, -1.0) == 7.0
    images = -torch.ones(1, 1, 1, 1, dtype=torch.float64)
    result = boost_silent_periods(snn, images, tolerance=0.0, max_ts=8)
    name = next(iter(neuron_modules(snn.body)))
    assert result["before"][name] == 2
    assert result["after"][name] == 3 == hidden.Ts
    assert result["raised"] == {name: 1}
    assert result["profile"][name][:2] == [1.0, 0.0]  # Ts 2: its one neuron differs; Ts 3: none
    assert _hidden_value(snn, hidden, -1.0) == 10.0


def test_boost_never_lowers_and_respects_its_cap() -> None:
    snn, hidden = _one_neuron_snn(Ts=2)
    images = -torch.ones(1, 1, 1, 1, dtype=torch.float64)
    capped = boost_silent_periods(snn, images, tolerance=0.0, max_ts=2)
    assert capped["raised"] == {} and hidden.Ts == 2
    snn, hidden = _one_neuron_snn(Ts=5)
    assert boost_silent_periods(snn, images, tolerance=0.0, max_ts=8)["raised"] == {} and hidden.Ts == 5
    # a tolerance above the layer's mismatch share leaves it alone
    snn, hidden = _one_neuron_snn(Ts=2)
    assert boost_silent_periods(snn, images, tolerance=1.0, max_ts=8)["raised"] == {} and hidden.Ts == 2


def test_options_are_checked() -> None:
    with pytest.raises(SnnConvertError, match="^residual_tolerance 2.0 is not possible"):
        SWSConfig(Tc=8, residual_tolerance=2.0).validate()
    with pytest.raises(SnnConvertError, match="Ts auto"):
        SWSConfig(Tc=8, Ts="auto", residual_tolerance=0.0).validate()


def test_conversion_with_residual_tolerance_boosts_on_calibration_images() -> None:
    from snnconvert.codings.base import ConversionInputs
    from snnconvert.methods.sws.coding import convert

    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(),
                          nn.Linear(8, 3)).eval()
    spec = InputSpec(1, (4, 4), None, (0.5,), (0.25,))
    q = quantize_random(model, spec)
    images = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    loader = [(images[i:i + 10], torch.zeros(10, dtype=torch.long)) for i in range(0, 40, 10)]
    snn = convert(ConversionInputs(q, q, spec, calibration=loader),
                  SWSConfig(Tc=8, Ts=0, residual_tolerance=0.0, auto_limit=40))
    boost = snn.info["residual_boost"]
    assert boost["images"] == 40 and boost["before"] == dict.fromkeys(boost["before"], 0)
    assert sum(boost["after"].values()) > 0  # at Ts 0 some neurons of these layers round wrongly
    # every layer ends at the first silent period whose profile share is 0 (or at Tc)
    for name, ts in boost["after"].items():
        shares = boost["profile"][name]
        assert ts == 8 or shares[ts] == 0.0
        assert all(s > 0.0 for s in shares[:ts])
    assert snn.info["T_inf"] == 8 + sum(boost["after"].values())  # a chain: every layer is on the path
    assert [n.Ts for n in neuron_modules(snn.body).values()] == list(boost["after"].values())
    plain = convert(ConversionInputs(q, q, spec, calibration=loader), SWSConfig(Tc=8, Ts=0))
    assert "residual_boost" not in plain.info and plain.info["T_inf"] == 8
