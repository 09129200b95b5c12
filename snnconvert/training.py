"""The one training loop: every stage that trains (SNN fine-tuning by BPTT, quantization-aware
training, the float ANN's own fine-tuning) runs its epochs through :func:`train_epoch`.

A stage supplies the batches, a ``compute(images, labels) -> StepLoss`` closure and optional
hooks; the loop owns what they share: moving batches to the device, the finite-loss check,
``zero_grad`` / ``backward`` / gradient clipping / ``step``, the running totals and the
progress bar. Under ``torchrun`` the stage passes the batches of its own rank and the totals
are summed over the ranks with :meth:`EpochTotals.summed`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from snnconvert.distributed import DistContext
from snnconvert.errors import SnnConvertError
from snnconvert.progress import Progress


@dataclass
class StepLoss:
    """What one step computed: the loss that is minimized, the task loss inside it (cross-entropy,
    for the stuck-training check) and the logits (for the running top-1)."""

    loss: Tensor
    ce: Tensor
    logits: Tensor


@dataclass
class EpochTotals:
    """Sums over one epoch of one rank (or of all ranks after :meth:`summed`). ``ce_tail`` and
    ``tail_seen`` cover the epoch's second half only."""

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0
    seconds: float = 0.0
    ce_tail: float = 0.0
    tail_seen: float = 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1.0)

    @property
    def top1(self) -> float:
        return self.correct / max(self.seen, 1.0)

    @property
    def tail_ce(self) -> float:
        return self.ce_tail / max(self.tail_seen, 1.0)

    @property
    def images_per_s(self) -> float:
        return self.seen / max(self.seconds, 1e-12)

    def summed(self, ctx: DistContext, device: torch.device) -> EpochTotals:
        """Totals over every rank; ``seconds`` is the ranks' mean."""
        names = [f.name for f in fields(self)]
        values = dict(zip(names, ctx.sum([getattr(self, n) for n in names], device), strict=True))
        values["seconds"] /= ctx.world_size
        return EpochTotals(**values)


@dataclass
class StepHooks:
    """Optional calls around each step: ``before(k, images)`` with the batch index in the epoch
    (on the device's images, before the forward pass), ``after_backward()`` (gradients present,
    not yet clipped) and ``after(k)`` (after the optimizer step)."""

    before: Callable[[int, Tensor], None] | None = None
    after_backward: Callable[[], None] | None = None
    after: Callable[[int], None] | None = None


def _diverged_default(loss: float, k: int) -> str:
    return f"training diverged: the loss became {loss} at batch {k + 1}; lower the learning rate"


def train_epoch(
    batches: Iterable[tuple[Tensor, Tensor]],
    total: int,
    compute: Callable[[Tensor, Tensor], StepLoss],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    grad_clip: float | None = None,
    hooks: StepHooks | None = None,
    description: str = "training",
    show: bool = False,
    world_size: int = 1,
    diverged: Callable[[float, int], str] = _diverged_default,
) -> EpochTotals:
    """Run at most ``total`` optimizer steps over ``batches`` and return this rank's totals.

    A non-finite loss stops the run with ``SnnConvertError(diverged(loss, k))`` before the
    optimizer sees it. ``grad_clip`` clips the global norm of every parameter the optimizer holds.
    """
    hooks = hooks or StepHooks()
    totals = EpochTotals()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    start = time.perf_counter()
    with Progress(description, total=total, show=show) as progress:
        for k, (images, labels) in enumerate(batches):
            if k >= total:
                break
            images, labels = images.to(device), labels.to(device)
            if hooks.before is not None:
                hooks.before(k, images)
            out = compute(images, labels)
            value = float(out.loss.detach())
            if not math.isfinite(value):
                raise SnnConvertError(diverged(value, k))
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if hooks.after_backward is not None:
                hooks.after_backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            if hooks.after is not None:
                hooks.after(k)
            n = len(labels)
            totals.loss_sum += value * n
            if 2 * k >= total:
                totals.ce_tail += float(out.ce.detach()) * n
                totals.tail_seen += n
            totals.correct += float((out.logits.detach().argmax(1) == labels).sum())
            totals.seen += n
            elapsed = time.perf_counter() - start
            progress.advance(loss=totals.loss, top1=f"{totals.top1:.2%}",
                             img_s=f"{totals.seen * world_size / max(elapsed, 1e-9):.1f}")
    totals.seconds = time.perf_counter() - start
    return totals


__all__ = ["EpochTotals", "StepHooks", "StepLoss", "train_epoch"]
