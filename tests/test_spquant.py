"""Tests of the SpQuant-SNN coding (paper 001): membrane quantization Q and Q*, the LIF neuron,
power-of-two weights, pruning masks, skipped work, and the memory / FLOPs / energy reports."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnconvert.artifact import Artifact, load_artifact, save_artifact
from snnconvert.codings import ConversionInputs, get_coding
from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.methods import get_method, method_config
from snnconvert.graph import prepare
from snnconvert.methods.spquant.coding import SpQuantConfig, energy, flops, memory
from snnconvert.methods.spquant.neuron import (
    ChannelGate,
    SpQuantNeuron,
    fire,
    membrane_bits,
    membrane_range,
    quantize_membrane,
    quantize_membrane_sgs,
    spatial_mask,
)
from snnconvert.methods.spquant.pot import PoTConv2d, pot_grid, pot_quantize, pot_round
from snnconvert.neurons.surrogates import get_surrogate, stacked_grad


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ----------------------------------------------------------------------------- Q and Q* (eqs 7, 11-13)


def test_q_levels_ternary_binary_kbit() -> None:
    u = torch.tensor([-2.0, -0.6, -0.5, -0.4, 0.0, 0.49, 0.5, 0.9, 1.6])
    assert quantize_membrane(u, -1, 1).tolist() == [-1, -1, 0, 0, 0, 0, 1, 1, 1]
    assert quantize_membrane(u, 0, 1).tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1]  # binary: -1 dropped
    assert membrane_range("ternary") == (-1, 1) and membrane_range("binary") == (0, 1)
    assert membrane_range("3bit") == (-4, 3) and membrane_range("none") is None
    assert quantize_membrane(torch.tensor([-9.0, -3.6, 2.5, 9.0]), -4, 3).tolist() == [-4, -4, 3, 3]
    assert membrane_bits("ternary") == pytest.approx(1.58496, abs=1e-5)
    assert membrane_bits("binary") == 1.0 and membrane_bits("4bit") == 4.0 and membrane_bits("none") == 32.0
    with pytest.raises(SnnConvertError):
        membrane_range("quaternary")


def test_q_star_gradient_hand_values() -> None:
    # ternary: boundaries s = -0.5, 0.5 (eq 12); Q*(u) = sum_k T sig(T(u-s_k)) (1 - sig(T(u-s_k)))
    T = 4.0
    for value in (0.5, 0.3, -1.2, 2.0):
        u = torch.tensor([value], dtype=torch.float64, requires_grad=True)
        quantize_membrane_sgs(u, -1, 1, T).sum().backward()
        hand = sum(T * _sig(T * (value - s)) * (1 - _sig(T * (value - s))) for s in (-0.5, 0.5))
        assert float(u.grad) == pytest.approx(hand, rel=1e-6)
    # at u = 0.5: 1 (the centred term) + 4 sig(4)(1 - sig(4)) = 1.0706508
    assert float(stacked_grad(torch.tensor(0.5), -1, 1, 4.0)) == pytest.approx(1.0706508, abs=1e-6)
    assert get_surrogate("sgs:4").spec == "sgs:4"


def test_temporal_gradient_is_tau_times_q_star() -> None:
    # T = 2, theta = 1, hard reset: x0 = 0.3 (no spike, u0 = 0.3 -> Q = 0), x1 = 1.0: h1 = 0.5 Q(u0) + 1 = 1
    # dS1/dx0 = tri(h1 - 1) * tau * Q*(0.3) * du0/dx0 = 1 * 0.5 * Q*(0.3) * 1 (eq 13; the reset is detached)
    neuron = SpQuantNeuron(2, precision="ternary", smoothness=4.0)
    x = torch.tensor([[0.3], [1.0]], requires_grad=True)
    out = neuron.dynamics(x)
    assert out[:, 0].tolist() == [0.0, 1.0]
    out[1].sum().backward()
    q_star = sum(4 * _sig(4 * (0.3 - s)) * (1 - _sig(4 * (0.3 - s))) for s in (-0.5, 0.5))
    assert float(x.grad[0, 0]) == pytest.approx(0.5 * q_star, rel=1e-6)
    assert float(x.grad[1, 0]) == pytest.approx(1.0, rel=1e-6)


# ----------------------------------------------------------------------------- LIF dynamics (eqs 1, 10)


def _run(inputs: list[float], **kwargs) -> list[float]:
    neuron = SpQuantNeuron(len(inputs), **kwargs)
    with torch.no_grad():
        return neuron.dynamics(torch.tensor(inputs, dtype=torch.float64).view(-1, 1)).view(-1).tolist()


def test_lif_traces_hard_soft_precisions() -> None:
    # [0.6, 0.8, 1.2, -2]: h = 0.6 - (Q=1) | 0.5 + 0.8 = 1.3 S (u=0) | 1.2 S | -2 -
    assert _run([0.6, 0.8, 1.2, -2.0]) == [0, 1, 1, 0]
    # hard vs soft reset: [1.7, 0.6]: soft keeps 0.7 (Q = 1): 0.5 + 0.6 = 1.1 fires; hard: 0.6 does not
    assert _run([1.7, 0.6], reset="hard") == [1, 0]
    assert _run([1.7, 0.6], reset="soft") == [1, 1]
    # full precision vs ternary: [0.4, 0.85]: FP 0.2 + 0.85 = 1.05 fires; ternary Q(0.4) = 0 -> 0.85 does not
    assert _run([0.4, 0.85], precision="none") == [0, 1]
    assert _run([0.4, 0.85], precision="ternary") == [0, 0]
    # ternary vs binary: [-0.8, 1.3]: ternary Q = -1 -> -0.5 + 1.3 = 0.8 silent; binary Q = 0 -> 1.3 fires
    assert _run([-0.8, 1.3], precision="ternary") == [0, 0]
    assert _run([-0.8, 1.3], precision="binary") == [0, 1]
    # clipping at c = -1 (full precision): [-5, 3.2]: unclipped 0.5 * -5 + 3.2 = 0.7; clipped -0.5 + 3.2 fires
    assert _run([-5.0, 3.2], precision="none") == [0, 0]
    assert _run([-5.0, 3.2], precision="none", clip=-1.0) == [0, 1]


def test_sgp_threshold_gradient_only_from_fired_neurons() -> None:
    # eqs 24-27: dS/dh = tri(h - V), dS/dV = -tri(h - V) sigmoid(h - V) where h >= V, else 0
    theta = torch.ones((), requires_grad=True)
    h = torch.tensor([1.2, 0.9], requires_grad=True)
    s = fire(h, theta, get_surrogate("triangular:1"))
    assert s.tolist() == [1.0, 0.0]
    s.sum().backward()
    assert h.grad.tolist() == pytest.approx([0.8, 0.9])
    assert float(theta.grad) == pytest.approx(-0.8 * _sig(0.2), rel=1e-6)


# ----------------------------------------------------------------------------- PoT weights (eqs 14-18)


def test_pot_hand_rounding() -> None:
    x = torch.tensor([0.3, 0.6, -0.8, 1.5, 0.004, -0.3])
    assert pot_round(x, 2).tolist() == [0.0, 1.0, -1.0, 1.0, 0.0, -0.0]
    assert pot_round(x, 4).tolist() == [0.25, 0.5, -1.0, 1.0, 0.0, -0.25]
    assert pot_grid(4).tolist() == [0.0] + [2.0 ** -j for j in range(6, -1, -1)]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pot_weights_are_powers_of_two_within_budget(bits: int) -> None:
    w = torch.randn(64, 32, generator=torch.Generator().manual_seed(bits)) * 0.1
    log_scale = torch.tensor(-1.3, requires_grad=True)  # rounds to alpha = 2^-1
    wq = pot_quantize(w.clone().requires_grad_(True), log_scale, bits)
    alpha = 0.5
    levels = {float(v) for v in wq.detach().unique()}
    assert len(levels) <= 2 ** bits - 1
    exps = 2 ** (bits - 1) - 1  # non-zero magnitudes of the b-bit code
    for v in levels:
        if v == 0:
            continue
        e = math.log2(abs(v) / alpha)
        assert e == int(e) and -(exps - 1) <= e <= 0, v
    wq.sum().backward()  # straight-through: the scale gets a gradient
    assert log_scale.grad is not None


# ----------------------------------------------------------------------------- masks (eqs 21-23)


def test_spatial_mask_reaches_the_sparsity_and_prunes_the_least_important() -> None:
    prior = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = spatial_mask(prior, 0.35)
    pruned = 64 - mask.reshape(3, -1).sum(1)
    assert pruned.tolist() == [22.0, 22.0, 22.0]  # floor(0.35 * 64)
    imp = torch.linalg.vector_norm(prior, 2, dim=1).reshape(3, -1)
    keep = mask.reshape(3, -1) > 0
    for b in range(3):
        assert float(imp[b][~keep[b]].max()) <= float(imp[b][keep[b]].min())


def test_channel_gate_threshold_and_sparsity() -> None:
    gate = ChannelGate(4, threshold=0.47)
    logit = math.log(0.47 / 0.53)  # softmax(a, 0)[0] >= 0.47  <=>  a >= logit(0.47)
    with torch.no_grad():
        gate.conv.bias.copy_(torch.tensor([logit + 0.01, logit - 0.01, 2.0, -2.0]))
    p = gate.probabilities(torch.zeros(2, 4, 6, 6))
    assert p[0].tolist() == pytest.approx([_sig(logit + 0.01), _sig(logit - 0.01), _sig(2.0), _sig(-2.0)])
    assert gate(torch.zeros(2, 4, 6, 6)).tolist() == [[1.0, 0.0, 1.0, 0.0]] * 2


def test_channel_gate_eq23_softmax_over_channels_by_hand(tmp_path) -> None:
    gate = ChannelGate(2, threshold=0.5, out_channels=4, rule="eq23")
    assert gate.conv.weight.abs().sum() == 0 and gate.conv.bias.abs().sum() == 0
    assert gate(torch.zeros(2, 2, 6, 6)).tolist() == [[1.0] * 4] * 2  # U_sf = 1/4 each: every channel open
    with torch.no_grad():
        gate.conv.bias.copy_(torch.tensor([0.0, math.log(0.4), math.log(3.0), math.log(0.6)]))
    # U_att = bias (zero weights): exp = 1, 0.4, 3, 0.6, sum 5 -> U_sf = 0.2, 0.08, 0.6, 0.12;
    # theta = 0.5 / 4 = 0.125: keep 0.2 and 0.6, drop 0.08 and 0.12
    p = gate.probabilities(torch.zeros(1, 2, 6, 6))
    assert (p[0] / 4).tolist() == pytest.approx([0.2, 0.08, 0.6, 0.12], rel=1e-6)
    gate.track_keep = True
    mask = gate.mask_from_prior(torch.zeros(1, 2, 6, 6))
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0]]
    (mask * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()  # straight-through: the softmax's gradient
    assert gate.conv.bias.grad is not None and float(gate.conv.bias.grad.abs().sum()) > 0
    neuron = SpQuantNeuron(2, gate_enabled=True, channels=4, gate_in_channels=2, gate_rule="eq23")
    path = save_artifact(Artifact("snn", {}, {"n": neuron}), tmp_path / "g.snnc")
    assert load_artifact(path).models["n"].gate.rule == "eq23"
    assert SpQuantNeuron(2, gate_enabled=True, channels=4).gate.rule == "keep-skip"  # older artifacts
    with pytest.raises(SnnConvertError):
        ChannelGate(2, rule="bogus")


def test_spatial_importance_scored_at_every_step_by_hand() -> None:
    # one sample, one channel, two positions, half pruned (eqs 21-22), tau 0.5, hard reset, theta 1:
    # step 0 y = (2, 0.1): position 0 is the more important, fires, resets to 0; position 1 is pruned.
    # step 1 y = (0.1, 3): scored again, position 1 is kept and fires (h = 0.5 * 0 + 3); position 0
    # is pruned. Scored once (first), step 1 keeps position 0 (h = 0.1: silent) and prunes 1.
    y = torch.tensor([[[[2.0, 0.1]]], [[[0.1, 3.0]]]])  # (T*B, C, H, W) = (2, 1, 1, 2)
    step = SpQuantNeuron(2, precision="none", spatial=0.5, spatial_scoring="step")
    first = SpQuantNeuron(2, precision="none", spatial=0.5, spatial_scoring="first")
    step.recording = True
    with torch.no_grad():
        assert step(y).flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    assert first(y).flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    work = step.work()
    assert work["spatial_sparsity"] == pytest.approx(0.5) and work["membrane_updates"] == pytest.approx(2.0)
    assert SpQuantNeuron(2).spatial_scoring == "first"  # artifacts from before the option
    with pytest.raises(SnnConvertError):
        SpQuantNeuron(2, spatial_scoring="bogus")


def test_per_step_scoring_is_the_default_and_the_conv_computes_every_position() -> None:
    snn, x = _tiny(SpQuantConfig(T=2, weight_bits=None, spatial=0.35, gate=True), _Tiny2)
    _, neuron = [m for m in snn.body.modules() if isinstance(m, SpQuantNeuron)]
    conv2 = [m for m in snn.body.modules() if isinstance(m, PoTConv2d)][1]
    assert neuron.spatial_scoring == "step" and conv2.prune_spatial == 0.0
    with torch.no_grad(), snn.recording():
        snn(x)
    assert neuron.work()["spatial_sparsity"] == pytest.approx(5 / 16)  # floor(0.35 * 16) of 4x4 at each step


def test_masked_work_is_really_skipped() -> None:
    # 35% spatial pruning + a gate that closes 2 of 4 channels: masked neurons never fire, and the
    # membrane updates done are N (first step, the prior) + active * (T - 1)
    T = 3
    neuron = SpQuantNeuron(T, precision="ternary", spatial=0.35, gate_enabled=True, channels=4)
    with torch.no_grad():
        neuron.gate.conv.bias.copy_(torch.tensor([3.0, -3.0, 3.0, -3.0]))
    x = torch.rand(T, 2, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    neuron.recording = True
    with torch.no_grad():
        out = neuron(x.reshape(T * 2, 4, 8, 8)).reshape(x.shape)  # forward: records the work done
        mask = neuron.masks(neuron.q(x[0], False))
    active = mask.expand_as(x[0]) > 0
    assert float(out[:, ~active].abs().sum()) == 0.0  # no spike from a masked neuron, at any step
    assert float(out[:, active].sum()) > 0
    work = neuron.work()
    n = 4 * 64
    assert work["membrane_updates"] == pytest.approx((2 * n + float(active.sum()) * (T - 1)) / 2)
    assert work["spatial_sparsity"] == pytest.approx(22 / 64)
    assert work["channel_sparsity"] == pytest.approx(0.5)
    assert work["active_share"] == pytest.approx(float(active.sum()) / (2 * n))
    # the active-only path gives the same spikes as the dense recursion masked afterwards
    dense = SpQuantNeuron(T, precision="ternary")
    with torch.no_grad():
        ref = dense.dynamics(x * active)  # masked neurons: no input, their membrane stays 0
    assert torch.equal(out, ref * active)


# ----------------------------------------------------------------------------- conversion and reports


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


class _Tiny2(nn.Module):
    """Two conv layers: the second one's channel gate (2 -> 3 channels) reads the first's prior."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(48, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 1))


def _tiny(cfg: SpQuantConfig, model: type[nn.Module] = _Tiny):
    spec = InputSpec(channels=1, size=(4, 4))
    torch.manual_seed(0)
    gm = prepare(model(), spec)
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    calib = DataLoader(TensorDataset(x, torch.zeros(6, dtype=torch.long)), batch_size=6)
    snn = get_coding("spquant").convert(ConversionInputs(gm, None, spec, calib), cfg)
    return snn, x


def test_memory_flops_energy_against_hand_values() -> None:
    cfg = SpQuantConfig(T=2, weight_bits=4, precision="ternary", spatial=0.25, gate=False)
    snn, x = _tiny(cfg)
    with torch.no_grad(), snn.recording():
        snn(x)
    # N_w = 2*1*9 + 3*32 = 114 weights, N_f = 2*4*4 = 32 neurons
    mem = memory(snn)
    assert (mem["N_w"], mem["N_f"], mem["w_p"]) == (114, 32, 4)
    bits = 4 * 114 + math.log2(3) * 32 + 32
    assert mem["total_mb"] == pytest.approx(bits / 8e6)
    assert mem["dense_fp32_mb"] == pytest.approx((32 * 114 + 32 * 32 + 32) / 8e6)
    # eq 30: conv C=2, 4x4, k^2=9, S_c=0, S_p=4/16: 2*2*16*9 + 2*2*16*0.75 = 624; fc (no neuron after): 6 + 6
    fl = flops(snn)
    assert fl["eq30_flops"] == pytest.approx(624 + 12)
    assert fl["eq30_dense_flops"] == pytest.approx(576 + 64 + 12)
    assert fl["eq30_reduction"] == pytest.approx(652 / 636)
    # eq 31: sum C(1-S_c)WHk^2 = 288 + 3, accumulations 2*32*0.75 + 2*3 = 54
    en = energy(snn)
    assert (en["e_add_pj"], en["e_mul_pj"]) == (0.16, 0.34)  # BitNet table 2, 7 nm FP16 (fits the paper's table 10)
    assert en["E_mul_uj"] == pytest.approx(0.34 * 291 / 1e6)
    assert en["E_add_uj"] == pytest.approx(0.16 * (291 + 54) / 1e6)
    # ops done: first conv on analog input = MACs x T x active share; fc: input spikes x 3 outputs
    conv, fc = fl["layers"]
    assert conv["synaptic_ops"] == pytest.approx(2 * 16 * 9 * 2 * 0.75)
    (neuron,) = [m for m in snn.body.modules() if isinstance(m, SpQuantNeuron)]
    events = float(neuron.events_per_step.sum()) / 6
    assert fc["synaptic_ops"] == pytest.approx(events * 3)


def test_conversion_round_trip_with_gate_and_pot(tmp_path) -> None:
    snn, x = _tiny(SpQuantConfig(T=2, weight_bits=2, spatial=0.35, gate=True), _Tiny2)
    first, neuron = [m for m in snn.body.modules() if isinstance(m, SpQuantNeuron)]
    assert first.gate is None  # the first layer has no previous membrane prior
    assert neuron.gate is not None and (neuron.gate.in_channels, neuron.gate.out_channels) == (2, 3)
    conv = next(m for m in snn.body.modules() if isinstance(m, PoTConv2d))
    alpha = 2.0 ** float(torch.round(conv.log_scale.detach()))
    assert set((conv.effective_weight().detach().abs() / alpha).unique().tolist()) <= {0.0, 1.0}
    path = save_artifact(Artifact("snn", {}, {"snn": snn}), tmp_path / "sq.snnc")
    loaded = load_artifact(path).models["snn"]
    with torch.no_grad():
        assert torch.equal(loaded(x), snn(x))


def test_training_method_hooks() -> None:
    snn, x = _tiny(SpQuantConfig(T=2, weight_bits=None, spatial=0.0, gate=True, gate_rule="keep-skip"), _Tiny2)
    method = get_method("spquant")
    assert method.loss(method.prepare(copy.deepcopy(snn), method_config("spquant", {})),
                       method_config("spquant", {})) is None  # the paper: no sparsity loss by default
    paper, _ = _tiny(SpQuantConfig(T=2, weight_bits=None, spatial=0.0, gate=True), _Tiny2)
    with pytest.raises(SnnConvertError, match="keep-skip"):  # eq 23's shares cannot carry that loss
        method.prepare(paper, method_config("spquant", {"mask_weight": 1.0}))
    cfg = method_config("spquant", {"weight_bits": "4", "channel_sparsity": 0.5, "mask_weight": 1.0})
    model = method.prepare(snn, cfg)
    _, neuron = [m for m in model.body.modules() if isinstance(m, SpQuantNeuron)]
    assert neuron.threshold is not None
    conv = next(m for m in model.body.modules() if isinstance(m, PoTConv2d))
    assert conv.bits == 4 and model.info["weight_bits"] == 4
    out = model(x)
    extra = method.loss(model, cfg)
    assert extra is not None and float(extra.detach()) > 0  # every gate open: keep ~0.95 vs target 0.5
    (out.sum() + extra).backward()
    assert neuron.gate.conv.bias.grad is not None and conv.log_scale.grad is not None
    groups = method.parameter_groups(model, cfg)
    assert [lr for _, lr in groups] == [cfg.gate_lr, cfg.scale_lr]
    assert "spquant_channel_sparsity" in method.record(model, cfg)
    with pytest.raises(SnnConvertError):
        method_config("spquant", {"weight_bits": 3})


def test_config_validation() -> None:
    with pytest.raises(SnnConvertError):
        SpQuantConfig(precision="5").validate()
    with pytest.raises(SnnConvertError):
        SpQuantConfig(spatial=1.0).validate()
    with pytest.raises(SnnConvertError):
        SpQuantConfig(clip=1.0).validate()
    SpQuantConfig(precision="4bit", weight_bits=8, clip=-2.0).validate()


def test_pot_conv_skips_silent_input_channels() -> None:
    # channels masked upstream carry no spike in any frame: the conv convolves only the live ones
    conv = PoTConv2d(4, 3, 3, padding=1, bits=4, steps=2)
    x = torch.rand(4, 4, 5, 5, generator=torch.Generator().manual_seed(3)).round()
    x[:, 1] = 0
    x[:, 3] = 0
    with torch.no_grad():
        y = conv(x)
        ref = torch.nn.functional.conv2d(x, conv.effective_weight(), conv.bias, padding=1)
    assert torch.allclose(y, ref, atol=1e-6)
    assert conv.channel_work.tolist() == [4.0, 2.0]  # 4 channels offered, 2 convolved
    assert conv.out_shape.tolist() == [3.0, 5.0, 5.0]


def test_add_pruning_copies_and_adds_gates() -> None:
    from snnconvert.methods.spquant.coding import add_pruning

    snn, x = _tiny(SpQuantConfig(T=2, spatial=0.0, gate=False), _Tiny2)
    pruned = add_pruning(snn, spatial=0.25, gate=True, gate_bias=0.5, gate_rule="keep-skip")
    _, before = [m for m in snn.body.modules() if isinstance(m, SpQuantNeuron)]
    _, after = [m for m in pruned.body.modules() if isinstance(m, SpQuantNeuron)]
    assert before.gate is None and before.spatial == 0.0  # the input network is unchanged
    assert after.spatial == 0.25 and after.gate is not None
    assert after.gate.conv.bias.tolist() == [0.5, 0.5, 0.5]
    with torch.no_grad(), pruned.recording():
        pruned(x)
    assert after.work()["spatial_sparsity"] == pytest.approx(0.25)


def test_spatial_sparsity_is_the_spatial_mask_alone() -> None:
    # every channel gated off: nothing runs after the first step, S_c = 1, and S_p stays floor(0.35 * 64) / 64
    neuron = SpQuantNeuron(2, spatial=0.35, gate_enabled=True, channels=4)
    with torch.no_grad():
        neuron.gate.conv.bias.fill_(-3.0)
    neuron.recording = True
    x = torch.rand(4, 4, 8, 8, generator=torch.Generator().manual_seed(5)) * 2
    with torch.no_grad():
        out = neuron(x)
    work = neuron.work()
    assert float(out.abs().sum()) == 0.0
    assert work["channel_sparsity"] == 1.0 and work["spatial_sparsity"] == pytest.approx(22 / 64)
    assert work["membrane_updates"] == pytest.approx(4 * 64)  # only the first step's prior, per sample


@pytest.mark.slow
def test_finetune_with_the_method_learns_lenet_digits() -> None:
    # ternary membrane + 4-bit PoT weights, T = 2: chance after conversion, well above after 24 batches
    from snnconvert.evaluate import EvaluateConfig, evaluate
    from snnconvert.finetune import FinetuneConfig, finetune
    from snnconvert.pipeline import quantize, to_snn
    from snnconvert.quantize import QuantizeConfig

    q = quantize("lenet5", data="digits", config=QuantizeConfig(bits=8, calib_limit=128), eval_limit=0)
    snn = to_snn(q, "spquant", T=2, spatial=0.0, gate=False)
    cfg = FinetuneConfig(epochs=3, lr=1e-3, loss="tet", max_batches_per_epoch=8, val_limit=0, device="cpu",
                         methods={"spquant": {}})
    result = finetune(q, snn, cfg, data="digits")
    report = evaluate(q, result.snn, EvaluateConfig(limit=300, reports=("accuracy",)))
    assert next(s.top1 for s in report.accuracy.scores if s.model == "SNN") > 0.5
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert all(n.threshold is not None for n in result.snn.neurons().values())


# ----------------------------------------------------------------------------- work skipped in the synapse


def test_pruned_conv_equals_dense_then_masked_and_counts_the_macs() -> None:
    # T = 3, B = 2, 3 -> 4 channels, 6x6, 3x3 kernel: sample 0 keeps channels {0, 2, 3}, sample 1 {1};
    # frame 0 at every position (the spatial prior), frames 1-2 at 36 - floor(0.35 * 36) = 24 positions
    from snnconvert.methods.spquant.neuron import spatial_keep

    T, B = 3, 2
    torch.manual_seed(4)
    conv = PoTConv2d(3, 4, 3, padding=1, steps=T, bits=None, prune_spatial=0.35, prune_precision="ternary",
                     sparse_below=1.0)  # always the pruned path
    x = (torch.rand(T * B, 3, 6, 6, generator=torch.Generator().manual_seed(6)) > 0.6).float()
    cm = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    y = conv(x, cm)
    dense = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1).reshape(T, B, 4, 6, 6)
    keep = spatial_keep(dense[0] * cm[:, :, None, None], 0.35, "ternary")  # (B, 1, 6, 6)
    ref = dense * cm[None, :, :, None, None]
    ref[1:] = ref[1:] * keep[None]
    assert int((keep.reshape(B, -1) == 0).sum(1).tolist()[0]) == 12
    assert torch.allclose(y.reshape(ref.shape), ref, atol=1e-5)
    done, full, kept = conv.mac_work.tolist()
    assert full == T * B * 4 * 36 * 27
    assert kept == (3 + 1) * 36 * 27 + (T - 1) * (3 + 1) * 24 * 27  # the kept (channel, position) pairs
    # executed: both samples padded to the larger kept count, 3 rows (no per-sample loop)
    assert done == B * 3 * 36 * 27 + (T - 1) * B * 3 * 24 * 27
    # above the density switch: the dense conv then the masks, same output, every MAC executed
    conv.sparse_below, conv.mac_work[:] = 0.0, 0.0
    with torch.no_grad():
        y_dense = conv(x, cm)
    assert torch.allclose(y_dense.reshape(ref.shape), ref, atol=1e-5)
    assert conv.mac_work.tolist() == [full, full, kept]
    # the gradient of the pruned path equals the dense-then-masked one
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7))
    (y.reshape(ref.shape) * g).sum().backward()
    w_grad = conv.weight.grad.clone()
    conv.weight.grad = None
    w = conv.weight
    dense = torch.nn.functional.conv2d(x, w, conv.bias, padding=1).reshape(T, B, 4, 6, 6)
    later = keep[None].expand(T - 1, -1, -1, -1, -1)
    masked = dense * cm[None, :, :, None, None] * torch.cat([torch.ones(1, B, 1, 6, 6), later])
    (masked * g).sum().backward()
    assert torch.allclose(w_grad, conv.weight.grad, atol=1e-4)


def test_gate_reads_the_previous_layer_prior_and_the_conv_skips_masked_channels() -> None:
    # eq 23: layer 2's mask comes from layer 1's membrane prior Q(h1[0]) (2 channels), not from
    # layer 2's own membrane; conv2 then computes only the kept channels of each sample (keep-skip rule)
    snn, x = _tiny(SpQuantConfig(T=2, weight_bits=None, spatial=0.0, gate=True, gate_rule="keep-skip"), _Tiny2)
    first, neuron = [m for m in snn.body.modules() if isinstance(m, SpQuantNeuron)]
    conv2 = [m for m in snn.body.modules() if isinstance(m, PoTConv2d)][1]
    gate = neuron.gate
    seen = {}
    hook = first.register_forward_hook(lambda m, inp, out: seen.__setitem__("h", inp[0].detach().clone()))
    with torch.no_grad():
        snn(x)
    prior1 = quantize_membrane(seen["h"][: x.shape[0]], -1, 1)  # layer 1's first step, ternary
    pooled = torch.nn.functional.avg_pool2d(prior1, 2)[:, 0].mean(dim=(1, 2))  # (B,)
    assert len(set(pooled.tolist())) > 1
    lo, nxt = sorted(set(pooled.tolist()))[:2]
    split = (lo + nxt) / 2  # between the two smallest values: no sample sits on the threshold
    with torch.no_grad():  # keep logit of every channel: pooled prior channel 0 minus the median, + logit(0.47)
        gate.conv.weight.zero_()
        gate.conv.weight[:, 0] = 1.0
        gate.conv.bias.fill_(math.log(0.47 / 0.53) - split)
    snn.reset_stats()
    conv2.sparse_below = 1.0  # the pruned path whatever the kept share
    before = conv2.mac_work.clone()
    spikes = {}
    hook2 = first.register_forward_hook(lambda m, inp, out: spikes.__setitem__("s", out.detach()))
    with torch.no_grad(), snn.recording():
        out = snn(x)
    hook.remove()
    hook2.remove()
    live = int((spikes["s"].abs().amax(dim=(0, 2, 3)) > 0).sum())  # input channels with a spike (others skipped)
    expected = torch.sigmoid(pooled - split + math.log(0.47 / 0.53))[:, None].expand(-1, 3)
    assert torch.allclose(gate.last_keep_value, expected, atol=1e-6)
    kept = int((pooled > split).sum()) * 3
    assert 0 < kept < expected.numel()  # some samples gated off, some on
    done, full, kept_macs = (conv2.mac_work - before).tolist()
    assert full == 2 * 6 * 3 * 16 * 18  # T x B x C_out x positions x fan-in
    assert kept_macs == 2 * kept * 16 * 9 * live  # T steps x kept (sample, channel) pairs x positions x fan-in
    # executed: one batched product over every sample, each padded to the largest kept count (3 rows)
    assert done == 2 * 6 * 3 * 16 * 9 * live
    fl = flops(snn)  # per image: conv1 dense (T x 2 channels x 16 positions x 9) + conv2's kept outputs
    assert fl["conv_macs_kept"] == pytest.approx((2 * 6 * 2 * 16 * 9 + kept_macs) / 6)
    assert fl["conv_macs_executed"] == pytest.approx((2 * 6 * 2 * 16 * 9 + done) / 6)
    assert torch.isfinite(out).all()
    assert neuron.work()["channel_sparsity"] == pytest.approx(1 - kept / expected.numel())


@pytest.mark.parametrize("precision", ["none", "ternary"])
def test_rounding_map_makes_a_t2_layer_round(precision: str) -> None:
    # tau = 0.5: full precision (2/3, 1/2), integer membrane (1, 1/4); constant activation x in
    # threshold units then gives round(2x) spikes (clipped to 0..2) where plain y = x floors
    from snnconvert.methods.spquant.neuron import rounding_map

    gain, offset = rounding_map(2, 0.5, precision)
    assert (gain, offset) == pytest.approx((2 / 3, 0.5) if precision == "none" else (1.0, 0.25))
    assert rounding_map(4, 0.5, precision) == (1.0, 0.0)
    x = torch.tensor([0.0, 0.2, 0.26, 0.5, 0.74, 0.76, 0.9, 1.0, 1.3])
    for reset in ("hard", "soft"):
        neuron = SpQuantNeuron(2, reset=reset, precision=precision, input_gain=gain, input_offset=offset)
        with torch.no_grad():
            spikes = neuron(x.repeat(2, 1)).reshape(2, -1).sum(0)
        assert spikes.tolist() == torch.clamp(torch.floor(2 * x + 0.5), 0, 2).tolist()
