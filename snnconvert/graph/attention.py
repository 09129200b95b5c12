"""Spiking self-attention: the product of two spiking tensors with a fixed scale, no softmax.

``SpikingAttention`` computes, per head ``h`` and per frame (Spikformer's SSA, DTSS paper fig 1b)::

    out_h = (Q_h K_h^T) V_h * scale         Q_h, K_h, V_h: (tokens, head_dim)

on inputs laid out as conv feature maps (B, C, H, W) with ``C = heads * head_dim`` and
``tokens = H * W``. It is one module (an fx leaf, kind ``linear``: it needs no weights and no
neuron) in both worlds: in the ANN its inputs are ReLU outputs; in the time-folded SNN every
row of the batch is one (time step, sample) frame, so the products are formed per time step on
the spike frames, exactly as a spiking transformer does.

Operation counts (:meth:`products`): the dense ANN layer needs ``2 * heads * N^2 * d`` MACs;
with binary spikes ``Q K^T`` needs one addition per pair of coincident spikes, and
``A V`` one addition per non-zero ``A[n, m]`` times spike ``V[m, c]`` -- both are counted
exactly from the frames. At inference a DTSS-masked input (see :mod:`snnconvert.methods.dtss.mask`)
limits the work to its kept frames.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from snnconvert.registry import serializable
from snnconvert.simulate.gating import active_steps


def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, C, H, W) -> (B, heads, N, d)."""
    b, c = x.shape[:2]
    return x.reshape(b, heads, c // heads, -1).transpose(-1, -2)


@serializable
class SpikingAttention(nn.Module):
    """``(Q K^T) V * scale`` per head on (B, C, H, W) inputs (see the module docstring)."""

    snn_kind = "linear"
    serial_params: ClassVar[tuple[str, ...]] = ("heads", "scale", "steps")

    def __init__(self, heads: int, scale: float = 0.125, steps: int = 1) -> None:
        super().__init__()
        self.heads, self.scale, self.steps = int(heads), float(scale), int(steps)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        kept = [s for s in (active_steps(q), active_steps(k), active_steps(v)) if s is not None]
        if kept and self.steps > 1 and min(kept) < self.steps:  # a DTSS mask zeroed the later frames
            live = min(kept) * (q.shape[0] // self.steps)
            out = q.new_zeros(q.shape)
            out[:live] = self._product(q[:live], k[:live], v[:live])
            return out
        return self._product(q, k, v)

    def _product(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        qh, kh, vh = _heads(q, self.heads), _heads(k, self.heads), _heads(v, self.heads)
        out = (qh @ kh.transpose(-1, -2)) @ vh * self.scale  # (B, heads, N, d)
        return out.transpose(-1, -2).reshape(q.shape)

    @torch.no_grad()
    def products(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[float, float]:
        """(dense MACs per row, non-zero products over all rows) of ``(Q K^T) V``; for binary
        (or scaled binary) spikes the second is the number of accumulates the SNN performs."""
        qh, kh, vh = (_heads(t, self.heads).ne(0).to(torch.float32) for t in (q, k, v))
        n, d = qh.shape[-2], qh.shape[-1]
        dense = 2.0 * self.heads * n * n * d
        scores = qh @ kh.transpose(-1, -2)  # coincident spike pairs per (n, m)
        first = float(scores.sum())
        second = float((scores.ne(0).to(torch.float32) @ vh).sum())
        return dense, first + second

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale:g}"
