"""The one training loop (snnconvert.training) and the float ANN's fine-tuning on it (finetune_ann)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

import snnconvert
from snnconvert.errors import SnnConvertError
from snnconvert.finetune import FinetuneConfig, finetune_ann
from snnconvert.training import EpochTotals, StepHooks, StepLoss, train_epoch


def _linear() -> nn.Linear:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    return layer


def _mse_step(layer: nn.Module):
    def compute(images: torch.Tensor, labels: torch.Tensor) -> StepLoss:
        logits = layer(images)
        loss = (logits ** 2).sum() / 2  # d loss / d W = logits^T x = W x x^T
        return StepLoss(loss, loss, logits)
    return compute


def test_one_sgd_step_equals_the_hand_computed_update() -> None:
    layer = _linear()
    x = torch.tensor([[1.0, 2.0]])
    # W = I: logits = (1, 2), loss = (1 + 4) / 2 = 2.5, grad = logits^T x = [[1, 2], [2, 4]]
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    totals = train_epoch([(x, torch.tensor([1]))], 1, _mse_step(layer), optimizer, device=torch.device("cpu"))
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0]]) - 0.1 * torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=0, atol=1e-7)
    assert totals.loss == pytest.approx(2.5) and totals.seen == 1
    assert totals.top1 == 1.0  # argmax of (1, 2) is class 1
    assert totals.tail_seen == 0  # the second half of a one-step epoch holds no step (2k >= total)


def test_gradient_clipping_caps_the_global_norm() -> None:
    layer = _linear()
    x = torch.tensor([[1.0, 2.0]])
    seen: list[float] = []

    def record() -> None:
        seen.append(float(layer.weight.grad.norm()))

    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    train_epoch([(x, torch.tensor([0]))], 1, _mse_step(layer), optimizer, device=torch.device("cpu"),
                grad_clip=0.5, hooks=StepHooks(after_backward=record))
    assert seen == [pytest.approx(5.0)]  # ||[[1, 2], [2, 4]]|| = sqrt(25) before clipping
    step = torch.eye(2) - layer.weight.detach()  # lr 1: the clipped gradient itself
    assert float(step.norm()) == pytest.approx(0.5, rel=1e-6)


def test_hooks_run_in_order_and_total_limits_the_steps() -> None:
    layer = _linear()
    calls: list[str] = []
    hooks = StepHooks(before=lambda k, images: calls.append(f"before{k}"),
                      after_backward=lambda: calls.append("backward"), after=lambda k: calls.append(f"after{k}"))
    batches = [(torch.ones(1, 2), torch.tensor([0]))] * 5
    totals = train_epoch(batches, 2, _mse_step(layer), torch.optim.SGD(layer.parameters(), lr=0.0),
                         device=torch.device("cpu"), hooks=hooks)
    assert calls == ["before0", "backward", "after0", "before1", "backward", "after1"]
    assert totals.seen == 2 and totals.tail_seen == 1  # step k=1 is the second half of 2 steps
    assert totals.tail_ce == pytest.approx(1.0)  # lr 0: W = I, x = (1, 1), loss (1 + 1) / 2


def test_non_finite_loss_stops_before_the_optimizer_step() -> None:
    layer = _linear()
    x = torch.tensor([[float("inf"), 0.0]])
    with pytest.raises(SnnConvertError, match="diverged at 1: nan"):  # inf * 0 in the matmul
        train_epoch([(x, torch.tensor([0]))], 1, _mse_step(layer), torch.optim.SGD(layer.parameters(), lr=0.1),
                    device=torch.device("cpu"), diverged=lambda value, k: f"diverged at {k + 1}: {value}")
    assert torch.equal(layer.weight.detach(), torch.eye(2))


def test_epoch_totals_derived_values() -> None:
    t = EpochTotals(loss_sum=6.0, correct=3.0, seen=4.0, seconds=2.0, ce_tail=1.0, tail_seen=2.0)
    assert (t.loss, t.top1, t.images_per_s, t.tail_ce) == (1.5, 0.75, 2.0, 0.5)


# ------------------------------------------------------------------------------ finetune_ann


@pytest.fixture(scope="module")
def q_digits():
    return snnconvert.quantize("lenet5", data="digits", eval_limit=0)


def _training_loss(model: nn.Module, q) -> float:
    from snnconvert.data import load_split, materialize
    from snnconvert.finetune.splits import stacked

    x, y = stacked(materialize(load_split("digits", "train", q.info.input_spec, limit=300)))
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def test_finetune_ann_trains_a_copy_and_lowers_the_loss(q_digits) -> None:
    damaged = copy.deepcopy(q_digits.float_model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in damaged.parameters():
            p.add_(0.3 * p.std() * torch.randn_like(p))
    q = dataclasses.replace(q_digits, float_model=damaged)
    before_params = {k: v.clone() for k, v in damaged.state_dict().items()}
    result = finetune_ann(q, FinetuneConfig(epochs=1, lr=1e-3, val_limit=100), data="digits")
    for k, v in damaged.state_dict().items():  # the input model is left as it was
        assert torch.equal(v, before_params[k]), k
    before, after = _training_loss(damaged, q), _training_loss(result.model, q)
    assert after < 0.7 * before, (before, after)
    assert len(result.history) == 1 and result.history[0]["val_top1"] is not None
    assert result.history[0]["firing_rate"] == {}  # no neurons
    with pytest.raises(SnnConvertError, match="float ANN"):
        _ = result.snn


def test_finetune_ann_refuses_training_methods(q_digits) -> None:
    with pytest.raises(SnnConvertError, match="training methods act on spiking neurons"):
        finetune_ann(q_digits, FinetuneConfig(epochs=1, methods={"dtss": {}}), data="digits")
