"""Distillation from the float ANN (snnconvert.finetune.distill)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from snnconvert.finetune.distill import Teacher, distillation_kl, distillation_loss, logit_scale_ratio, teacher_note


def _softmax2(a: float, b: float) -> tuple[float, float]:
    ea, eb = math.exp(a), math.exp(b)
    return ea / (ea + eb), eb / (ea + eb)


def test_two_class_loss_and_gradient_by_hand() -> None:
    s = torch.tensor([[1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([0])
    tau, alpha = 2.0, 0.25
    ce = torch.nn.functional.cross_entropy(s, y)
    loss = distillation_loss(s, t, ce, tau, alpha)
    loss.backward()
    # by hand: p_t = softmax(t / 2) = softmax(0, 1); p_s = softmax(s / 2) = softmax(0.5, -0.5)
    pt = _softmax2(0.0, 1.0)
    ps = _softmax2(0.5, -0.5)
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True))
    p = _softmax2(1.0, -1.0)
    ce_hand = -math.log(p[0])
    assert float(loss.detach()) == pytest.approx(0.75 * ce_hand + 0.25 * 4.0 * kl, abs=1e-12)
    # d/ds: (1 - alpha) (p - onehot) + alpha tau (p_s - p_t)
    grad = [0.75 * (p[0] - 1.0) + 0.25 * 2.0 * (ps[0] - pt[0]), 0.75 * p[1] + 0.25 * 2.0 * (ps[1] - pt[1])]
    torch.testing.assert_close(s.grad, torch.tensor([grad], dtype=torch.float64), atol=1e-12, rtol=0)


def test_kl_is_zero_for_equal_logits_and_batch_mean() -> None:
    s = torch.tensor([[0.3, 1.2, -2.0], [1.0, 0.0, 0.0]])
    assert float(distillation_kl(s, s.clone(), 3.0)) == pytest.approx(0.0, abs=1e-6)
    one = distillation_kl(s[:1], torch.zeros(1, 3), 1.0)
    two = distillation_kl(s[1:], torch.zeros(1, 3), 1.0)
    assert float(distillation_kl(s, torch.zeros(2, 3), 1.0)) == pytest.approx((float(one) + float(two)) / 2, rel=1e-6)


def test_teacher_is_a_frozen_copy_and_gets_no_gradient() -> None:
    torch.manual_seed(0)
    original = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    before = {k: v.clone() for k, v in original.state_dict().items()}
    teacher = Teacher.of(original, torch.device("cpu"))
    assert original.training and all(p.requires_grad for p in original.parameters())  # caller's model untouched
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    student = nn.Linear(4, 2)
    x = torch.randn(5, 4)
    t = teacher(x)
    assert not t.requires_grad and t.grad_fn is None
    torch.testing.assert_close(t, teacher(x), atol=0, rtol=0)  # eval mode: dropout off, deterministic
    loss = distillation_loss(student(x), t, torch.tensor(0.0), 2.0, 1.0)
    loss.backward()
    assert student.weight.grad is not None and float(student.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in teacher.model.parameters())
    for k, v in original.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_teacher_note() -> None:
    assert teacher_note("none", None, False) is None
    assert teacher_note("float", nn.Linear(1, 1), False) is None
    assert "random" in (teacher_note("float", nn.Linear(1, 1), True) or "")
    assert "no float" in (teacher_note("float", None, False) or "")


def test_standardized_kl_by_hand_and_scale_free() -> None:
    # s = (1, -1): mean 0, std 1 -> z = (1, -1); t = (0, 4): centred (-2, 2), std 2 -> z = (-1, 1)
    s = torch.tensor([[1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.0, 4.0]], dtype=torch.float64)
    pt, ps = _softmax2(-1.0, 1.0), _softmax2(1.0, -1.0)
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True))
    loss = distillation_kl(s, t, 1.0, standardize=True)
    assert float(loss.detach()) == pytest.approx(kl, rel=1e-5)  # eps 1e-6 in the std
    # with two classes a z-score is always (+1, -1): no gradient at all
    loss.backward()
    assert float(s.grad.abs().max()) < 1e-5
    # any positive scale and shift of either side gives the same loss; without standardizing it does not
    a = torch.tensor([[0.3, 1.2, -2.0], [1.0, 0.0, 0.5]], dtype=torch.float64)
    b = torch.tensor([[2.0, -1.0, 0.0], [0.0, 3.0, 1.0]], dtype=torch.float64)
    ref = float(distillation_kl(a, b, 2.0, standardize=True))
    assert float(distillation_kl(7.0 * a + 3.0, 0.1 * b - 5.0, 2.0, standardize=True)) == pytest.approx(ref, rel=1e-5)
    assert float(distillation_kl(7.0 * a, b, 2.0)) != pytest.approx(float(distillation_kl(a, b, 2.0)), rel=1e-2)


def test_standardized_gradient_matches_finite_differences() -> None:
    s = torch.tensor([[0.3, 1.2, -2.0, 0.7]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[2.0, -1.0, 0.0, 0.5]], dtype=torch.float64)
    ce = torch.nn.functional.cross_entropy(s, torch.tensor([1]))
    distillation_loss(s, t, ce, 2.0, 0.5, standardize=True).backward()
    h = 1e-6
    for i in range(4):
        e = torch.zeros_like(s)
        e[0, i] = h
        with torch.no_grad():
            f = [float(distillation_loss(s + d, t, torch.nn.functional.cross_entropy(s + d, torch.tensor([1])),
                                         2.0, 0.5, standardize=True)) for d in (e, -e)]
        assert float(s.grad[0, i]) == pytest.approx((f[0] - f[1]) / (2 * h), abs=1e-6)
    # the z-scored gradient sums to zero over the classes, like any softmax gradient
    assert float(s.grad.sum()) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("scale", "setting", "expected"), [
    (3.5, "auto", False), (0.3, "auto", False), (1.0, "auto", False),  # within a factor 4
    (4.5, "auto", True), (0.2, "auto", True), (0.2, "off", False), (1.0, "on", True)])
def test_standardize_choice_from_the_logit_scales(scale: float, setting: str, expected: bool) -> None:
    torch.manual_seed(0)
    ann = nn.Linear(6, 5)
    student = nn.Linear(6, 5)
    with torch.no_grad():  # the student's logits are exactly scale x the teacher's, plus a constant shift
        student.weight.copy_(scale * ann.weight)
        student.bias.copy_(scale * ann.bias + 3.0)
    teacher = Teacher.of(ann, torch.device("cpu"))
    images = torch.randn(32, 6, dtype=torch.float64).float()
    assert logit_scale_ratio(student(images), teacher(images)) == pytest.approx(scale, rel=1e-5)
    note = teacher.choose_standardize(setting, student, images)
    assert teacher.standardize is expected
    assert (note is not None) == (expected and setting == "auto")
    if note is not None:
        assert f"{scale:.3g} x" in note
