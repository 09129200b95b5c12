"""Seeded data augmentation on image tensors: random crop with zero padding and horizontal flip.

The random draws are separate from applying them so that a distributed run can draw them for
the whole global batch (identically on every rank) and apply each rank's share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class AugmentDraw:
    """Per-image crop offsets (top, left) in ``[0, 2 pad]`` and flip flags."""

    top: Tensor
    left: Tensor
    flip: Tensor

    def __getitem__(self, index: slice) -> AugmentDraw:
        return AugmentDraw(self.top[index], self.left[index], self.flip[index])


def default_pad(height: int) -> int:
    """Crop padding: ``height // 8`` (4 for 32x32 CIFAR images)."""
    return max(height // 8, 0)


def draw(n: int, pad: int, generator: torch.Generator, *, flip: bool = True) -> AugmentDraw:
    """Draw ``n`` crop offsets, then ``n`` flip flags, from ``generator`` (CPU)."""
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return AugmentDraw(top, left, flips)


def apply(images: Tensor, d: AugmentDraw, pad: int) -> Tensor:
    """Crop each image (..., H, W) of the batch at its offset from the zero-padded image, then
    flip it horizontally where drawn. Offset ``pad`` with no flip is the identity."""
    n, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    flat = images.reshape(n, -1, height, width)
    if pad > 0:
        padded = F.pad(flat, (pad, pad, pad, pad))
        device = images.device
        rows = d.top.to(device).view(n, 1) + torch.arange(height, device=device).view(1, height)
        cols = d.left.to(device).view(n, 1) + torch.arange(width, device=device).view(1, width)
        batch = torch.arange(n, device=device).view(n, 1, 1)
        flat = padded[batch, :, rows.view(n, height, 1), cols.view(n, 1, width)]  # (n, H, W, C)
        flat = flat.permute(0, 3, 1, 2)
    flip = d.flip.to(images.device).view(n, 1, 1, 1)
    flat = torch.where(flip, flat.flip(-1), flat)
    return flat.reshape(images.shape).contiguous()


def augment(images: Tensor, generator: torch.Generator, pad: int | None = None, *, flip: bool = True) -> Tensor:
    """Random crop (zero padding ``pad``, default ``H // 8``) and horizontal flip, seeded."""
    pad = default_pad(images.shape[-2]) if pad is None else pad
    return apply(images, draw(images.shape[0], pad, generator, flip=flip), pad)
