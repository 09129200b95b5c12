"""Power-of-two (PoT) weight quantization with a learnable power-of-two scale (paper 001, eqs 14-18).

A b-bit PoT weight is ``alpha * g`` with ``alpha = 2^round(s)`` (a power of two; ``s`` is the
learnable log2 scale, rounded in the forward pass with a straight-through gradient) and ``g``
on the grid of eq 17: zero or ``+-2^-j`` for j = 0 .. 2^(b-1) - 2, i.e. one sign bit and a
(b-1)-bit code of which one value means zero. 2 bits give {0, +-1} * alpha (ternary), 4 bits
{0, +-1, +-1/2, ..., +-1/64} * alpha, 8 bits 127 exponents. Weights are clipped to
[-alpha, alpha] (eq 16) and rounded to the nearest grid value in the linear domain (eq 18).
The initial scale is the power of two nearest to max |w| (in log2).

Gradients: straight-through inside the clip range for the weights; LSQ-style for the scale
(``d w_q / d alpha = g`` through the rounded scale).

:class:`PoTConv2d` / :class:`PoTLinear` are synapses (time-folded frames, per-frame bias gain)
whose weights pass through :func:`pot_quantize` on every forward; ``bits=None`` keeps float
weights. A PoT conv skips the input channels that carry no spike in any frame of the batch
(masked channels of the layer before): it convolves only the live channels (the same result) and
counts the channels offered and used in ``channel_work``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.methods.spquant.config import POT_BITS
from snnconvert.registry import serializable
from snnconvert.simulate.synapse import SynapseConv2d, SynapseLinear, _add_frame_bias, _uniform_gain

SPARSE_BELOW = 0.0
"""Kept share of a pruned conv's outputs below which it computes only the kept ones (the kept weight
rows of every sample, in one batched product, times the im2col columns of the kept positions); at
or above it, the dense conv then the masks. 0: always the dense conv. On this repository's 2-core
CPU (bench/pruned_conv_speed.py: ResNet-20's three conv shapes, batch 64, T = 2) the dense oneDNN
conv then the masks was 1.8-3x faster than the pruned path at every kept share measured (5-80 %),
in inference and in training; the kept work is counted either way (``mac_work``)."""


def pot_exponents(bits: int) -> int:
    """Non-zero magnitudes of the b-bit grid: 2^(b-1) - 1 (capped at 126: below float precision)."""
    if bits not in POT_BITS:
        raise SnnConvertError(f"PoT weight bits {bits!r} are not possible: choose 2, 4 or 8")
    return min(2 ** (bits - 1) - 1, 126)


def pot_grid(bits: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Eq 17: the magnitudes 0, 2^-(L-1), ..., 1/2, 1 of the b-bit grid, ascending."""
    n = pot_exponents(bits)
    return torch.tensor([0.0] + [2.0 ** -j for j in range(n - 1, -1, -1)], dtype=dtype)


def pot_round(x: Tensor, bits: int) -> Tensor:
    """Eq 18: ``x`` (already divided by alpha) clipped to [-1, 1] and rounded to the nearest grid
    value in the linear domain (ties towards the larger magnitude)."""
    grid = pot_grid(bits, torch.float64).to(x.device)
    mid = (grid[1:] + grid[:-1]) / 2
    mag = x.detach().abs().clamp(max=1.0).double()
    idx = torch.bucketize(mag, mid, right=True)
    return (torch.sign(x.detach()) * grid[idx]).to(x.dtype)


def initial_log_scale(weight: Tensor) -> float:
    """log2 of the power of two nearest (in log2) to max |w|."""
    top = float(weight.detach().abs().max())
    return float(round(math.log2(top))) if top > 0 else 0.0


def pot_quantize(weight: Tensor, log_scale: Tensor, bits: int) -> Tensor:
    """Eqs 14-18 with straight-through gradients: ``alpha * pot_round(w / alpha)``, alpha a power of two."""
    s = log_scale + (torch.round(log_scale) - log_scale).detach()
    alpha = torch.pow(2.0, s).to(weight.dtype)
    x = weight / alpha
    xc = torch.clamp(x, -1.0, 1.0)
    g = xc + (pot_round(xc, bits) - xc).detach()
    return g * alpha


class _PoTMixin:
    """Shared parts of the PoT synapses: ``bits`` and the learnable ``log_scale`` (one per layer)."""

    bits: int | None

    def take_synapse(self, syn: nn.Module, bits: int | None) -> Any:
        """Copy ``syn``'s weight, bias and per-frame bias gains, then set up ``bits``-bit PoT; returns self."""
        with torch.no_grad():
            self.weight.copy_(syn.weight)
            if syn.bias is not None:
                self.bias.copy_(syn.bias)
            self.frame_bias_gain.copy_(syn.frame_bias_gain)
        self.init_pot(bits)
        return self

    def init_pot(self, bits: int | None) -> None:
        if bits is not None:
            pot_exponents(bits)
        self.bits = None if bits is None else int(bits)
        w = self.weight  # type: ignore[attr-defined]
        scale = 0.0
        if bits is not None and not w.is_meta and w.numel() and float(w.detach().abs().max()) > 0:
            scale = initial_log_scale(w)
        self.log_scale = nn.Parameter(torch.tensor(scale, dtype=w.dtype), requires_grad=bits is not None)
        self.register_stat_shape()

    def register_stat_shape(self) -> None:
        self.register_buffer("out_shape", torch.zeros(3, dtype=torch.float64), persistent=False)  # type: ignore
        # input channels offered / actually convolved, summed over calls (conv only; see PoTConv2d.forward)
        self.register_buffer("channel_work", torch.zeros(2, dtype=torch.float64), persistent=False)  # type: ignore
        # multiply-accumulates executed / of the dense layer / of the kept outputs, summed over calls (conv only)
        self.register_buffer("mac_work", torch.zeros(3, dtype=torch.float64), persistent=False)  # type: ignore

    def reset_work(self) -> None:
        """Zero the work counters (with :meth:`SpikingNetwork.reset_stats`)."""
        for name in ("channel_work", "mac_work"):
            buf = getattr(self, name, None)
            if isinstance(buf, Tensor):
                buf.zero_()

    def effective_weight(self) -> Tensor:
        w = self.weight  # type: ignore[attr-defined]
        return w if self.bits is None else pot_quantize(w, self.log_scale, self.bits)


def kept_channels(keep: Tensor | None, batch: int, channels: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(idx, valid)``, both (B, K): each sample's kept channels in order, then other channels of
    that sample up to the largest kept count K (``valid`` False there). Every row of ``idx`` holds
    distinct channels, so a scatter along it never writes one channel twice. ``keep`` None: all."""
    if keep is None:
        idx = torch.arange(channels, device=device).expand(batch, channels)
        return idx, torch.ones(batch, channels, dtype=torch.bool, device=device)
    counts = keep.sum(1)
    width = max(int(counts.max()), 1) if batch else 1
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]  # kept first, channel order
    valid = torch.arange(width, device=keep.device)[None, :] < counts[:, None]
    return order, valid


@serializable
class PoTConv2d(_PoTMixin, SynapseConv2d):
    """A conv synapse with b-bit PoT weights (``bits=None``: float). Records its output shape.

    Pruned work is not computed (paper 001, eqs 21-23): called with the (B, C_out) ``channel_mask``
    of its gate, it convolves only the kept output channels of each sample (the weight sliced to
    them); with ``prune_spatial`` > 0 it computes the first step at every position, takes the
    spatial keep mask of eqs 21-22 from it (:func:`~snnconvert.methods.spquant.neuron.spatial_keep`, the
    same call its neuron layer makes) and computes the later steps only at the kept positions
    (im2col columns of those positions times the kept weight rows). Skipped outputs are 0 (no
    bias). While the kept share of the outputs is at least ``sparse_below`` (:data:`SPARSE_BELOW`)
    the dense conv runs and the masks zero the rest instead (the same output; faster on a CPU).
    ``mac_work`` counts the multiply-accumulates executed, those of the dense layer (every input
    channel, output channel, position and step) and those of the kept outputs."""

    def __init__(self, *args: Any, bits: int | None = None, prune_spatial: float = 0.0,
                 prune_precision: str = "none", sparse_below: float = SPARSE_BELOW, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prune_spatial, self.prune_precision = float(prune_spatial), str(prune_precision)
        self.sparse_below = float(sparse_below)
        self.init_pot(bits)

    def serial_config(self) -> dict[str, Any]:
        return {**super().serial_config(), "bits": self.bits, "prune_spatial": self.prune_spatial,
                "prune_precision": self.prune_precision, "sparse_below": self.sparse_below}

    @classmethod
    def from_synapse(cls, syn: SynapseConv2d, bits: int | None) -> PoTConv2d:
        from snnconvert.graph.modules import conv_args

        new = cls(**{**conv_args(syn), "bias": syn.bias is not None}, steps=syn.steps, dtype=syn.weight.dtype,
                  bits=None)
        return new.take_synapse(syn, bits)

    def sparse_capable(self) -> bool:
        """Whether the pruned path applies (plain zero-padded, ungrouped convolution)."""
        return self.groups == 1 and self.padding_mode == "zeros" and not isinstance(self.padding, str)

    def forward(self, frames: Tensor, channel_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        w = self.effective_weight()
        full_fan_in = w[0].numel()
        if self.groups == 1 and frames.dim() == 4:  # input channels silent in every frame (masked): skipped
            with torch.no_grad():
                live = frames.detach().abs().amax(dim=(0, 2, 3)) > 0
                used = int(live.sum())
                self.channel_work += torch.tensor([float(live.numel()), float(used)], dtype=torch.float64)
            if 0 < used < live.numel():
                index = torch.nonzero(live).reshape(-1)
                frames, w = frames.index_select(1, index), w.index_select(1, index)
        pruned = channel_mask is not None or self.prune_spatial > 0
        if pruned and frames.dim() == 4 and self.sparse_capable():
            y = self._pruned_forward(frames, w, channel_mask, full_fan_in)
        else:
            gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
            if gain is not None:
                y = self._conv_forward(frames, w, self.bias * gain)
            else:
                y = _add_frame_bias(self._conv_forward(frames, w, None), self.bias, self.frame_bias_gain)
            if frames.dim() == 4:
                self.mac_work += torch.tensor([float(y.numel() * w[0].numel()), float(y.numel() * full_fan_in),
                                               float(y.numel() * w[0].numel())], dtype=torch.float64)
        with torch.no_grad():
            self.out_shape.copy_(torch.tensor(list(y.shape[1:]), dtype=torch.float64))
        return y

    def _pruned_forward(self, frames: Tensor, w: Tensor, channel_mask: Tensor | None, full_fan_in: int) -> Tensor:
        from snnconvert.methods.spquant.neuron import spatial_keep

        steps = self.steps
        batch = frames.shape[0] // steps
        cout, fan_in = w.shape[0], w[0].numel()
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        ho = (frames.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (frames.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        positions = ho * wo
        wm = w.reshape(cout, fan_in)
        gains = self.frame_bias_gain.to(frames.dtype)
        bias = None if self.bias is None else gains[:, None] * self.bias[None, :]  # (T, C_out)

        def cols(x: Tensor) -> Tensor:  # (N, C_in k k, positions)
            return F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))

        keep = None if channel_mask is None else channel_mask.detach() > 0
        keepf = None if keep is None else keep.to(frames.dtype)
        idx, valid = kept_channels(keep, batch, cout, w.device)  # (B, K): each sample's kept rows first
        rows_done = batch * idx.shape[1]  # (sample, channel) rows computed: kept ones plus the padding
        kept_pairs = float(valid.sum()) if keep is not None else float(batch * cout)
        done = 0.0

        def dense(x: Tensor, step_bias: Tensor | None) -> Tensor:  # (N, C_out, ho, wo), channel-masked
            y = self._conv_forward(x, w, None)
            if step_bias is not None:
                y = y + step_bias.reshape(step_bias.shape[0], 1, cout, 1, 1).expand(
                    -1, y.shape[0] // step_bias.shape[0], -1, -1, -1).reshape(y.shape[0], cout, 1, 1)
            if keepf is not None:
                y = (y.reshape(-1, batch, cout, ho, wo) * keepf[None, :, :, None, None]).reshape(y.shape)
            return y

        def kept_rows(x: Tensor, step_bias: Tensor | None) -> Tensor:
            """(S, B, K, n) outputs of each sample's kept rows for im2col columns ``x`` (S, B, fan_in, n)
            (one batched product for every sample, padded to the largest kept count K; the padding rows
            are other channels of the sample and come out 0)."""
            y = torch.matmul(wm[idx].unsqueeze(0), x)
            if step_bias is not None:
                y = y + step_bias[:, idx][..., None]
            return y * valid[None, :, :, None].to(y.dtype)

        def scatter_rows(y: Tensor) -> Tensor:  # (S, B, K, n) -> (S, B, C_out, n), skipped channels 0
            where = idx[None, :, :, None].expand(y.shape[0], -1, -1, y.shape[3])
            return y.new_zeros(y.shape[0], batch, cout, y.shape[3]).scatter(2, where, y)

        if kept_pairs / (batch * cout) >= self.sparse_below:  # dense is cheaper on this machine: compute, mask
            first = dense(frames[:batch], None if bias is None else bias[:1]).reshape(batch, cout, positions)
            done += float(batch * cout * positions * fan_in)
        else:
            first = scatter_rows(kept_rows(cols(frames[:batch]).unsqueeze(0), None if bias is None else bias[:1]))[0]
            done += float(rows_done * positions * fan_in)
        out = [first.reshape(batch, cout, ho, wo)]
        kept_macs = kept_pairs * positions * fan_in
        if steps > 1:
            pos, where = None, None
            if self.prune_spatial > 0:
                where = spatial_keep(out[0], self.prune_spatial, self.prune_precision)
                pos = torch.nonzero(where.reshape(batch, positions) > 0)[:, 1].reshape(batch, -1)  # same count each
            npos = positions if pos is None else pos.shape[1]
            kept_macs += (steps - 1) * kept_pairs * npos * fan_in
            if kept_pairs * npos / (batch * cout * positions) >= self.sparse_below:  # dense, then masked
                y = dense(frames[batch:], None if bias is None else bias[1:])
                if where is not None:
                    y = (y.reshape(steps - 1, batch, cout, ho, wo) * where[None].to(y.dtype)).reshape(y.shape)
                done += float((steps - 1) * batch * cout * positions * fan_in)
                with torch.no_grad():
                    self.mac_work += torch.tensor([done, float(steps * batch * cout * positions * full_fan_in),
                                                   kept_macs], dtype=torch.float64)
                return torch.cat([out[0], y])
            rest = cols(frames[batch:]).reshape(steps - 1, batch, fan_in, positions)
            if pos is not None:  # the kept positions' columns
                rest = rest.gather(3, pos[None, :, None, :].expand(steps - 1, -1, fan_in, -1))
            y = kept_rows(rest, None if bias is None else bias[1:])  # (T-1, B, K, npos)
            if pos is not None:
                y = y.new_zeros(*y.shape[:3], positions).scatter(
                    3, pos[None, :, None, :].expand(steps - 1, -1, y.shape[2], -1), y)
            out.extend(scatter_rows(y).reshape(steps - 1, batch, cout, ho, wo).unbind(0))
            done += float((steps - 1) * rows_done * npos * fan_in)
        with torch.no_grad():
            self.mac_work += torch.tensor([done, float(steps * batch * cout * positions * full_fan_in), kept_macs],
                                          dtype=torch.float64)
        return torch.cat(out)


@serializable
class PoTLinear(_PoTMixin, SynapseLinear):
    """A linear synapse with b-bit PoT weights (``bits=None``: float)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, steps: int = 1,
                 bits: int | None = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias, steps=steps, dtype=dtype, device=device)
        self.init_pot(bits)

    def serial_config(self) -> dict[str, Any]:
        return {**super().serial_config(), "bits": self.bits}

    @classmethod
    def from_synapse(cls, syn: SynapseLinear, bits: int | None) -> PoTLinear:
        new = cls(syn.in_features, syn.out_features, syn.bias is not None, steps=syn.steps, dtype=syn.weight.dtype)
        return new.take_synapse(syn, bits)

    def forward(self, frames: Tensor) -> Tensor:
        w = self.effective_weight()
        gain = None if self.bias is None else _uniform_gain(self.frame_bias_gain)
        if gain is not None:
            y = F.linear(frames, w, self.bias * gain)
        else:
            y = _add_frame_bias(F.linear(frames, w), self.bias, self.frame_bias_gain)
        with torch.no_grad():
            self.out_shape.copy_(torch.tensor([y.shape[-1], 1, 1], dtype=torch.float64))
        return y
