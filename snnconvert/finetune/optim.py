"""Optimizers (Adam, SGD) with parameter groups for thresholds and leaks, and epoch schedules.

Schedule factor at epoch ``e`` (0-based), applied to the scheduled groups' base lr:

* warm-up (``e < W = min(warmup_epochs, E / 2)``): ``warmup_factor + (1 - warmup_factor) * e / W``,
  a linear rise (000 A.3: from lr/10 to lr over the first 10 epochs);
* ``none``: 1; ``step``: ``gamma ** (number of milestones <= e)`` (milestones count from epoch 0,
  warm-up included, as in the paper); ``cosine``: ``(1 + cos(pi (e - W) / (E - W))) / 2``.

``e`` may be fractional: the training loop sets the lr at every step from ``epoch + k / batches``
(a warm-up that rises step by step, a cosine that falls step by step). Warm-up never takes more
than half the run, so a 1-epoch run warms up over its first half and then decays.

Threshold and leak groups with their own ``threshold_lr`` / ``leak_lr`` keep that lr fixed
(000 A.3 trains CIFAR-100 thresholds at a fixed 0.01); without one they join the weights' group.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch
from torch import nn

from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import FinetuneConfig


def warmup_span(config: FinetuneConfig) -> float:
    """Effective warm-up in epochs: ``warmup_epochs``, at most half the run."""
    return min(float(config.warmup_epochs), config.epochs / 2.0)


def schedule_factor(config: FinetuneConfig, epoch: float) -> float:
    """Multiplier of the base lr at (possibly fractional) ``epoch`` (see module docstring)."""
    warm = warmup_span(config)
    if epoch < warm:
        return config.warmup_factor + (1.0 - config.warmup_factor) * epoch / warm
    if config.schedule == "step":
        return config.gamma ** bisect.bisect_right(list(config.milestones), epoch)
    if config.schedule == "cosine":
        span = max(config.epochs - warm, 1e-12)
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch - warm, span) / span))
    return 1.0


def lr_sequence(config: FinetuneConfig, base_lr: float | None = None) -> list[float]:
    """The weights' lr at each epoch ``0 .. epochs-1``."""
    lr = config.lr if base_lr is None else base_lr
    return [lr * schedule_factor(config, e) for e in range(config.epochs)]


def param_groups(groups: dict[str, list[nn.Parameter]], config: FinetuneConfig) -> list[dict[str, Any]]:
    """Optimizer groups: ``weights`` (``other``) at the scheduled lr; ``threshold`` / ``leak`` at
    their own fixed lr when given, else merged into the weights' group."""
    weights = [p for p in groups.get("other", []) if p.requires_grad]
    out: list[dict[str, Any]] = []
    for key, lr in (("threshold", config.threshold_lr), ("leak", config.leak_lr)):
        params = [p for p in groups.get(key, []) if p.requires_grad]
        if not params:
            continue
        if lr is None:
            weights += params
        else:
            out.append({"params": params, "lr": lr, "base_lr": lr, "scheduled": False, "name": key})
    if weights:
        out.insert(0, {"params": weights, "lr": config.lr, "base_lr": config.lr, "scheduled": True,
                       "name": "weights"})
    if not out:
        raise SnnConvertError("nothing to train: the network has no trainable parameters")
    return out


def build_optimizer(groups: dict[str, list[nn.Parameter]], config: FinetuneConfig) -> torch.optim.Optimizer:
    """Adam or SGD (momentum, weight decay) over :func:`param_groups`."""
    pg = param_groups(groups, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(pg, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(pg, lr=config.lr, weight_decay=config.weight_decay)


class EpochSchedule:
    """Sets each scheduled group's lr at the start of an epoch; its state is the epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: FinetuneConfig) -> None:
        self.optimizer = optimizer
        self.config = config
        self.epoch = 0

    def set_epoch(self, epoch: int) -> float:
        """Apply epoch ``epoch``'s lr; returns the weights' lr."""
        self.epoch = int(epoch)
        return self.set_position(float(self.epoch))

    def set_position(self, position: float) -> float:
        """Apply the lr at fractional epoch ``position`` (a step inside the current epoch); returns
        the weights' lr. The state (the epoch) does not change."""
        factor = schedule_factor(self.config, position)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor if group["scheduled"] else group["base_lr"]
        return self.current_lr()

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
