"""ANN-guided fine-tuning: logit distillation from the float ANN the artifact holds.

The loss of a batch with student (SNN) logits ``s``, teacher (float ANN) logits ``t``,
temperature ``tau`` and weight ``alpha`` is (Hinton et al. 2015)::

    L = (1 - alpha) CE(s, y) + alpha tau^2 KL(softmax(t / tau) || softmax(s / tau))

(mean over the batch). Its gradient with respect to ``s`` is
``(1 - alpha) (softmax(s) - onehot(y)) / B + alpha tau (softmax(s / tau) - softmax(t / tau)) / B``.
The teacher is a frozen copy of the float model: evaluation mode, no parameter requires a
gradient, run once per batch under ``torch.no_grad``; the artifact's own model is never touched.

With ``standardize`` both logit vectors are z-scored per image (minus their mean, over their
standard deviation) before the temperature (Sun et al. 2024, "Logit Standardization in Knowledge
Distillation"): the student then matches the teacher's ranking and relative gaps, not its logit
magnitude. An SNN converted without calibration decodes logits on its own scale (bundled LeNet-5
on digits, M-LIF S=3 T=1: per-image std 0.06 against the ANN's 7.7, then 3-4x the ANN's after 20
steps): raw tau = 4 KL then mostly pulls that scale around and cost accuracy (5 epochs: 87.2 %
val top-1, 94.3 % without distillation, 93.7 % with z-scored logits). ``auto`` (the default)
standardizes when, on the probe images before training, the student's mean per-image logit std is
more than ``SCALE_FACTOR`` times smaller or larger than the teacher's (that LeNet-5: 0.04 without
calibration; 0.73 after `to-snn`'s default calibration, where raw logits are best: 97.8 %).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DISTILL_SOURCES = ("float", "none")
STANDARDIZE = ("auto", "on", "off")
SCALE_FACTOR = 4.0  # auto: standardize when the logit scales differ by more than this factor
STANDARDIZE_EPS = 1e-6  # added to the standard deviation of a z-scored logit vector


def standardized(logits: Tensor) -> Tensor:
    """Each row minus its mean, over its (population) standard deviation plus ``STANDARDIZE_EPS``."""
    centred = logits - logits.mean(dim=-1, keepdim=True)
    return centred / (centred.pow(2).mean(dim=-1, keepdim=True).sqrt() + STANDARDIZE_EPS)


def distillation_kl(student: Tensor, teacher: Tensor, temperature: float, standardize: bool = False) -> Tensor:
    """``tau^2 KL(softmax(teacher / tau) || softmax(student / tau))``, mean over the batch; with
    ``standardize`` both are z-scored per row first (module docstring)."""
    teacher = teacher.to(student.dtype)
    if standardize:
        student, teacher = standardized(student), standardized(teacher)
    log_s = F.log_softmax(student / temperature, dim=-1)
    log_t = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * temperature**2


def distillation_loss(student: Tensor, teacher: Tensor, ce: Tensor, temperature: float, weight: float,
                      standardize: bool = False) -> Tensor:
    """``(1 - weight) ce + weight tau^2 KL`` (module docstring); ``ce`` is the task loss already computed."""
    return (1.0 - weight) * ce + weight * distillation_kl(student, teacher.detach(), temperature, standardize)


@dataclass
class Teacher:
    """A frozen copy of the float ANN; calling it gives its logits without building a graph."""

    model: nn.Module
    standardize: bool = False  # z-score both logit vectors in the KL term (module docstring)

    @classmethod
    def of(cls, model: nn.Module, device: torch.device) -> Teacher:
        """A deep copy of ``model`` on ``device``, in evaluation mode, with every parameter frozen."""
        frozen = copy.deepcopy(model).to(device).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        return cls(frozen)

    def choose_standardize(self, setting: str, student: nn.Module, images: Tensor) -> str | None:
        """Set ``standardize`` from ``setting`` (auto / on / off; auto compares the logit scales of
        ``student`` and the teacher on ``images``); returns a note when auto switches it on."""
        if setting != "auto":
            self.standardize = setting == "on"
            return None
        with torch.no_grad():
            ratio = logit_scale_ratio(student(images), self(images))
        self.standardize = not (1.0 / SCALE_FACTOR <= ratio <= SCALE_FACTOR)
        if not self.standardize:
            return None
        return (f"distillation on z-scored logits: the SNN's logit scale is {ratio:.3g} x the float ANN's on the "
                f"first {len(images)} training images (--distill-standardize off to keep raw logits)")

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        self.model.eval()
        return self.model(images.to(torch.float32))


def logit_scale_ratio(student: Tensor, teacher: Tensor) -> float:
    """Mean per-row standard deviation of ``student`` over that of ``teacher`` (inf for a flat teacher)."""
    s = float(student.detach().to(torch.float64).std(dim=-1, unbiased=False).mean())
    t = float(teacher.detach().to(torch.float64).std(dim=-1, unbiased=False).mean())
    return s / t if t > 0 else float("inf")


def teacher_note(source: str, model: nn.Module | None, random_weights: bool) -> str | None:
    """Why no teacher is used although ``distill`` asks for one (None when one is)."""
    if source == "none":
        return None
    if model is None:
        return "distillation off: the artifact holds no float ANN"
    if random_weights:
        return "distillation off: the float ANN has random weights"
    return None


__all__ = ["DISTILL_SOURCES", "SCALE_FACTOR", "STANDARDIZE", "Teacher", "distillation_kl", "distillation_loss",
           "logit_scale_ratio", "standardized", "teacher_note"]
