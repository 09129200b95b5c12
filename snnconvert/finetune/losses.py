"""Training losses on an SNN's output: CE of the decoded output, and TET.

Per-step logits come from the body's output frames without a second model implementation:
the decoder is a weighted sum ``y = sum_k w_k f_k`` over the T output frames, and step k's
logits are ``T w_k f_k``, so their mean over the steps is the decoded output ``y`` (for rate-type
codings, ``w_k = 1/T``, step k's logits are the frame itself).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconvert.neurons.base import unfold_time
from snnconvert.simulate.synapse import WeightedSumDecoder


def ce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the time-averaged (decoded) output, mean over the batch."""
    return F.cross_entropy(logits, labels)


def tet_loss(step_logits: Tensor, labels: Tensor) -> Tensor:
    """Temporal efficient training loss (Deng et al., ICLR 2022, eq 8 with lambda = 0):
    ``L_TET = 1/T sum_t CE(O(t), y)``, the mean over the T steps of the cross-entropy of each
    step's output ``O(t)``; ``step_logits`` is (T, B, classes)."""
    steps = step_logits.shape[0]
    flat = step_logits.reshape(steps * step_logits.shape[1], -1)
    return F.cross_entropy(flat, labels.repeat(steps))  # mean over T*B = mean over t of per-step means


class TrainView(nn.Module):
    """Runs an SNN's encoder and body once and returns ``(decoded logits, per-step logits)``.

    Per-step logits (T, B, classes) are ``T w_k frame_k`` for a ``WeightedSumDecoder`` (their
    mean is the decoded output); any other decoder gives its output as a single step."""

    def __init__(self, snn: nn.Module) -> None:
        super().__init__()
        self.snn = snn

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        snn = self.snn
        frames = snn.body(snn.encoder(images.to(snn.compute_dtype())))
        logits = snn.decoder(frames)
        decoder = snn.decoder
        if isinstance(decoder, WeightedSumDecoder):
            steps = decoder.weights.numel()
            per_step = unfold_time(frames, steps)
            w = (decoder.weights.to(per_step.dtype) * steps).view((steps,) + (1,) * (per_step.dim() - 1))
            return logits, per_step * w
        return logits, logits.unsqueeze(0)


def tet_regularized(step_logits: Tensor, labels: Tensor, lam: float, target: float) -> Tensor:
    """TET with its regularizer (Deng et al. 2022, eq 9): ``(1 - lam) L_TET + lam L_MSE``,
    ``L_MSE = 1/T sum_t MSE(O(t), phi)``, the mean squared distance of every step's logits from the
    constant ``phi = target``; ``lam = 0`` is :func:`tet_loss`."""
    tet = tet_loss(step_logits, labels)
    if lam == 0:
        return tet
    return (1.0 - lam) * tet + lam * F.mse_loss(step_logits, torch.full_like(step_logits, target))


def loss_of(kind: str, logits: Tensor, step_logits: Tensor, labels: Tensor, *, tet_lambda: float = 0.0,
            tet_target: float = 1.0) -> Tensor:
    """The configured loss: ``ce``, or ``tet`` (with its regularizer when ``tet_lambda`` > 0)."""
    if kind == "tet":
        return tet_regularized(step_logits, labels, tet_lambda, tet_target)
    return ce_loss(logits, labels)


__all__ = ["TrainView", "ce_loss", "loss_of", "tet_loss", "tet_regularized"]
