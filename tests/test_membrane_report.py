"""Tests of ``evaluate --report membrane`` (snnconvert.reports.analyses.membrane; SpQuant §4.1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnconvert.methods.mlif.neuron import MLIFNeuron, mlif_dynamics
from snnconvert.methods.rate.neuron import IFNeuron, if_dynamics
from snnconvert.methods.spquant.neuron import SpQuantNeuron
from snnconvert.methods.sws.neuron import TSANeuron
from snnconvert.reports.analyses import AnalysisContext, analyses, find_report
from snnconvert.reports.analyses.membrane import compute, plot, probed, tables
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.network import SpikingNetwork
from snnconvert.simulate.synapse import WeightedSumDecoder


def _dyadic(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-24, 24, shape, generator=g) / 8.0).double()


def test_unclipped_runs_match_the_neurons_own_dynamics() -> None:
    x = _dyadic((6, 4, 10), 0)
    spikes, _ = IFNeuron(6, init=0.5).membrane_run(x, None)
    assert torch.equal(spikes, if_dynamics(x, init=0.5)[0])
    spikes, _ = MLIFNeuron(6, 3, beta=0.5).membrane_run(x, None)
    assert torch.equal(spikes, mlif_dynamics(x, S=3, beta=0.5))
    neuron = SpQuantNeuron(6, precision="none")
    with torch.no_grad():
        spikes, first = neuron.membrane_run(x, None)
        assert torch.equal(spikes, neuron.dynamics(x))
    s0 = (x[0] >= 1).double()
    assert torch.equal(first, x[0] * (1 - s0))  # hard reset: post-spike membrane at t=1


def test_clip_changes_if_dynamics_by_hand() -> None:
    # IF, init 0: inputs -3 then 2.5: unclipped u1 = -3, u2 = -0.5 (silent); clipped at -1: u2 = 1.5 fires
    x = torch.tensor([[-3.0], [2.5]], dtype=torch.float64)
    n = IFNeuron(2, init=0.0)
    assert n.membrane_run(x, None)[0].view(-1).tolist() == [0.0, 0.0]
    spikes, first = n.membrane_run(x, -1.0)
    assert spikes.view(-1).tolist() == [0.0, 1.0] and float(first) == -1.0


class _Frames(nn.Module):
    """Test encoder: (B, T, N) -> time-folded (T*B, N)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).reshape(-1, x.shape[-1])


def _net(T: int) -> SpikingNetwork:
    snn = SpikingNetwork("rate", {"T": T, "frames": T})
    snn.encoder = _Frames()
    snn.body = nn.Sequential(IFNeuron(T, init=0.0))
    snn.decoder = WeightedSumDecoder(T).double()
    return snn


def test_r_s_u_min_and_clipped_accuracy_by_hand() -> None:
    # 2 neurons, T = 3, init 0. Sample A: neuron 0 gets -3, 2, 2 (u1 = -3 < c for c >= -2.99; u2 = -1,
    # u3 = 1 fires at t=3); neuron 1 gets 1, 0, 0 (fires at t=1). Sample B: neuron 0 gets -1.5, 0, 0
    # (never fires), neuron 1 gets -4.5, 5, 0 (u2 = 0.5 silent, u3 = 0.5 silent).
    x = torch.tensor([[[-3.0, 1.0], [2.0, 0.0], [2.0, 0.0]],
                      [[-1.5, -4.5], [0.0, 5.0], [0.0, 0.0]]], dtype=torch.float64)
    labels = torch.tensor([1, 1])
    snn = _net(3)
    ctx = AnalysisContext(None, snn, x, labels, torch.zeros(2, 2), torch.zeros(2, 2), torch.device("cpu"),
                          torch.float64, 8)
    d = compute(ctx)
    (layer,) = d["layers"]
    assert layer["u_min"] == -4.5
    # Gamma_u per c: c=-5: none; -4: {B1}; -3: {B1}; -2: {A0, B1}; -1: {A0, B0, B1} of 4 neurons
    assert layer["below_share"] == [0.0, 0.25, 0.25, 0.5, 0.75]
    # r_s: later spikes of Gamma_u neurons over 2 samples x 2 neurons x 2 later steps = 8 slots
    assert layer["r_s"] == [0.0, 0.0, 0.0, 1 / 8, 1 / 8]
    # unclipped outputs (spike counts / 3): A = (1/3, 1/3) -> argmax 0 (tie), B = (0, 0) -> 0
    assert d["baseline_top1"] == 0.0
    # clipped at c = -1: B1: u1 = -1, u2 = 4 fires, u3 = 3 fires -> B = (0, 2/3) -> class 1 right
    assert d["clipped_top1"][-1] == 0.5
    assert d["clipped_top1"][0] == 0.0  # c = -5 clips nothing
    assert [t.title for t in tables(d)][0].startswith("accuracy")
    with probed(snn, -1.0, None):
        pass
    assert "dynamics" not in snn.body[0].__dict__  # the network is left as it was


def test_registered_and_applies_to_lif_family_only(tmp_path) -> None:
    analysis = analyses()["membrane"]
    assert find_report(None, "membrane") is analysis
    assert analysis.applies(_net(2))
    for neuron in (MLIFNeuron(2, 2), SpQuantNeuron(2)):
        snn = SpikingNetwork("x", {"T": 2})
        snn.body = nn.Sequential(neuron)
        assert analysis.applies(snn)
    sws = SpikingNetwork("sws", {})
    sws.body = nn.Sequential(TSANeuron(2, 2))
    assert not analysis.applies(sws)
    d = compute(AnalysisContext(None, _net(2), torch.rand(4, 2, 2).double(), torch.zeros(4, dtype=torch.long),
                                torch.zeros(4, 2), torch.zeros(4, 2), torch.device("cpu"), torch.float64, 2))
    (path,) = plot(d, tmp_path, "test")
    assert path.is_file() and path.stat().st_size > 1000


def test_repeat_encoded_network_runs() -> None:
    snn = SpikingNetwork("rate", {"T": 2, "frames": 2})
    snn.encoder = RepeatEncoder(2)
    snn.body = nn.Sequential(nn.Flatten(), IFNeuron(2, init=0.5))
    snn.decoder = WeightedSumDecoder(2).double()
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(0)).double()
    d = compute(AnalysisContext(None, snn, x, torch.zeros(5, dtype=torch.long), torch.zeros(5, 4),
                                torch.zeros(5, 4), torch.device("cpu"), torch.float64, 2))
    assert d["layers"][0]["u_min"] >= -0.5 and d["T"] == 2


@pytest.mark.slow
def test_evaluate_report_membrane_and_spquant_reports() -> None:
    from snnconvert.evaluate import EvaluateConfig, evaluate
    from snnconvert.pipeline import quantize, to_snn
    from snnconvert.quantize import QuantizeConfig

    q = quantize("lenet5", data="digits", config=QuantizeConfig(bits=8, calib_limit=64), eval_limit=0)
    for coding in ("spquant", "mlif", "rate"):
        snn = to_snn(q, coding, T=2)
        reports = ("accuracy", "membrane") + (("memory", "flops", "energy") if coding == "spquant" else ())
        r = evaluate(q, snn, EvaluateConfig(limit=32, reports=reports))
        d = r.coding_reports["membrane"]
        assert d["images"] == 32 and len(d["clipped_top1"]) == 5
        assert all(0.0 <= a <= 1.0 for a in d["clipped_top1"])
        if coding == "spquant":
            assert {"memory", "flops", "energy"} <= set(r.coding_reports)
