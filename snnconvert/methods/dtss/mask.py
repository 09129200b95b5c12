"""Dynamic time-step spiking (DTSS) masks: each layer learns how many time steps it keeps.

Datta et al., "Spiking Neural Networks with Dynamic Time Steps for Vision Transformers",
§III.A, eqs 3-7. For a layer ``l`` and a maximum of ``T_max`` steps:

* ``TP_l`` (the trainable score vector, ``T_max`` entries, kept non-negative);
* ``coeff``: the all-one lower-triangular ``T_max x T_max`` matrix, ``TS_l = TP_l . coeff``
  (eq 4), i.e. ``TS_l[t] = sum_{i >= t} TP_l[i]``: non-increasing in ``t`` when ``TP_l >= 0``;
* ``TM_l[t] = 1 if TS_l[t] >= 1 else 0`` (eq 5), whose backward is the box surrogate of eq 6,
  ``d TM / d TS = 1`` for ``0 < TS < 2`` (``box:1`` in :mod:`snnconvert.neurons.surrogates`);
* ``O_l[t] = Y_l[t] * TM_l[t]`` (eq 7): the neuron layer's spikes, zero at masked steps.

Because ``TS`` is non-increasing the mask is a prefix of ones: the layer keeps its first
``T_l = sum_t TM_l[t]`` steps and skips the rest. A floor (``min_steps``, default 1; not in the
paper) forces the first steps on whatever the scores say, so no layer can learn ``T_l = 0`` and
silence the network (what a heavy mask loss did to ResNet-20); the forced steps carry no
gradient, and ``min_steps = 0`` is the paper's eq 5 alone. At inference (evaluation mode, or no
gradient) the mask is fixed: it zeroes the skipped frames and marks its output with the
number of kept steps (:func:`snnconvert.simulate.gating.mark_active`); synapses that read it run only on those frames
(:mod:`snnconvert.simulate.synapse`), so the skipped work is never executed and the operation
counts see zeros there.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.neurons.surrogates import get_surrogate, spike
from snnconvert.registry import serializable
from snnconvert.simulate.gating import mark_active

MASK_SURROGATE = "box:1"
"""Eq 6 as a surrogate of ``x = TS - 1``: 1 for ``0 < TS < 2``."""

LAST_SCORE_FLOOR = 1e-3
"""The projection keeps ``TP[T_max - 1] >= this``: every ``TS`` stays above 0, inside the open
support of eq 6, so a step the mask loss removed can still be re-enabled."""


def coefficient_matrix(steps: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Eq 4's ``coeff``: ones on and below the diagonal."""
    return torch.tril(torch.ones(steps, steps, dtype=dtype))


def initial_scores(steps: int, init_steps: int) -> Tensor:
    """``TP`` whose mask keeps the first ``init_steps`` steps: ``TS = 1.5`` there and
    ``TS`` falling linearly from below 0.5 to ``0.5/(T_max - init_steps + 1)`` after them, so
    every step sits inside the surrogate's support ``0 < TS < 2`` and can be re-enabled."""
    if not 1 <= init_steps <= steps:
        raise SnnConvertError(f"DTSS init_steps={init_steps} is not possible: give 1..{steps}")
    ts = torch.empty(steps, dtype=torch.float64)
    ts[:init_steps] = 1.5
    tail = steps - init_steps
    for j in range(init_steps, steps):
        ts[j] = 0.5 * (steps - j) / (tail + 1)
    tp = ts.clone()
    tp[:-1] = ts[:-1] - ts[1:]
    return tp.float()


def mask_values(scores: Tensor) -> tuple[Tensor, Tensor]:
    """``(TS, TM)`` of the score vector ``TP`` (eqs 4-5); TM carries the eq-6 surrogate."""
    steps = scores.numel()
    # TP >= 0 in value (a prefix mask even for negative scores), with the plain eq-10/11 gradient
    # (a clamp would stop it at TP = 0, where the projection after each step leaves entries)
    tp = scores + (scores.clamp(min=0.0) - scores).detach()
    ts = tp @ coefficient_matrix(steps, scores.dtype).to(scores.device)
    fire = lambda x: torch.ge(x, 0.0).to(x.dtype)  # noqa: E731 - x = TS - 1
    box = get_surrogate(MASK_SURROGATE)
    return ts, spike(ts - 1.0, fire, box.grad)


def floored(mask: Tensor, min_steps: int) -> Tensor:
    """``mask`` with its first ``min_steps`` entries forced to 1 (no gradient reaches them)."""
    if min_steps <= 0:
        return mask
    floor = torch.arange(mask.numel(), device=mask.device) < min_steps
    return torch.where(floor, torch.ones_like(mask), mask)


@serializable
class DTSSMask(nn.Module):
    """The DTSS layer of one neuron layer (see the module docstring): ``O = Y * TM``.

    ``group`` names the layer group of the mask loss (``sps``, ``qkv``, ``attn``, ``mlp`` for a
    Spikformer; ``all`` for a CNN). ``min_steps`` is the floor: the first ``min_steps`` steps
    are always kept. ``force_full`` (not saved) disables the mask: the fixed-``T_max`` baseline
    of the reports; ``loss_weight`` (not saved) scales this mask's eq-8 term (the method's
    warm-up sets it).
    """

    snn_kind = "linear"
    gates_steps = True  # a time gate (snnconvert.simulate.gating)
    serial_params: ClassVar[tuple[str, ...]] = ("steps", "group", "init_steps", "layer", "min_steps")

    def __init__(self, steps: int, group: str = "all", init_steps: int | None = None, layer: str = "",
                 min_steps: int = 1) -> None:
        super().__init__()
        self.steps, self.group, self.layer = int(steps), str(group), str(layer)
        self.init_steps = int(init_steps if init_steps is not None else steps)
        if not 0 <= int(min_steps) <= self.steps:
            raise SnnConvertError(f"DTSS min_steps={min_steps} is not possible: give 0..{self.steps}")
        self.min_steps = int(min_steps)
        self.scores = nn.Parameter(initial_scores(self.steps, self.init_steps))
        self.force_full = False
        self.loss_weight = 1.0

    def mask(self) -> Tensor:
        """TM (``steps`` entries in {0, 1}), differentiable through eq 6; the first
        ``min_steps`` entries are 1."""
        return floored(mask_values(self.scores)[1], self.min_steps)

    @torch.no_grad()
    def kept_steps(self) -> int:
        """T_l: the number of kept steps (the mask is a prefix of ones)."""
        return self.steps if self.force_full else int(self.mask().sum())

    @torch.no_grad()
    def project(self) -> None:
        """Keep ``TP >= 0`` after an optimizer step, so ``TS`` stays non-increasing (no gaps), and
        ``TP[-1] >= LAST_SCORE_FLOOR`` so every step stays inside eq 6's support."""
        self.scores.clamp_(min=0.0)
        self.scores[-1:].clamp_(min=LAST_SCORE_FLOOR)

    def forward(self, frames: Tensor) -> Tensor:
        batch = frames.shape[0] // self.steps
        if self.force_full:
            return frames
        if self.training and torch.is_grad_enabled():  # training: O = Y * TM, differentiable (eqs 7, 9-11)
            tm = self.mask().to(frames.dtype)
            shaped = frames.reshape(self.steps, batch, *frames.shape[1:])
            out = shaped * tm.view((self.steps,) + (1,) * (shaped.dim() - 1))
            return out.reshape(frames.shape)
        kept = self.kept_steps()
        out = frames.clone()
        out[kept * batch:] = 0
        return mark_active(out, kept)

    def extra_repr(self) -> str:
        return f"steps={self.steps}, group={self.group!r}, layer={self.layer!r}, min_steps={self.min_steps}"


def dtss_masks(model: nn.Module) -> dict[str, DTSSMask]:
    """Every DTSS mask of ``model`` by module path (``body.`` removed)."""
    return {name.removeprefix("body."): m for name, m in model.named_modules() if isinstance(m, DTSSMask)}


def t_avg(kept: list[int] | dict[str, Any]) -> float:
    """Eq 3: the mean of the per-layer step counts ``T_l``."""
    values = list(kept.values()) if isinstance(kept, dict) else list(kept)
    if not values:
        raise SnnConvertError("T_avg needs at least one layer")
    return float(sum(values)) / len(values)
