"""``--Ts auto``: the per-layer refinement evaluates what it keeps, is deterministic, honours its
budget, and reports its frontier; its calibration sample is seeded and sized by the config."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import quantize_random, randomize_batchnorm

from snnconvert.data import InputSpec
from snnconvert.methods.sws.coding import (
    SWSConfig,
    _predict,
    auto_silent_periods,
    convert_sws,
    search_data,
    search_plot,
    search_tables,
    summary_rows,
)
from snnconvert.models.cifar_resnet import CifarResNet
from snnconvert.quantize.exact import exact_reference

SMALL = InputSpec(3, (16, 16), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)  # a small CIFAR-style ResNet (3 stages of one block): 7 TSA layers, fast to search
    q = quantize_random(randomize_batchnorm(CifarResNet(8, 10).eval()), SMALL, images=64)
    images = torch.rand(96, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    loader = [(images[i:i + 32], torch.zeros(32, dtype=torch.long)) for i in range(0, 96, 32)]
    return q, images, loader


def _search(q, loader, **options):
    options.setdefault("auto_holdout", 0.0)  # search on all 96 images unless a test holds some out
    options.setdefault("auto_agreement", 0.97)
    cfg = SWSConfig(Tc=8, Ts="auto", auto_limit=96, **options)
    snn = convert_sws(q, cfg)
    return snn, auto_silent_periods(snn, q, loader, cfg)


def test_refinement_keeps_only_evaluated_passing_settings(setup) -> None:
    q, images, loader = setup
    snn, auto = _search(q, loader)
    kept = [t for t in auto["trials"] if t["passed"]]
    assert auto["evaluations"] == len(auto["trials"])
    assert any(t["T_inf"] == snn.info["T_inf"] for t in kept)  # the result is one of the evaluated settings
    k_star = auto["uniform_Ts"]
    assert snn.info["T_inf"] <= 8 + k_star * snn.info["L_TSA"]  # never slower than the best uniform setting
    reference = _predict(exact_reference(q), images, torch.float64)
    agreement = float((_predict(copy.deepcopy(snn).float(), images, torch.float32) == reference).float().mean())
    assert agreement >= 0.97
    # unbudgeted, the last round tried every layer that could drop one more step, and each missed
    assert not auto["budget_spent"]
    final = [n for n, ts in auto["chosen"].items() if ts > 0]
    tail = auto["trials"][len(auto["trials"]) - len(final):] if final else []
    assert all(not t["passed"] for t in tail)
    assert sorted(t["step"] for t in tail) == sorted(f"{n} to Ts={auto['chosen'][n] - 1}" for n in final)
    assert auto["chosen"] == dict(zip(snn.info["neuron_layers"], snn.info["Ts"], strict=True))


def test_held_out_images_are_not_searched_and_give_the_estimate(setup) -> None:
    """auto_holdout 0.25 of 96 images: 24 held out (seeded), 72 searched; the estimate is the
    chosen network's agreement with the exact reference on exactly those 24."""
    from snnconvert.methods.sws.coding import _holdout_split

    q, images, loader = setup
    searched, held = _holdout_split(96, 0.25, 0)
    assert len(held) == 24 and len(searched) == 72 and not set(held.tolist()) & set(searched.tolist())
    assert torch.equal(_holdout_split(96, 0.25, 0)[1], held) and not torch.equal(_holdout_split(96, 0.25, 1)[1], held)
    snn, auto = _search(q, loader, auto_holdout=0.25)
    assert auto["images"] == 72 and auto["holdout"]["images"] == 24
    assert all(t["images_compared"] <= 72 for t in auto["trials"])
    reference = _predict(exact_reference(q), images[held], torch.float64)
    expected = float((_predict(copy.deepcopy(snn), images[held], torch.float64) == reference).double().mean())
    assert auto["holdout"]["agreement"] == expected
    assert "on 24 held-out calibration images" in search_tables(auto)[0].title


def test_search_is_deterministic(setup) -> None:
    q, _images, loader = setup
    a_snn, a = _search(q, loader)
    b_snn, b = _search(q, loader)
    assert a["chosen"] == b["chosen"] and [t["step"] for t in a["trials"]] == [t["step"] for t in b["trials"]]
    assert [t["agreement"] for t in a["trials"]] == [t["agreement"] for t in b["trials"]]


def test_budget_stops_the_per_layer_search_with_a_passing_result(setup) -> None:
    q, images, loader = setup
    snn, auto = _search(q, loader, auto_budget_s=1e-9)
    assert auto["budget_spent"]
    assert all(t["step"].startswith("uniform") for t in auto["trials"])  # nothing after the uniform bisection
    assert set(auto["chosen"].values()) == {auto["uniform_Ts"]}
    reference = _predict(exact_reference(q), images, torch.float64)
    assert float((_predict(copy.deepcopy(snn).float(), images, torch.float32) == reference).float().mean()) >= 0.97


def test_frontier_report_and_plot(setup, tmp_path: Path) -> None:
    q, _images, loader = setup
    snn, auto = _search(q, loader)
    data = search_data(snn)
    assert data is None  # the coding stores the search in info["auto"]; convert_sws alone does not
    snn.info["auto"] = auto
    data = search_data(snn)
    (table,) = search_tables(data)
    t_infs = [int(r[0]) for r in table.rows]
    assert t_infs == sorted(set(t["T_inf"] for t in auto["trials"]))
    # per T_inf the best agreement; '< x' when that best is the bound of an evaluation that stopped early
    best = {t: max((x["agreement"], not x["stopped_early"]) for x in auto["trials"] if x["T_inf"] == t)
            for t in t_infs}
    assert [r[1] for r in table.rows] == [("" if best[t][1] else "< ") + f"{100 * best[t][0]:.2f}%"
                                          for t in t_infs]
    assert any(r[1].startswith("< ") for r in table.rows)  # failing candidates stopped early
    (png,) = search_plot(data, tmp_path, "toy")
    assert png.name == "ts_auto_frontier.png" and png.stat().st_size > 1000


def test_repair_raises_the_layer_that_fixes_most_disagreeing_images(setup) -> None:
    q, images, loader = setup
    snn, auto = _search(q, loader)
    k_star, repairs = auto["uniform_Ts"], auto["repairs"]
    assert k_star > 0
    steps = [t for t in auto["trials"] if t["step"].startswith("repair")]
    assert steps[0]["step"] == f"repair from uniform Ts={k_star - 1}" and not steps[0]["passed"]
    assert not steps[0]["stopped_early"]  # the first one sees every image: all disagreeing ones go first
    assert len(steps) == len(repairs) + 1 and steps[-1]["passed"] == (len(repairs) < len(auto["chosen"]))
    # each raise is the candidate with the fewest disagreeing head images, measured again here by hand
    cfg = SWSConfig(Tc=8, Ts="auto", auto_agreement=0.97, auto_limit=96)
    check = copy.deepcopy(snn).float()  # the search simulates its candidates in float32
    reference = _predict(exact_reference(q), images, torch.float64)
    raised: dict[str, int] = {}
    names = list(auto["chosen"])
    for r in repairs:
        assert r["head_mismatches"][r["raised"]] == min(r["head_mismatches"].values())
        assert set(r["head_mismatches"]) == {n for n in names if n not in raised}
        raised[r["raised"]] = k_star
    if repairs:  # the last repaired setting, evaluated whole by hand, meets the target
        from snnconvert.methods.sws.coding import set_silent_periods

        set_silent_periods(check.body, {**dict.fromkeys(names, k_star - 1), **raised})
        agreement = float((_predict(check, images, torch.float32) == reference).float().mean())
        assert agreement == pytest.approx(steps[-1]["agreement"]) and agreement >= cfg.auto_agreement


@pytest.mark.parametrize("bad", [{"auto_limit": 0}, {"auto_budget_s": -1.0}, {"auto_budget_s": float("nan")},
                                 {"auto_rounds": -1}, {"auto_rounds": True}])
def test_bad_search_options_are_one_line_errors(bad) -> None:
    from snnconvert.errors import SnnConvertError

    with pytest.raises(SnnConvertError):
        SWSConfig(Ts="auto", **bad).validate()


def test_pipeline_samples_the_calibration_pool_by_size_and_seed() -> None:
    from snnconvert.pipeline import conversion_inputs, quantize
    from snnconvert.quantize import QuantizeConfig

    q = quantize("lenet5", data="digits", config=QuantizeConfig(calib_limit=64), eval_limit=0)
    inputs = conversion_inputs(q, need_calibration=True)
    assert sum(len(x) for x, _ in inputs.calibration) == 64
    a = torch.cat([x for x, _ in inputs.calibration_sample(200, 0)])
    b = torch.cat([x for x, _ in inputs.calibration_sample(200, 0)])
    c = torch.cat([x for x, _ in inputs.calibration_sample(200, 1)])
    assert len(a) == 200 and torch.equal(a, b) and not torch.equal(a, c)


def test_search_shows_its_evaluations_as_progress(setup, capsys) -> None:
    q, _images, loader = setup
    cfg = SWSConfig(Tc=8, Ts="auto", auto_agreement=0.97, auto_limit=96)
    auto = auto_silent_periods(convert_sws(q, cfg), q, loader, cfg, show_progress=True)
    err = capsys.readouterr().err  # not a terminal: plain lines at the start and the end
    assert auto["images"] == 77 and auto["holdout"]["images"] == 19  # the default auto_holdout 0.2 of 96
    assert "--Ts auto on 77 images: evaluations: 0" in err and "started" in err
    assert f"--Ts auto on 77 images: evaluations: {len(auto['trials'])} (" in err and "done" in err


def test_a_missed_held_out_target_searches_again_with_half_the_disagreements(setup) -> None:
    """Target 0.97 with a quarter held out: the first choice misses 0.97 on its 24 held-out images
    (the search fitted its 72), so it searches again at 0.985, then 0.9925. A round starts only
    after a miss; the uniform silent period never drops between rounds (settings below it failed a
    looser target); the last round met the target or the rounds ran out; the held-out figure
    reported is the last round's, measured again by hand."""
    from snnconvert.methods.sws.coding import _holdout_split

    q, images, loader = setup
    snn, auto = _search(q, loader, auto_holdout=0.25, auto_rounds=3)
    rounds = auto["rounds"]
    assert len(rounds) >= 2 and rounds[0]["target"] == 0.97 and auto["target"] == 0.97
    for before, after in zip(rounds, rounds[1:], strict=False):
        assert before["holdout_agreement"] < 0.97
        assert after["target"] == pytest.approx(1 - (1 - before["target"]) / 2, abs=1e-15)
        assert after["uniform_Ts"] >= before["uniform_Ts"]
    assert rounds[-1]["holdout_agreement"] >= 0.97 or len(rounds) == 4
    assert auto["search_target"] == rounds[-1]["target"] and snn.info["T_inf"] == rounds[-1]["T_inf"]
    assert all(t["passed"] == (t["agreement"] >= t["target"]) for t in auto["trials"])
    _searched, held = _holdout_split(96, 0.25, 0)
    reference = _predict(exact_reference(q), images[held], torch.float64)
    by_hand = float((_predict(copy.deepcopy(snn), images[held], torch.float64) == reference).double().mean())
    assert auto["holdout"]["agreement"] == rounds[-1]["holdout_agreement"] == by_hand
    no_rounds = _search(q, loader, auto_holdout=0.25, auto_rounds=0)[1]
    assert len(no_rounds["rounds"]) == 1 and no_rounds["rounds"][0] == {
        **rounds[0], "seconds": no_rounds["rounds"][0]["seconds"], "phases": no_rounds["rounds"][0]["phases"]}
    # each round times its four phases; they fit in the round, and the summary adds them up over the rounds
    for r in rounds:
        assert set(r["phases"]) == {"uniform", "repair", "lower_levels", "refinement"}
        assert all(v >= 0 for v in r["phases"].values()) and sum(r["phases"].values()) <= r["seconds"] + 1e-6
    row = dict(summary_rows({**snn.info, "auto": auto}))["--Ts auto time"]  # (convert stores it so)
    uniform = sum(r["phases"]["uniform"] for r in rounds)
    assert row.startswith(f"{auto['seconds']:.0f} s: uniform {uniform:.0f} s, per level ")
    assert row.endswith(f"over {len(rounds)} rounds")
