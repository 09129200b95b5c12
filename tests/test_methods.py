"""Training-method plugins of the fine-tuning engine and evaluate-level analyses (both registries)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from test_finetune import toy_snn
from torch import nn
from typer.testing import CliRunner

import snnconvert
from snnconvert.codings.base import ReportTable, option
from snnconvert.errors import SnnConvertError
from snnconvert.evaluate import EvaluateConfig, evaluate
from snnconvert.finetune import FinetuneConfig, finetune
from snnconvert.finetune.methods import (
    TrainingMethod,
    method_config,
    methods,
    methods_from_flags,
    register_method,
    unregister_method,
)
from snnconvert.reports.analyses import Analysis, register_analysis, unregister_analysis


@dataclass
class PullConfig:
    target: float = option(1.0, help="Where the gain is pulled.")
    weight: float = option(1.0, help="Weight of the pull.")
    lr: float = option(0.25, help="Fixed lr of the gain.")


def _prepare(model: nn.Module, cfg: PullConfig) -> nn.Module:
    model.register_parameter("toy_gain", nn.Parameter(torch.zeros(())))
    model.register_buffer("toy_steps", torch.zeros((), dtype=torch.long))
    model.register_buffer("toy_seen", torch.zeros((), dtype=torch.long))
    return model


def _loss(model: nn.Module, cfg: PullConfig) -> torch.Tensor:
    return cfg.weight * (model.toy_gain - cfg.target) ** 2


def _before(model: nn.Module, cfg: PullConfig, step: int, images: torch.Tensor) -> None:
    model.toy_seen += len(images)


def _after(model: nn.Module, cfg: PullConfig, step: int) -> None:
    assert step == int(model.toy_steps)  # steps are numbered 0, 1, 2, ... across epochs
    model.toy_steps += 1


@pytest.fixture
def pull_method():
    register_method(TrainingMethod(
        name="toy_pull", summary="pulls a scalar gain to a target", config=PullConfig, prepare=_prepare,
        loss=_loss, before_step=_before, after_step=_after,
        record=lambda m, c: {"toy_gain": float(m.toy_gain.detach())},
        parameter_groups=lambda m, c: [([m.toy_gain], c.lr)]))
    yield
    unregister_method("toy_pull")


@pytest.fixture(scope="module")
def q_digits():
    return snnconvert.quantize("lenet5", data="digits", eval_limit=0)


def test_method_hooks_run_with_hand_values(q_digits, pull_method) -> None:
    # SGD without momentum on the gain's own group (lr 0.25): g <- g - 0.25 * 2 (g - 1), so
    # g_n = 1 - 0.5^n; 2 epochs of 2 batches of 8 images -> 4 steps -> 0.9375 (after epoch 1: 0.75).
    # The hand values need plain SGD steps: no warm-up, schedule, clipping or distillation.
    cfg = FinetuneConfig(epochs=2, batch_size=8, max_batches_per_epoch=2, val_limit=0, optimizer="sgd",
                         momentum=0.0, lr=1e-3, methods={"toy_pull": {}}, warmup_epochs=0, schedule="none",
                         grad_clip=None, distill="none", reinit_dead=False)
    result = finetune(q_digits, toy_snn(), cfg, data="digits")
    assert [r["toy_gain"] for r in result.history] == pytest.approx([0.75, 0.9375], abs=1e-6)
    assert int(result.snn.toy_steps) == 4 and int(result.snn.toy_seen) == 32
    assert result.snn.info["finetune"]["config"]["methods"] == {"toy_pull": {}}


def test_method_options_are_read_by_type(pull_method) -> None:
    cfg = method_config("toy_pull", {"target": "2.5", "weight": 3})
    assert cfg.target == 2.5 and cfg.weight == 3
    assert methods_from_flags(["toy-pull"], ["toy_pull.lr=0.5"]) == {"toy_pull": {"lr": "0.5"}}
    assert methods_from_flags([], ["toy_pull.target=2"]) == {"toy_pull": {"target": "2"}}


@pytest.mark.parametrize("spec, message", [
    ({"nope": {}}, "unknown training method 'nope'"),
    ({"toy_pull": {"speed": 1}}, "has no option(s) speed"),
    ({"toy_pull": {"target": "fast"}}, "target='fast' is not possible"),
])
def test_bad_method_specs_fail_at_validation(pull_method, spec, message) -> None:
    with pytest.raises(SnnConvertError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FinetuneConfig(methods=spec).validate()


def test_bad_method_flag_is_one_line(pull_method) -> None:
    with pytest.raises(SnnConvertError, match="write NAME.KEY=VALUE"):
        methods_from_flags([], ["toy_pull=3"])


def test_methods_command_lists_the_table(pull_method) -> None:
    from snnconvert.cli.app import app

    out = CliRunner().invoke(app, ["methods", "--json"])
    assert out.exit_code == 0, out.output
    assert "toy_pull" in out.output and "Where the gain is pulled." in out.output
    assert set(methods()) >= {"toy_pull"}


def _mean_pixel(ctx) -> dict:
    return {"mean": float(ctx.images.mean()), "images": len(ctx.images),
            "agree": float((ctx.quant_logits.argmax(1) == ctx.float_logits.argmax(1)).float().mean())}


@pytest.fixture
def toy_analysis():
    register_analysis(Analysis(
        name="toy-mean", help="mean pixel", applies=lambda snn: snn.coding == "sws", compute=_mean_pixel,
        tables=lambda d: [ReportTable("toy", ("mean",), [(f"{d['mean']:.3f}",)])], needs="an SWS SNN"))
    yield
    unregister_analysis("toy-mean")


def test_analysis_runs_only_when_named_and_sees_the_images(q_digits, toy_analysis) -> None:
    snn = snnconvert.to_snn(q_digits, "sws")
    everything = evaluate(q_digits, snn, EvaluateConfig(limit=20))
    assert "toy-mean" not in everything.coding_reports  # "all" leaves analyses out
    report = evaluate(q_digits, snn, EvaluateConfig(limit=20, reports=("accuracy", "toy-mean")))
    data = report.coding_reports["toy-mean"]
    assert data["images"] == 20 and 0.0 < data["mean"] < 1.0
    assert data["agree"] == pytest.approx(report.accuracy.agreement_quantized_float, abs=1e-12)


def test_analysis_on_another_coding_is_a_one_line_error(q_digits, toy_analysis) -> None:
    snn = snnconvert.to_snn(q_digits, "rate")
    with pytest.raises(SnnConvertError, match="report toy-mean needs an SWS SNN; this SNN is rate"):
        evaluate(q_digits, snn, EvaluateConfig(limit=10, reports=("toy-mean",)))
