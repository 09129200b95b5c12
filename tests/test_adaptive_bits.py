"""Tests of adaptive bit allocation (paper 002 §4, A.3, A.9): widths, STE gradients, eq 22,
step-size renewal, squeezed per-layer T, save / load and the `finetune` flags."""

from __future__ import annotations

import copy
import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from snnconvert.codings import ConversionInputs, get_coding
from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.finetune import FinetuneConfig, finetune
from snnconvert.finetune.methods import method_config
from snnconvert.graph import prepare as prepare_graph
from snnconvert.methods.multibit.adaptive_bits import (
    averages,
    learned_latency,
    prepare,
    refresh_info,
    regulating_loss,
    renewal_step,
)
from snnconvert.methods.multibit.adaptive_neuron import AdaptiveMultiBitNeuron
from snnconvert.methods.multibit.coding import MultiBitConfig
from snnconvert.methods.multibit.learnable import (
    LN2,
    AdaptiveSynapseConv2d,
    LearnableWeights,
    grid_search,
    quant_error,
    quantize,
    width,
)
from snnconvert.methods.multibit.metrics import allocation, allocation_plot, metrics
from snnconvert.pipeline import quantize as quantize_model
from snnconvert.pipeline import save, to_snn

CODING = get_coding("multibit")


def _net(T=(2, 1, 3), bits=4, **options):
    """A converted 2-conv multi-bit SNN (float64) on 8x8 RGB images, and a batch of images."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    spec = InputSpec(channels=3, size=(8, 8))
    gm = prepare_graph(model, spec)
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    cfg = MultiBitConfig(T=list(T), bits_spike=bits, squeeze="always", dtype="float64", **options)
    snn = CODING.convert(ConversionInputs(gm, None, spec, [(x, torch.zeros(16, dtype=torch.long))]), cfg)
    return snn, x


def _config(**options):
    return method_config("adaptive_bits", options)


# --------------------------------------------------------------------------- rounding and STE (eqs 10-12, 18, 20, 21)


def test_width_rounds_and_passes_gradient_inside_the_clip() -> None:
    raw = torch.tensor([0.3, 1.49, 1.5, 2.7, 6.2, 7.0], requires_grad=True)
    b = width(raw, 6)
    assert b.tolist() == [1.0, 1.0, 2.0, 3.0, 6.0, 6.0]  # round(clip(., 1, 6)), half up
    b.sum().backward()
    assert raw.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]  # straight through inside [1, 6]


def test_spike_quantizer_values_and_gradients_by_hand() -> None:
    # unsigned, B = 2: q in 0..3. u = -0.4 (below), 0.5 (tie up), 1.4, 2.6, 3.2 (above), 5.0 (above)
    u = torch.tensor([-0.4, 0.5, 1.4, 2.6, 3.2, 5.0], dtype=torch.float64, requires_grad=True)
    bits = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    g = 0.25
    q = quantize(u, bits, signed=False, g=g)
    assert q.tolist() == [0, 1, 1, 3, 3, 3]
    grad = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    q.backward(grad)
    # eq 21: 1 inside [0, 3], 0 outside
    assert u.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 0.0, 0.0]
    # eq 18: g * sum over u > q_max of grad * (q_max + 1) ln 2 = 0.25 * (5 + 6) * 4 ln 2
    assert bits.grad.item() == pytest.approx(0.25 * 11 * 4 * LN2, rel=1e-12)
    # signed, B = 3: q in -3..3; below q_min counts with sign -1 (A.11 / eq 20)
    u2 = torch.tensor([-4.5, -2.5, 0.2, 3.7], dtype=torch.float64, requires_grad=True)
    b2 = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    q2 = quantize(u2, b2, signed=True, g=1.0)
    assert q2.tolist() == [-3, -3, 0, 3]  # -2.5 -> -3: half away from zero
    q2.backward(torch.ones(4, dtype=torch.float64))
    assert u2.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert b2.grad.item() == pytest.approx((-1 + 1) * 4 * LN2, abs=1e-12)
    # binary weights (B_w = 1): sign, no zero level
    assert quantize(torch.tensor([-0.2, 0.0, 0.3]), torch.tensor(1.0), signed=True, binary=True).tolist() == \
        [-1.0, 1.0, 1.0]


def test_weight_quantizer_lsq_gradients_a9_and_width_gradient_eq20() -> None:
    syn = AdaptiveSynapseConv2d(1, 3, 1, bias=False, bits_bound=6, init_bits=3.0, dtype=torch.float64)
    with torch.no_grad():
        syn.weight.copy_(torch.tensor([0.26, -0.9, 0.06], dtype=torch.float64).view(3, 1, 1, 1))
        syn.weight_step.fill_(0.1)
    wq = syn.quantized_weight()  # B = 3: q in -3..3, step 0.1: 2.6 -> 3, -9 -> -3, 0.6 -> 1
    assert wq.view(-1).tolist() == pytest.approx([0.3, -0.3, 0.1])
    wq.sum().backward()
    g = 1 / math.sqrt(3 * 3)  # 1 / sqrt(N q_max)
    # A.9: round(u) - u inside, q_min outside: (3 - 2.6) + (-3) + (1 - 0.6) = -2.2
    assert syn.weight_step.grad.item() == pytest.approx(g * -2.2, rel=1e-9)
    # eq 20: only -0.9 is outside: sign -1, times S_q (q_max + 1) ln 2
    assert syn.bits_hat.grad.item() == pytest.approx(g * -1 * 0.1 * 4 * LN2, rel=1e-9)
    assert syn.weight.grad.view(-1).tolist() == [1.0, 0.0, 1.0]


def test_neuron_threshold_gets_the_lsq_gradient_a7() -> None:
    neuron = AdaptiveMultiBitNeuron(bits_bound=6, steps_bound=1, init_bits=2.0, init_steps=1.0).double()
    with torch.no_grad():
        neuron.threshold.fill_(0.5)
    current = torch.tensor([[0.35, 0.8, 2.0]], dtype=torch.float64)  # u = 0.7, 1.6, 4 (B = 2: q_max 3)
    out = neuron(current)
    assert out.tolist() == [[0.5, 1.0, 1.5]]  # theta * clip(round(u))
    out.sum().backward()
    g = 1 / math.sqrt(3 * 3)
    # A.7 per element: (1 - 0.7) + (2 - 1.6) + q_max = 3.7
    assert neuron.threshold.grad.item() == pytest.approx(g * 3.7, rel=1e-9)
    # eq 18 with g: one element above q_max: (q_max + 1) ln 2 * dL/dS = 4 ln 2 * theta
    assert neuron.bits_hat.grad.item() == pytest.approx(g * 4 * LN2 * 0.5, rel=1e-9)


# --------------------------------------------------------------------------- squeezing (eq 13, A.6)


def test_per_layer_T_with_squeezing_equals_the_unsqueezed_computation() -> None:
    """Each layer emits the mean of its T_l spike frames as one frame; the converted network runs
    every frame (squeeze="always"). Synapses are linear, so both give the same logits."""
    snn, x = _net(T=(2, 1, 3))
    with torch.no_grad():
        reference = snn(x)
    model = prepare(copy.deepcopy(snn), _config(init_bits="4/4/3", quantize_weights=False))
    with torch.no_grad():
        for neuron, steps in zip(model.neurons().values(), (2, 1, 3), strict=True):
            neuron.steps_hat.fill_(steps)
        out = model(x)
    # rtol 1e-7: the converted decoder's 1/3 weights are float32 values (ones(3) / 3) cast to float64
    torch.testing.assert_close(out, reference, rtol=1e-7, atol=1e-12)
    assert [n.steps for n in model.neurons().values()] == [2, 1, 3]
    assert model.decoder.weights.numel() == 1  # one frame per layer


class _Residual(nn.Module):
    """conv-relu, conv-relu-conv, residual add, relu, linear: a join of branches with their own T."""

    def __init__(self) -> None:
        super().__init__()
        self.c0, self.c1, self.c2 = (nn.Conv2d(c, 4, 3, padding=1) for c in (3, 4, 4))
        self.r0, self.r1, self.r2 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.r0(self.c0(x))
        return self.fc(torch.flatten(self.r2(self.c2(self.r1(self.c1(a))) + a), 1))


@pytest.mark.parametrize(("steps", "latency"), [
    # encoder 1, r0 2 (no wait), r1 waits 2 - 1 = 1, the add waits r0's 2 frames (+1, both branches at
    # step 1), r2 waits 3 - 1 = 2 (step 3), then 1 output step: 3 + 1 = 4
    ((1, 2, 3, 1), 4),
    # r0 waits 3 - 1 = 2, r1 none (T_in 1), the add joins 2 frames with 1 (wait 0), r2 waits 2 - 1 = 1
    # (step 3), then 2 output steps: 5
    ((3, 1, 2, 2), 5),
])
def test_info_follows_the_learned_T(steps: tuple[int, ...], latency: int) -> None:
    """After the widths change, ``info`` (latency, T, frames) describes the learned per-layer T: the
    latency the converter reports for the same T with squeeze="always"."""
    torch.manual_seed(0)
    spec = InputSpec(channels=3, size=(8, 8))
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    gm = prepare_graph(_Residual(), spec)

    def convert(T: tuple[int, ...]):
        cfg = MultiBitConfig(T=list(T), bits_spike=4, squeeze="always", dtype="float64")
        return CODING.convert(ConversionInputs(gm, None, spec, [(x, torch.zeros(4, dtype=torch.long))]), cfg)

    reference = convert(steps)
    assert reference.info["latency"] == latency
    model = prepare(convert((1, 1, 1, 1)), _config(init_bits="4/4/1", bounds="6/6/3"))
    assert model.info["latency"] == 1 and model.info["T"] == 1 and model.info["frames"] == 1
    with torch.no_grad():
        for neuron, t in zip(model.neurons().values(), steps, strict=True):
            neuron.steps_hat.fill_(t)
    refresh_info(model)
    assert learned_latency(model) == (latency, latency - steps[-1])
    assert model.info["latency"] == latency and model.info["T_layers"] == list(steps)
    assert model.info["latency_terms"] == reference.info["latency_terms"]
    assert model.info["squeeze_steps"] == reference.info["squeeze_steps"] and model.info["frames"] == 1
    assert [r["T"] for r in model.info["adaptive_bits"]["layers"]] == [steps[0], steps[1], steps[2], steps[3]]


def test_needs_squeezed_conversion_for_T_above_1() -> None:
    snn, _ = _net(T=(2, 2, 2))
    snn.info["squeeze"] = "changes"
    with pytest.raises(SnnConvertError, match="squeeze always"):
        prepare(copy.deepcopy(snn), _config())


def test_flooring_neuron_option_eq5() -> None:
    neuron = AdaptiveMultiBitNeuron(steps_bound=1, init_bits=2.0, init_steps=1.0, rounding="floor").double()
    out = neuron(torch.tensor([[0.7, 1.6, 2.99, 9.0]], dtype=torch.float64))
    assert out.tolist() == [[0.0, 1.0, 2.0, 3.0]]


# --------------------------------------------------------------------------- regulating loss (eq 22)


def test_widths_move_toward_the_target_under_eq22() -> None:
    snn, x = _net(T=(2, 2, 2))
    cfg = _config(target_bits="2/2/1", init_bits="4/4/2", renewal="none")
    model = prepare(copy.deepcopy(snn), cfg)
    start = {k: float(v.detach()) for k, v in averages(model).items()}
    assert start == {"W": 4.0, "S": 4.0, "T": 2.0}
    widths = [p for n, p in model.named_parameters() if n.endswith(("bits_hat", "steps_hat"))]
    opt = torch.optim.Adam(widths, lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        regulating_loss(model, cfg).backward()
        opt.step()
    end = {k: float(v.detach()) for k, v in averages(model).items()}
    assert end == {"W": 2.0, "S": 2.0, "T": 1.0}
    assert float(regulating_loss(model, cfg).detach()) == 0.0


def test_sgd_width_update_keeps_eq22_layer_size_weighting_by_hand() -> None:
    from snnconvert.methods.multibit.adaptive_bits import sgd_parameters, sgd_step

    snn, _ = _net(T=(1, 1, 1))
    cfg = _config(target_bits="2/4/1", init_bits="4/4/1", lambda_w=0.04, lambda_s=0.0, lambda_t=0.0)
    model = prepare(copy.deepcopy(snn), cfg)
    synapses = [m for m in model.modules() if isinstance(m, LearnableWeights)]
    sizes = [float(m.weight.numel()) for m in synapses]  # 3*4*9 = 108, 4*4*9 = 144, 256*5 = 1280
    assert sizes == [108.0, 144.0, 1280.0]
    regulating_loss(model, cfg).backward()
    # eq 22: d/dB^_l of 0.04 (W - 2)^2 with W = sum N_l B_l / sum N = 4: 2 * 0.04 * 2 * N_l / 1532
    grads = [2 * 0.04 * 2.0 * n / sum(sizes) for n in sizes]
    assert [float(m.bits_hat.grad) for m in synapses] == pytest.approx(grads, rel=1e-6)
    assert all(any(p is q for q in sgd_parameters(model)) for m in synapses for p in (m.bits_hat, m.weight_step))
    assert sgd_step(model, lr=0.1, momentum=0.9) >= len(synapses)
    # first step: v = g, B^ -= 0.1 g, so a layer's step is in proportion to its size (Adam's is ~lr for all)
    assert [float(m.bits_hat.detach()) for m in synapses] == pytest.approx([4.0 - 0.1 * g for g in grads], rel=1e-6)
    assert all(m.bits_hat.grad is None for m in synapses)  # cleared for the next backward
    for m, g in zip(synapses, grads, strict=True):  # second step, same gradient: v = 0.9 g + g
        m.bits_hat.grad = torch.full_like(m.bits_hat, g)
    sgd_step(model, lr=0.1, momentum=0.9)
    assert [float(m.bits_hat.detach()) for m in synapses] == pytest.approx(
        [4.0 - 0.1 * g - 0.1 * 1.9 * g for g in grads], rel=1e-6)


def test_target_ramp_moves_the_targets_linearly() -> None:
    cfg = _config(target_bits="2/2/1", init_bits="4/4/2", target_ramp_steps=4)
    assert cfg.targets_at(0) == (4.0, 4.0, 2.0)
    assert cfg.targets_at(2) == (3.0, 3.0, 1.5)
    assert cfg.targets_at(4) == cfg.targets_at(100) == (2.0, 2.0, 1.0)
    assert _config(target_bits="2/2/1").targets_at(0) == (2.0, 2.0, 1.0)  # 0: the paper's fixed targets
    snn, x = _net(T=(1, 1, 1))
    model = prepare(copy.deepcopy(snn), _config(target_bits="2/4/1", init_bits="4/4/1", target_ramp_steps=2,
                                                 lambda_s=0.0, lambda_t=0.0, renewal="none"))
    from snnconvert.finetune.methods import get_method

    method = get_method("adaptive_bits")
    ramp = _config(target_bits="2/4/1", init_bits="4/4/1", target_ramp_steps=2, lambda_s=0.0, lambda_t=0.0,
                   renewal="none")
    method.before_step(model, ramp, 1, x)  # halfway: W* = 3, loss 0.04 (4 - 3)^2
    assert float(regulating_loss(model, ramp).detach()) == pytest.approx(0.04)


def test_sgd_widths_are_kept_out_of_the_engines_optimizer(q_digits) -> None:
    from snnconvert.finetune.loop import _regrouped
    from snnconvert.finetune.methods import active_methods

    snn = to_snn(q_digits, "multibit", T=1, bits_spike=4)
    for optimizer, owned in (("sgd", True), ("adam", False)):
        methods = active_methods({"adaptive_bits": {"init_bits": "4/4/1", "bits_optimizer": optimizer}})
        model = methods[0].prepare(copy.deepcopy(snn))
        _, groups = _regrouped(model, methods)
        rest = {id(p) for v in groups.values() for p in v}
        widths = [m.bits_hat for m in model.modules() if isinstance(m, (LearnableWeights, AdaptiveMultiBitNeuron))]
        steps = [m.weight_step for m in model.modules() if isinstance(m, LearnableWeights)]
        assert all(id(p) not in rest for p in widths)  # sgd: the method's own; adam: its own Adam group
        assert all((id(p) not in rest) == owned for p in steps)
        assert bool(methods[0].parameter_groups(model)) == (not owned)


def test_regulating_loss_value_by_hand() -> None:
    snn, _ = _net(T=(1, 1, 1))
    cfg = _config(target_bits="1/2/1", init_bits="3/4/1", lambda_w=0.5, lambda_s=0.25, lambda_t=1.0)
    model = prepare(copy.deepcopy(snn), cfg)
    # 0.5 (3 - 1)^2 + 1.0 (1 - 1)^2 + 0.25 (4 - 2)^2 = 3
    assert float(regulating_loss(model, cfg).detach()) == pytest.approx(3.0)
    assert regulating_loss(model, _config(learn_bits=False)) is None


# --------------------------------------------------------------------------- renewal (algorithms 1-2)


def test_grid_search_algorithm2_by_hand() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, 10.0], dtype=torch.float64)
    # 1 bit unsigned (levels 0, V): K = 10 candidates V = 1..10; MSE is smallest at V = 2 (errors 0,1,0,64 / 4
    # = 16.25) vs V = 10: (0, 1, 4, 0) / 4 = 1.25 -- the best of all candidates
    v_max, v_min = grid_search(x, 0, 1, signed=False, iterations=10)
    scores = {v: quant_error(x, v, 0, 1, signed=False) for v in range(1, 11)}
    assert (v_max, v_min) == (float(min(scores, key=scores.get)), 0.0)


def test_renewal_fires_when_a_weight_width_drops_and_does_not_raise_the_error() -> None:
    torch.manual_seed(3)
    syn = AdaptiveSynapseConv2d(8, 8, 3, bias=False, bits_bound=6, init_bits=4.0, dtype=torch.float64)
    syn.init_step()
    assert not syn.observe()  # width unchanged: nothing to renew
    with torch.no_grad():
        syn.bits_hat.fill_(2.0)  # 4 -> 2 bits
    step_before = float(syn.weight_step.detach())
    mse_before = quant_error(syn.weight.detach(), step_before, -1, 1, signed=True)
    assert syn.observe()
    mse_after = quant_error(syn.weight.detach(), float(syn.weight_step.detach()), -1, 1, signed=True)
    assert mse_after <= mse_before
    assert float(syn.weight_step.detach()) != step_before and int(syn.recorded_bits) == 2
    assert not syn.observe()  # recorded: fires once per change


def test_renewal_of_activations_fires_on_a_spike_width_drop() -> None:
    snn, x = _net(T=(1, 1, 1))
    cfg = _config(target_bits="1/1/1", init_bits="4/4/1", renewal="both")
    model = prepare(copy.deepcopy(snn), cfg)
    # the first batch initialises every neuron layer's threshold from data (Algorithm A.9 line 2)
    assert renewal_step(model, cfg, x) == {"weights": 0, "activations": 3}
    assert renewal_step(model, cfg, x) == {"weights": 0, "activations": 0}  # nothing changed
    hidden = list(model.neurons().values())[1]
    with torch.no_grad():
        hidden.bits_hat.fill_(2.0)
    potentials = []
    hook = model.body.get_submodule("0").register_forward_hook(lambda _m, _i, out: potentials.append(out.detach()))
    with torch.no_grad():
        model(x)
    hook.remove()
    v = potentials[0]  # T = 1: the membrane potential v^1 is the input current
    before = quant_error(v, float(hidden.threshold[0].detach()), 0, 3, signed=False)
    fired = renewal_step(model, cfg, x)
    assert fired == {"weights": 0, "activations": 1}
    after = quant_error(v, float(hidden.threshold[0].detach()), 0, 3, signed=False)
    assert after <= before


def test_renewal_switches_off_near_the_target_and_mode_none_never_fires() -> None:
    snn, x = _net(T=(1, 1, 1))
    cfg = _config(target_bits="1/1/1", init_bits="4/4/1", renewal="both")
    model = prepare(copy.deepcopy(snn), cfg)
    with torch.no_grad():
        for p in [p for n, p in model.named_parameters() if n.endswith("bits_hat")]:
            p.fill_(1.0)  # at the target: within 24 % of the initial gap
    # renewal is switched off (weights changed 4 -> 1 but are not renewed); the initialisation still runs
    assert renewal_step(model, cfg, x) == {"weights": 0, "activations": 3}
    assert all(float(m.renewal) == 0.0 for m in model.modules() if hasattr(m, "renewal"))
    with torch.no_grad():
        list(model.neurons().values())[1].bits_hat.fill_(2.0)
    assert renewal_step(model, cfg, x) == {"weights": 0, "activations": 0}
    none_cfg = _config(renewal="none", init_bits="4/4/1")
    none = prepare(copy.deepcopy(snn), none_cfg)
    assert renewal_step(none, none_cfg, x) == {"weights": 0, "activations": 3}  # initialisation only
    with torch.no_grad():
        list(none.neurons().values())[1].bits_hat.fill_(2.0)
        for syn in [m for m in none.modules() if hasattr(m, "weight_step")]:
            syn.bits_hat.fill_(2.0)
    assert renewal_step(none, none_cfg, x) == {"weights": 0, "activations": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_images(rank: int) -> torch.Tensor:
    """Each rank's own shard: rank 1's images are brighter, so its ranges differ."""
    return torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(10 + rank)) * (1.0 + rank)


def _renewal_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.endswith(("threshold", "weight_step", "run_max", "run_min", "recorded_bits"))}


def _renew_twice(model: nn.Module, cfg, images: torch.Tensor) -> dict[str, list[int]]:
    """The first-batch initialisation, then a renewal after a spike width and a weight width drop."""
    first = renewal_step(model, cfg, images)
    with torch.no_grad():
        list(model.neurons().values())[1].bits_hat.fill_(2.0)
        next(m for m in model.modules() if hasattr(m, "weight_step")).bits_hat.fill_(2.0)
    second = renewal_step(model, cfg, images)
    return {"first": [first["weights"], first["activations"]], "second": [second["weights"], second["activations"]]}


def _renewal_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from snnconvert.distributed import DistContext

    ctx = DistContext.from_env()
    ctx.init(torch.device("cpu"))
    try:
        snn, _ = _net(T=(1, 1, 1))
        cfg = _config(target_bits="1/1/1", init_bits="4/4/1", renewal="both")
        model = prepare(snn, cfg)
        fired = _renew_twice(model, cfg, _rank_images(rank))
        torch.save({"state": _renewal_state(model), "fired": fired}, Path(out) / f"rank{rank}.pt")
    finally:
        ctx.barrier()
        ctx.close()


@pytest.mark.slow  # two spawned processes: about 25 s of CPU, more on a busy machine
def test_renewal_stays_synchronized_under_two_processes(tmp_path: Path) -> None:
    """Two gloo ranks renew on different shards and end with equal steps and running ranges: the
    widest range of the two shards (eq 25 over the global batch)."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_renewal_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a["fired"] == b["fired"] == {"first": [0, 3], "second": [1, 1]}
    assert a["state"].keys() == b["state"].keys() and len(a["state"]) > 0
    for key, value in a["state"].items():
        torch.testing.assert_close(b["state"][key], value, atol=0.0, rtol=0.0, msg=key)
    # one process per shard (no group): the two shards alone give different steps ...
    cfg = _config(target_bits="1/1/1", init_bits="4/4/1", renewal="both")
    alone = []
    for rank in (0, 1):
        snn, _ = _net(T=(1, 1, 1))
        model = prepare(snn, cfg)
        _renew_twice(model, cfg, _rank_images(rank))
        alone.append(_renewal_state(model))
    assert not torch.equal(alone[0]["encoder.threshold"], alone[1]["encoder.threshold"])
    # ... and the synchronized encoder (its potential is the image itself) took the wider of the two ranges
    wider = torch.maximum(alone[0]["encoder.run_max"], alone[1]["encoder.run_max"])
    assert torch.equal(a["state"]["encoder.run_max"], wider)
    assert bool((a["state"]["encoder.run_max"][:1] > alone[0]["encoder.run_max"][:1]).all())


# --------------------------------------------------------------------------- engine, artifacts, reports, CLI


@pytest.fixture(scope="module")
def q_digits():
    return quantize_model("lenet5", data="digits", eval_limit=0)


def test_zero_step_training_evaluates_identically_and_round_trips(q_digits, tmp_path: Path) -> None:
    snn = to_snn(q_digits, "multibit", T=1, bits_spike=4)
    cfg = FinetuneConfig(epochs=0, methods={"adaptive_bits": {"init_bits": "4/4/1", "target_bits": "2/2/1"}})
    a = finetune(q_digits, snn, cfg, data="digits")
    b = finetune(q_digits, snn, cfg, data="digits")
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a.snn(x), b.snn(x))
    # with the converted widths (4-bit spikes, T = 1, weights left as they are) nothing changes at all
    same = finetune(q_digits, snn, FinetuneConfig(epochs=0, methods={"adaptive_bits": {
        "init_bits": "4/4/1", "quantize_weights": False}}), data="digits")
    with torch.no_grad():
        assert torch.equal(same.snn(x), snn(x))
    path = save(tmp_path / "ab.snnc", q_digits, a.snn)
    from snnconvert.artifact import load_artifact

    loaded = load_artifact(path).models["snn"]
    with torch.no_grad():
        assert torch.equal(loaded(x), a.snn(x))
    with torch.no_grad(), loaded.recording():
        loaded(x)
    m = metrics(loaded)
    assert m["bits_weight_avg"] == 4.0 and m["bits_spike_avg"] == 4.0 and m["T_avg"] == 1.0
    table = allocation(loaded)
    assert [r["W"] for r in table["layers"]] == [4] * len(table["layers"])
    assert all(r["S_steps"] == [4] and r["T"] == 1 for r in table["layers"])
    (png,) = allocation_plot(table, tmp_path, "learned allocation")
    assert png.is_file() and png.stat().st_size > 1000
    assert CODING.report("allocation").compute(loaded) == table


def test_a_short_run_trains_widths_and_records_averages(q_digits) -> None:
    snn = to_snn(q_digits, "multibit", T=1, bits_spike=4)
    cfg = FinetuneConfig(epochs=1, max_batches_per_epoch=4, batch_size=32, val_limit=0, lr=1e-3, device="cpu",
                         methods={"adaptive_bits": {"init_bits": "4/4/1", "target_bits": "1/1/1",
                                                    "bits_lr": 0.2, "renewal": "both", "bits_optimizer": "adam"}})
    result = finetune(q_digits, snn, cfg, data="digits")  # adam: widths drop below 4 within 4 steps
    row = result.history[-1]
    assert row["avg_W"] < 4.0 and row["avg_S"] < 4.0 and row["avg_T"] == 1.0
    assert result.snn.info["adaptive_bits"]["layers"]
    # info describes the learned widths: T = 1 everywhere, one frame, latency 1
    assert result.snn.info["latency"] == learned_latency(result.snn)[0] == 1 and result.snn.info["frames"] == 1
    assert result.snn.info["bits_spike_layers"] == [round(float(n.mean_bits().detach()), 3)
                                                    for n in result.snn.neurons().values()]
    for neuron in snn.neurons().values():  # the input SNN is untouched
        assert not isinstance(neuron, AdaptiveMultiBitNeuron)
    cfg.methods["adaptive_bits"].pop("bits_optimizer")  # the default, A.5.1's SGD: slow, scaled steps
    sgd = finetune(q_digits, snn, cfg, data="digits").snn
    hats = [float(m.bits_hat.detach()) for m in sgd.modules() if isinstance(m, LearnableWeights)]
    assert sum(hats) / len(hats) < 4.0 and max(hats) - min(hats) > 1e-3  # moved, each by its own gradient


def _cli_app() -> typer.Typer:
    from snnconvert.cli.app import app
    from snnconvert.cli.finetune_cmd import register

    if not any(c.name == "finetune" for c in app.registered_commands):
        register(app)
    return app


def test_cli_adaptive_bits_flags(q_digits, tmp_path: Path) -> None:
    source = save(tmp_path / "snn-multibit-1.snnc", q_digits,
                             to_snn(q_digits, "multibit", T=1, bits_spike=4))
    result = CliRunner().invoke(_cli_app(), [
        "finetune", "--input", str(source), "--data", "digits", "--epochs", "1", "--max-batches", "1",
        "--batch-size", "16",
        "--val-limit", "0", "--device", "cpu", "--adaptive-bits", "--target-bits", "2/2/1",
        "--method-option", "adaptive_bits.init_bits=4/4/1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    from snnconvert.artifact import load_artifact

    info = load_artifact(Path(summary["artifact"])).manifest["snn"]["info"]
    assert info["finetune"]["config"]["methods"] == {
        "adaptive_bits": {"target_bits": "2/2/1", "init_bits": "4/4/1"}}
    assert "avg_W" in summary["history"][0]
    bad = CliRunner().invoke(_cli_app(), ["finetune", "--input", str(source), "--data", "digits", "--epochs", "1",
                                          "--target-bits", "2/2"])
    assert bad.exit_code == 1 and "--target-bits '2/2' is not possible" in bad.output
