"""DTSS: time-step masks (eqs 4-7), the eq-6 surrogate, mask loss (eq 8), T_avg (eq 3),
skipped steps at inference, the training method and the dtss report."""

from __future__ import annotations

import pytest
import torch

from snnconvert.errors import SnnConvertError
from snnconvert.finetune import FinetuneConfig, finetune
from snnconvert.finetune.methods import method_config
from snnconvert.methods.dtss.mask import DTSSMask, dtss_masks, initial_scores, mask_values, t_avg
from snnconvert.methods.dtss.report import dtss_summary, energy_breakdown, masks_off, measured_run
from snnconvert.methods.dtss.training import insert_masks, kept_steps, mask_loss, record
from snnconvert.neurons.surrogates import get_surrogate
from snnconvert.pipeline import load, quantize, save, to_snn
from snnconvert.simulate.synapse import SynapseConv2d, SynapseLinear


@pytest.fixture(scope="module")
def q_digits():
    return quantize("lenet5", data="digits", eval_limit=0)


@pytest.fixture(scope="module")
def snn4(q_digits):
    return to_snn(q_digits, coding="rate", T=4)


def _masked(q_digits, kept: dict[int, int] | None = None):
    """The rate T=4 LeNet with DTSS masks; mask i keeps ``kept[i]`` steps."""
    snn = to_snn(q_digits, coding="rate", T=4)
    insert_masks(snn, 4, 4)
    for i, m in enumerate(dtss_masks(snn).values()):
        if kept and i in kept:
            with torch.no_grad():
                m.scores.copy_(initial_scores(4, kept[i]))
    return snn


def _images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- eqs 4-6


def test_box_surrogate_matches_eq6_hand_values() -> None:
    box = get_surrogate("box:1")
    ts = torch.tensor([-0.5, 0.0, 1e-6, 0.5, 1.0, 1.999, 2.0, 2.5])
    assert box.grad(ts - 1.0).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert box.spec == "box:1" and get_surrogate(box.spec) == box


@pytest.mark.parametrize(("tp", "tm", "grad"), [
    # TS = [1.9, 1.7, 1.2, 0.3]: all inside 0 < TS < 2; d sum(TM) / d TP_i = #{j <= i} = i + 1
    ([0.2, 0.5, 0.9, 0.3], [1, 1, 1, 0], [1, 2, 3, 4]),
    # TS = [2.5, 1.5, 1.5, 1.5]: the box is 0 at t = 0, 1 after
    ([1.0, 0.0, 0.0, 1.5], [1, 1, 1, 1], [0, 1, 2, 3]),
    # TS = [0.6, 0.4, 0.2, 0.0]: TS = 0 lies outside the open box
    ([0.2, 0.2, 0.2, 0.0], [0, 0, 0, 0], [1, 2, 3, 3]),
])
def test_mask_and_its_gradient_by_hand(tp, tm, grad) -> None:
    scores = torch.tensor(tp, requires_grad=True)
    ts, mask = mask_values(scores)
    assert mask.tolist() == tm
    mask.sum().backward()
    assert scores.grad.tolist() == pytest.approx(grad, abs=0)


def test_mask_is_non_increasing_over_t() -> None:
    gen = torch.Generator().manual_seed(1)
    m = DTSSMask(6, init_steps=3)
    opt = torch.optim.SGD([m.scores], lr=0.7)
    for _ in range(200):  # random pushes, with the projection the method applies after each step
        opt.zero_grad()
        (m.mask() * torch.randn(6, generator=gen)).sum().backward()
        opt.step()
        m.project()
        tm = m.mask().detach()
        assert bool((tm[1:] <= tm[:-1]).all()), tm  # a prefix of ones: no interior gaps
        assert bool((m.scores >= 0).all())
    for raw in torch.randn(200, 6, generator=gen) * 2:  # even negative scores give a prefix (forward clamps)
        tm = mask_values(raw)[1]
        assert bool((tm[1:] <= tm[:-1]).all())


@pytest.mark.parametrize("init", [1, 2, 3, 4])
def test_initial_scores_keep_init_steps_inside_the_surrogate(init: int) -> None:
    ts, tm = mask_values(initial_scores(4, init))
    assert int(tm.sum()) == init and tm[:init].tolist() == [1.0] * init
    assert bool(((ts > 0) & (ts < 2)).all())  # every step can still learn
    with pytest.raises(SnnConvertError):
        initial_scores(4, 5)


def test_t_avg_hand_example() -> None:
    assert t_avg([4, 2, 1, 1]) == 2.0  # eq 3: (4 + 2 + 1 + 1) / 4
    assert t_avg({"a": 3, "b": 2}) == 2.5
    with pytest.raises(SnnConvertError):
        t_avg([])


# ---------------------------------------------------------------- inference: skipped steps


def test_masked_steps_are_skipped_and_cost_nothing(q_digits, monkeypatch) -> None:
    snn = _masked(q_digits, {0: 1, 1: 2})  # relu1 keeps 1 step, relu2 2 steps, the rest all 4
    masks = list(dtss_masks(snn).values())
    assert [m.kept_steps() for m in masks] == [1, 2, 4, 4]
    assert record(snn, method_config("dtss", {}))["T_avg"] == pytest.approx((1 + 2 + 4 + 4) / 4)
    rows: dict[str, list[int]] = {}
    conv_forward, linear = SynapseConv2d._conv_forward, torch.nn.functional.linear
    names = {id(m): n for n, m in snn.body.named_modules()}

    def counting_conv(self, x, w, b):
        rows.setdefault(names[id(self)], []).append(x.shape[0])
        return conv_forward(self, x, w, b)

    monkeypatch.setattr(SynapseConv2d, "_conv_forward", counting_conv)
    images = _images(6)
    with torch.no_grad():
        out_skip = snn(images)
    # conv2 follows relu1 (1 kept step of 4): it ran on 1 x 6 frames, not 4 x 6
    assert rows["conv2"] == [6]
    assert rows["conv1"] == [24]
    monkeypatch.setattr(SynapseConv2d, "_conv_forward", conv_forward)
    # the same network evaluated densely (the training path multiplies by TM, no skipping)
    snn.train()
    with torch.enable_grad():
        out_dense = snn(images)
    snn.eval()
    with torch.enable_grad():  # evaluation mode skips even with gradients on (evaluate runs so)
        assert torch.equal(snn(images), out_skip)
    assert torch.allclose(out_skip, out_dense.detach(), atol=1e-5)
    # OPF: the skipped frames contribute no events: conv2's input events are those of the first
    # step of what the mask received (relu1 -> max-pool -> mask), the 3 skipped steps count 0
    seen: list[torch.Tensor] = []
    hook = masks[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    _, loads = measured_run(snn, images, 6)
    hook.remove()
    frames = seen[0].reshape(4, 6, -1)
    first = float((frames[0] != 0).sum()) / 6
    assert first > 0 and float((frames[1:] != 0).sum()) > 0  # the later steps did carry spikes
    assert loads["conv2"].input_events == pytest.approx(first, abs=1e-9)
    with masks_off(snn):
        _, full = measured_run(snn, images, 6)
    assert full["conv2"].input_events > loads["conv2"].input_events
    assert linear is torch.nn.functional.linear


def test_skipped_linear_synapse_runs_only_kept_frames(monkeypatch) -> None:
    syn = SynapseLinear.from_linear(torch.nn.Linear(3, 2), torch.ones(2, 3), torch.tensor([0.5, -1.0]),
                                    torch.ones(4))
    calls: list[int] = []
    real = torch.nn.functional.linear

    def counting(x, w, b=None):
        calls.append(x.shape[0])
        return real(x, w, b)

    monkeypatch.setattr(torch.nn.functional, "linear", counting)
    m = DTSSMask(4, init_steps=1)
    frames = torch.ones(4 * 2, 3)
    with torch.no_grad():
        y = syn(m(frames))
    assert calls == [2]  # 1 kept step x batch 2
    expected = torch.tensor([[3.5, 2.0]] * 2 + [[0.5, -1.0]] * 6)  # skipped frames: the bias alone
    assert torch.equal(y, expected)


# ---------------------------------------------------------------- the training method


def test_mask_loss_eq8_over_groups(q_digits) -> None:
    snn = _masked(q_digits, {0: 1, 1: 2})
    for m, group in zip(dtss_masks(snn).values(), ["sps", "qkv", "mlp", "attn"], strict=True):
        m.group = group
    cfg = method_config("dtss", {"lambda_m": 0.5, "groups": "qkv,mlp"})
    assert float(mask_loss(snn, cfg).detach()) == pytest.approx(0.5 * (2 + 4))
    cfg_all = method_config("dtss", {"lambda_m": 0.5, "groups": "all"})
    assert float(mask_loss(snn, cfg_all).detach()) == pytest.approx(0.5 * (1 + 2 + 4 + 4))
    with pytest.raises(SnnConvertError):
        method_config("dtss", {"groups": "qkv,bogus"})


def test_finetune_with_dtss_learns_masks_and_round_trips(q_digits, snn4, tmp_path) -> None:
    cfg = FinetuneConfig(epochs=1, batch_size=16, max_batches_per_epoch=3, val_limit=0, lr=1e-3,
                         methods={"dtss": {"lambda_m": 5.0, "score_lr": 0.5}})
    result = finetune(q_digits, snn4, cfg, data="digits")
    assert not dtss_masks(snn4)  # the input SNN is untouched
    row = result.history[-1]
    assert set(row["T_per_layer"]) == {"relu1", "relu2", "relu3", "relu4"}
    assert row["T_avg"] == pytest.approx(t_avg(row["T_per_layer"]))
    assert row["T_avg"] < 2.0  # a heavy mask loss removed steps from the initial ceil(4/2) = 2
    masks = dtss_masks(result.snn)
    assert all(bool((m.scores >= 0).all()) for m in masks.values())
    assert result.snn.info["dtss"]["t_max"] == 4
    path = tmp_path / "dtss.snnc"
    save(path, q_digits, result.snn)
    _, loaded = load(path)
    images = _images(4)
    with torch.no_grad():
        assert torch.equal(loaded(images), result.snn(images))
    assert kept_steps(loaded) == kept_steps(result.snn)
    with pytest.raises(SnnConvertError, match="t_max"):
        finetune(q_digits, snn4, FinetuneConfig(epochs=1, val_limit=0, methods={"dtss": {"t_max": 3}}),
                 data="digits")


def test_dtss_default_runs_the_papers_lif_and_keep_leaves_the_neuron(q_digits) -> None:
    from snnconvert.methods.dtss.training import prepare
    from snnconvert.methods.rate.neuron import IFNeuron

    def first_neuron(snn):
        return next(m for m in snn.modules() if isinstance(m, IFNeuron))

    z = torch.tensor([1.0, 0.6, 0.6, 1.0]).reshape(4, 1, 1, 1, 1)  # T=4 frames, one neuron, theta = 1
    paper = prepare(to_snn(q_digits, coding="rate", T=4), method_config("dtss", {}))
    neuron = first_neuron(paper)
    assert (neuron.order, neuron.init) == ("dtss", 0.0)
    with torch.no_grad():
        spikes = neuron(z.expand(4, 1, neuron.channels, 1, 1).reshape(4, -1, 1, 1))[:, 0].flatten()
    # eqs 1-2 with leak 1 and U^0 = 0: H1 = 1.0 (not > 1), H2 = 1.6 -> U2 = 0.6, H3 = 1.2 -> U3 = 0.2, H4 = 1.2
    assert spikes.tolist() == [0.0, 1.0, 1.0, 1.0]
    kept = prepare(to_snn(q_digits, coding="rate", T=4), method_config("dtss", {"order": "keep"}))
    neuron = first_neuron(kept)
    assert (neuron.order, neuron.init) == ("mlif", 0.5)
    with torch.no_grad():
        spikes = neuron(z.expand(4, 1, neuron.channels, 1, 1).reshape(4, -1, 1, 1))[:, 0].flatten()
    # converted neuron: u0 = 0.5, fire at >=, unleaked reset: 1.5 -> 0.5, 1.1 -> 0.1, 0.7, 1.7 -> spike
    assert spikes.tolist() == [1.0, 1.0, 0.0, 1.0]


def test_dtss_report_normalises_to_fixed_t(q_digits) -> None:
    snn = _masked(q_digits, {0: 1, 1: 1, 2: 2, 3: 2})
    images, labels = _images(8), torch.arange(8) % 10
    data = dtss_summary(snn, images, labels, batch_size=8)
    assert data["t_avg"] == pytest.approx(1.5) and data["t_max"] == 4
    base, ours = data["runs"]["fixed_t_max"], data["runs"]["dtss"]
    # memory: 2 accesses per neuron per executed step -> (4 x all) / (T_l x each)
    neurons = {n: float(m.neurons) for n, m in snn.neurons().items()}
    steps = {"relu1": 1, "relu2": 1, "relu3": 2, "relu4": 2}
    assert ours["membrane_accesses"] == pytest.approx(sum(2 * neurons[n] * t for n, t in steps.items()))
    assert base["membrane_accesses"] == pytest.approx(sum(2 * neurons[n] * 4 for n in steps))
    assert data["normalized"]["memory"] == pytest.approx(base["memory_pj"] / ours["memory_pj"])
    assert ours["compute_pj"] < base["compute_pj"]
    _, loads = measured_run(snn, images, 8)
    e = energy_breakdown(snn, loads, e_mac=13.32, e_ac=1.8, e_mem=0.0)
    first = next(iter(loads))
    assert e["compute_pj"] == pytest.approx(sum(ld.synaptic_ops * (13.32 if n == first else 1.8)
                                                for n, ld in loads.items()))


@pytest.mark.slow  # about 30 s on the loaded 2-core machine (two extra simulations + plots)
def test_evaluate_reports_and_plots(q_digits, tmp_path) -> None:
    from snnconvert.evaluate import EvaluateConfig, evaluate
    from snnconvert.reports.plots import write_plots

    snn = _masked(q_digits, {0: 1, 1: 2, 2: 3})
    report = evaluate(q_digits, snn, EvaluateConfig(limit=20, reports=("accuracy", "dtss", "timestep-sensitivity"),
                                                    device="cpu"))
    dtss = report.coding_reports["dtss"]
    assert [r["T_l"] for r in dtss["layers"]] == [1, 2, 3, 4] and dtss["t_avg"] == pytest.approx(2.5)
    assert dtss["energy_model"]["e_ac_pj"] == 1.8 and dtss["energy_model"]["e_mac_pj"] == 13.32
    sens = report.coding_reports["timestep-sensitivity"]
    assert [r["layer"] for r in sens["layers"]] == ["relu1", "relu2", "relu3", "relu4"]
    made = {p.name for p in write_plots(report, tmp_path)}
    assert {"dtss_steps.png", "timestep_sensitivity.png"} <= made
    with pytest.raises(SnnConvertError, match="dtss"):
        evaluate(q_digits, to_snn(q_digits, coding="rate", T=4), EvaluateConfig(limit=10, reports=("dtss",)))


# ---------------------------------------------------------------- the floor (min_steps)


def test_floor_keeps_the_first_steps_and_passes_no_gradient_there() -> None:
    m = DTSSMask(4, init_steps=2, min_steps=1)
    with torch.no_grad():
        m.scores.zero_()  # TS = 0 everywhere: eq 5 alone would keep no step
    tm = m.mask()
    assert tm.tolist() == [1.0, 0.0, 0.0, 0.0] and m.kept_steps() == 1
    m.min_steps = 0
    assert m.kept_steps() == 0  # the paper's eq 5 alone
    m2 = DTSSMask(4, init_steps=4, min_steps=2)
    m2.mask().sum().backward()
    # TS = [1.5] * 4 (inside the box): d sum / d TP_i = #{j <= i, j not forced} = max(0, i - 1)
    assert m2.scores.grad.tolist() == pytest.approx([0.0, 0.0, 1.0, 2.0], abs=0)
    with pytest.raises(SnnConvertError, match="min_steps"):
        DTSSMask(4, min_steps=5)
    with pytest.raises(SnnConvertError, match="min_steps"):
        method_config("dtss", {"min_steps": -1})


def test_projection_keeps_every_step_learnable() -> None:
    m = DTSSMask(4, init_steps=2)
    with torch.no_grad():
        m.scores.copy_(torch.tensor([-1.0, 0.0, -3.0, -2.0]))
    m.project()
    assert m.scores.tolist() == pytest.approx([0.0, 0.0, 0.0, 1e-3], abs=1e-9)
    ts, _ = mask_values(m.scores)
    assert bool((ts > 0).all())  # inside eq 6's open support 0 < TS < 2: the gradient is alive


@pytest.mark.parametrize("min_steps", [1, 2])
def test_no_layer_reaches_zero_steps_under_a_huge_lambda(q_digits, snn4, min_steps: int) -> None:
    cfg = FinetuneConfig(epochs=1, batch_size=16, max_batches_per_epoch=2, val_limit=0, lr=1e-3,
                         methods={"dtss": {"lambda_m": 1e6, "score_lr": 2.0, "min_steps": min_steps,
                                           "order": "keep"}})  # eqs 1-2 at 1 step fire only above theta
    result = finetune(q_digits, snn4, cfg, data="digits")
    row = result.history[-1]
    # Adam moves every score by ~score_lr per step against the mask loss: without the floor every
    # mask would keep 0 steps; with it each keeps exactly min_steps
    assert set(row["T_per_layer"].values()) == {min_steps} and row["T_avg"] == min_steps
    assert [m.min_steps for m in dtss_masks(result.snn).values()] == [min_steps] * 4
    assert result.snn.info["dtss"]["min_steps"] == min_steps
    with torch.no_grad():
        logits = result.snn(_images(4))
    assert float(logits.std(dim=0).sum()) > 0  # the network is not silenced


def test_warmup_ramps_lambda_m(q_digits) -> None:
    from snnconvert.finetune.methods import get_method

    snn = _masked(q_digits, {0: 1, 1: 2})
    method, cfg = get_method("dtss"), method_config("dtss", {"lambda_m": 0.5, "groups": "all", "warmup_steps": 4})
    full = 0.5 * (1 + 2 + 4 + 4)
    for step, share in ((0, 0.25), (1, 0.5), (3, 1.0), (10, 1.0)):
        method.before_step(snn, cfg, step, _images(1))
        assert float(mask_loss(snn, cfg).detach()) == pytest.approx(share * full)


# ---------------------------------------------------------------- OPF of masked layers


def test_state_ops_count_only_kept_steps_hand_example(q_digits) -> None:
    from snnconvert.evaluate import ops_report
    from snnconvert.simulate.gating import gated_steps

    snn = _masked(q_digits, {0: 1, 1: 2})  # relu1 (and pool1 before its mask) 1 step, relu2 / pool2 2 steps
    _, loads = measured_run(snn, _images(6), 6)
    assert gated_steps(snn) == {"relu1": 1, "pool1_neuron": 1, "relu2": 2, "pool2_neuron": 2, "relu3": 4,
                                "relu4": 4}
    counts = {n: int(m.neurons) for n, m in snn.neurons().items()}
    assert counts == {"relu1": 1024, "relu2": 512, "relu3": 120, "relu4": 84, "pool1_neuron": 256,
                      "pool2_neuron": 128}
    # membrane updates: 1024 x 1 + 256 x 1 + 512 x 2 + 128 x 2 + 120 x 4 + 84 x 4 = 3376 (not 4 x 2124)
    report = ops_report(snn, loads, 4.6, 0.9)
    assert report.state_ops == pytest.approx(3376.0, abs=1e-9)
    assert report.opf == pytest.approx(3376.0 + report.synaptic_ops, rel=1e-12)
    with masks_off(snn):
        _, full = measured_run(snn, _images(6), 6)
        assert ops_report(snn, full, 4.6, 0.9).state_ops == pytest.approx(4.0 * 2124, abs=1e-9)


# ---------------------------------------------------------------- CLI sugar


def _cli_app():
    from snnconvert.cli.app import app
    from snnconvert.cli.finetune_cmd import register

    if not any(c.name == "finetune" for c in app.registered_commands):
        register(app)
    return app


def test_cli_dtss_flags(q_digits, snn4, tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from snnconvert.artifact import load_artifact
    from snnconvert.methods.dtss.training import flag_options

    assert flag_options(4, 1e-4, None, 2) == ["dtss.t_max=4", "dtss.lambda_m=0.0001", "dtss.min_steps=2"]
    source = save(tmp_path / "snn-rate-1.snnc", q_digits, snn4)
    result = CliRunner().invoke(_cli_app(), [
        "finetune", "--input", str(source), "--data", "digits", "--epochs", "1", "--max-batches", "1",
        "--batch-size", "16", "--val-limit", "0", "--device", "cpu", "--dtss", "--t-max", "4", "--lambda-m", "0.5",
        "--dtss-groups", "all", "--dtss-min-steps", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    info = load_artifact(__import__("pathlib").Path(summary["artifact"])).manifest["snn"]["info"]
    assert info["finetune"]["config"]["methods"] == {
        "dtss": {"t_max": "4", "lambda_m": "0.5", "groups": "all", "min_steps": "2"}}
    assert info["dtss"]["min_steps"] == 2 and info["dtss"]["lambda_m"] == 0.5
    _, loaded = load(summary["artifact"])  # the floor is saved with each mask
    assert [m.min_steps for m in dtss_masks(loaded).values()] == [2] * 4
    assert min(summary["history"][0]["T_per_layer"].values()) >= 2
    bad = CliRunner().invoke(_cli_app(), ["finetune", "--input", str(source), "--data", "digits", "--epochs", "1",
                                          "--t-max", "3", "--val-limit", "0", "--max-batches", "1"])
    assert bad.exit_code == 1 and "--t-max 3 but the SNN runs T=4 steps" in bad.output
