"""Streaming histograms of activations, collected in one pass, and clip-range selection."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from snnconvert.errors import SnnConvertError

CLIP_METHODS = ("max", "percentile", "mse")
MAX_ACTIVATION = 1e30  # larger calibration values mean damaged weights (histogram ranges would overflow)


class RangeDoublingHistogram:
    """Histogram of |x| per channel (or per tensor) whose range doubles as larger values arrive.

    Doubling merges neighbouring bin pairs, so no sample is re-read and bins stay aligned:
    the whole calibration set is summarised in one pass.
    """

    def __init__(self, channels: int, bins: int = 2048) -> None:
        if bins % 2:
            raise ValueError("bins must be even")
        self.channels = channels
        self.bins = bins
        self.counts = torch.zeros(channels, bins, dtype=torch.float64)
        self.top = torch.zeros(channels, dtype=torch.float64)  # histogram covers [0, top)
        self.max_seen = torch.zeros(channels, dtype=torch.float64)
        self.min_seen = torch.zeros(channels, dtype=torch.float64)
        self.total = torch.zeros(channels, dtype=torch.float64)

    def update(self, x: Tensor) -> None:
        """Add a batch; ``x`` is (N, C, ...) when per channel, anything when per tensor."""
        x = x.detach()
        values = x.transpose(0, 1).reshape(self.channels, -1) if self.channels > 1 else x.reshape(1, -1)
        self.min_seen = torch.minimum(self.min_seen, values.amin(dim=1).double())
        values = values.clamp(min=0)
        batch_max = values.amax(dim=1).double()
        if not bool(torch.isfinite(batch_max).all()) or bool((batch_max > MAX_ACTIVATION).any()):
            raise SnnConvertError("activations overflow (NaN, inf or above 1e30) during calibration; check the "
                                  "model's weights and that the data matches its input")
        self.max_seen = torch.maximum(self.max_seen, batch_max)
        for c in range(self.channels):
            if batch_max[c] >= self.top[c]:
                self._grow(c, float(batch_max[c]))
        if self.channels == 1:  # one fast histogram over [0, top)
            top = float(self.top[0])
            counts = torch.histc(values.float().view(-1), bins=self.bins, min=0.0, max=top)
            self.counts[0] += counts.double()
        else:
            width = (self.top / self.bins).clamp(min=1e-30).float()
            idx = torch.clamp((values.float() / width[:, None]).to(torch.int64), 0, self.bins - 1)
            flat = idx + torch.arange(self.channels).view(-1, 1) * self.bins
            counts = torch.bincount(flat.reshape(-1), minlength=self.channels * self.bins)
            self.counts += counts.view(self.channels, self.bins).double()
        self.total += values.shape[1]

    def _grow(self, c: int, needed: float) -> None:
        if self.top[c] <= 0:
            self.top[c] = needed * 1.0001 if needed > 0 else 1e-6
            return
        while self.top[c] <= needed:
            merged = self.counts[c].view(self.bins // 2, 2).sum(dim=1)
            self.counts[c].zero_()
            self.counts[c, : self.bins // 2] = merged
            self.top[c] *= 2

    def edges(self) -> Tensor:
        """Upper edge of every bin, (channels, bins)."""
        width = self.top / self.bins
        return width[:, None] * torch.arange(1, self.bins + 1, dtype=torch.float64)[None, :]

    def clip(self, method: str, percentile: float, bits: int) -> Tensor:
        """Clip value per channel by ``method`` (``max``, ``percentile`` or ``mse``)."""
        if method == "max":
            return self.max_seen.clone()
        if method == "percentile":
            return self._percentile(percentile)
        if method == "mse":
            return self._mse(bits)
        raise ValueError(f"unknown clip method {method!r}; choose one of {', '.join(CLIP_METHODS)}")

    def _percentile(self, p: float) -> Tensor:
        cdf = self.counts.cumsum(dim=1) / self.total.clamp(min=1)[:, None]
        idx = torch.searchsorted(cdf, torch.full((self.channels, 1), p / 100.0, dtype=torch.float64))
        idx = idx.clamp(max=self.bins - 1).squeeze(1)
        value = self.edges().gather(1, idx.view(-1, 1)).squeeze(1)
        return torch.minimum(value, self.max_seen)

    def _mse(self, bits: int) -> Tensor:
        levels = 2**bits - 1
        centers = self.edges() - (self.top / self.bins)[:, None] / 2
        best = torch.empty(self.channels, dtype=torch.float64)
        for c in range(self.channels):
            candidates = torch.linspace(0.02, 1.0, 200, dtype=torch.float64) * max(float(self.max_seen[c]), 1e-12)
            step = candidates / levels
            over = (centers[c][None, :] - candidates[:, None]).clamp(min=0) ** 2
            inside = (centers[c][None, :] <= candidates[:, None]).double() * (step[:, None] ** 2 / 12)
            err = ((over + inside) * self.counts[c][None, :]).sum(dim=1)
            best[c] = candidates[int(torch.argmin(err))]
        return best

    def clipped_share(self, clip: Tensor) -> Tensor:
        """Share of observed values above ``clip`` per channel."""
        above = (self.edges() - (self.top / self.bins)[:, None] / 2) > clip[:, None]
        return (self.counts * above).sum(dim=1) / self.total.clamp(min=1)


@dataclass
class ClipStats:
    """What calibration decided for one quantizer."""

    name: str
    clip_low: float
    clip_high: float  # largest clip over channels when per channel
    observed_max: float
    clipped_share: float
    method: str

    @classmethod
    def from_histogram(cls, name: str, hist: RangeDoublingHistogram, clip: Tensor, method: str) -> ClipStats:
        share = hist.clipped_share(clip)
        weights = hist.total / hist.total.sum().clamp(min=1)
        low = float(hist.min_seen.min()) if float(hist.min_seen.min()) < 0 else 0.0
        return cls(
            name=name,
            clip_low=low,
            clip_high=float(clip.max()),
            observed_max=float(hist.max_seen.max()),
            clipped_share=float((share * weights).sum()) if math.isfinite(float(share.sum())) else 0.0,
            method=method,
        )
