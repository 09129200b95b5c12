"""Dropout of a time-folded SNN: one mask per sample, shared by all its time steps.

Conversion keeps the ANN's ``nn.Dropout`` / ``nn.Dropout2d`` layers in place (identities at
inference) and turns them into :class:`FrameDropout`. In training it drops the same neurons at
every step of a sample, as SNN dropout is defined (Rathi & Roy's DIET-SNN, which the M-LIF paper
000 follows, A.3: "D ... SNN: 0.2"): a mask drawn per frame would turn dropout into noise on
the spike count rather than removing a neuron from that sample's network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from snnconvert.neurons.base import unfold_time
from snnconvert.registry import serializable
from snnconvert.simulate.gating import active_steps, mark_active


@serializable
class FrameDropout(nn.Module):
    """Dropout with drop probability ``p`` over ``frames`` time-major frames per sample.

    ``channelwise`` drops whole channels (``nn.Dropout2d``), else single neurons. Kept values are
    scaled by ``1 / (1 - p)`` in training; evaluation, or ``p = 0``, returns the input itself.
    When the leading dimension is not a multiple of ``frames`` (a layer that runs a different
    number of steps), each frame draws its own mask."""

    snn_kind = "linear"
    serial_params = ("p", "frames", "channelwise")

    def __init__(self, p: float = 0.5, frames: int = 1, channelwise: bool = False) -> None:
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), not {p}")
        if int(frames) < 1:
            raise ValueError(f"frames must be >= 1, not {frames}")
        self.p, self.frames, self.channelwise = float(p), int(frames), bool(channelwise)

    def forward(self, frames: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return frames
        steps = self.frames if frames.shape[0] % self.frames == 0 else 1
        timed = unfold_time(frames, steps)  # (steps, B, ...): one mask per sample, broadcast over its steps
        shape = timed.shape[1:3] + (1,) * (timed.dim() - 3) if self.channelwise else timed.shape[1:]
        keep = torch.empty(shape, dtype=frames.dtype, device=frames.device).bernoulli_(1.0 - self.p)
        dropped = (timed * (keep / (1.0 - self.p))).reshape(frames.shape)
        return mark_active(dropped, active_steps(frames))

    def extra_repr(self) -> str:
        return f"p={self.p:g}, frames={self.frames}" + (", channelwise" if self.channelwise else "")


def frame_dropout(module: nn.Module, frames: int) -> FrameDropout | None:
    """The :class:`FrameDropout` that replaces ``module`` (an ``nn.Dropout`` or ``nn.Dropout2d``),
    or None for any other module."""
    if type(module) is nn.Dropout:
        return FrameDropout(module.p, frames)
    if type(module) is nn.Dropout2d:
        return FrameDropout(module.p, frames, channelwise=True)
    return None
