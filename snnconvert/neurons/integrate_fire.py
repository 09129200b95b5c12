"""Integrate-and-fire (IF) neurons with soft reset, and max-pooling of rate-coded spike trains.

IF dynamics (M-LIF paper, eqs 1-2 with leak beta = 1, in units where the threshold theta = 1;
the layer's real threshold is folded into the weights)::

    u[0] = u0                                  (u0 = 1/2 with half_init, else 0)
    u[t] = u[t-1] + z[t] - o[t-1]              (reset by subtraction, "soft reset")
    o[t] = 1 if u[t] >= 1 else 0               (at most one spike per step)

(Eq 1 subtracts the reset one step later; subtracting right after the spike is the same
recursion. The comparison is inclusive, eq 2 writes ``>``: with ``>=`` the count formula below
holds exactly, ties rounding up.) The membrane has no lower bound: negative charge is kept.

For a constant input ``z`` in [0, 1] the spike count after ``T`` steps is exactly
``N(T) = floor(T * z + u0)``: with ``u0 = 0`` the decoded rate ``N/T`` truncates ``z`` (biased
down by 1/(2T) on average), with ``u0 = 1/2`` it rounds ``z`` to the nearest multiple of
``1/T`` (unbiased). Inputs above 1 saturate at one spike per step (the decoded value is clipped
at theta, which realises the clip of a bounded ReLU or a percentile threshold); negative net
input never fires (ReLU).

Max-pooling (:class:`RateMaxPool`): the pool of the running sums. Each input train's running
sum ``S_i[t] = sum_{k<=t} x_i[k]`` is max-pooled into ``M[t]`` and the layer emits the
increments ``M[t] - M[t-1]``. Because every ``S_i`` grows by at most 1 per step for binary
spikes, ``M`` does too, so the output is again a binary spike train; its sum over the T steps is
exactly ``max_i S_i[T]``: the decoded output equals the max-pool of the decoded inputs at every
T (and for analog inputs, e.g. pooling the constant input frames, the same identity holds).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from snnconvert.neurons.base import SpikingNeuron, time_chunks


def if_dynamics(inputs: Tensor, *, init: float = 0.5, threshold: float = 1.0) -> tuple[Tensor, Tensor]:
    """Run a layer of soft-reset IF neurons on its input frames ``inputs`` (T, B, ...).

    Returns ``(spikes, membrane)``: the T output frames in {0, 1} (dtype of ``inputs``) and the
    membrane after the last step. ``init`` is the initial membrane, in the units of
    ``threshold`` (0.5 = theta/2 for the normalised threshold 1).
    """
    flat, chunks = time_chunks(inputs)
    spikes = torch.empty_like(flat)
    membrane = torch.full(flat.shape[1:], float(init), dtype=inputs.dtype, device=inputs.device)
    for cols in chunks:
        u, z, out = membrane[cols], flat[:, cols], spikes[:, cols]
        for t in range(flat.shape[0]):
            u.add_(z[t])
            torch.ge(u, threshold, out=out[t])  # written straight into the output frame as 0/1
            u.sub_(out[t], alpha=threshold)
    return spikes.view(inputs.shape), membrane.view(inputs.shape[1:])


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def window_max(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> Tensor:
    """``F.max_pool2d`` of ``x`` (N, C, H, W) as a running ``torch.maximum`` over the kernel's
    strided views: the same values (max is exact), several times faster than the CPU pooling
    kernel on the many small planes of time-folded frames."""
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(stride if stride not in (None, [], ()) else kernel_size)
    sizes = []
    for size, k, s, p, d in ((x.shape[-2], kh, sh, ph, dh), (x.shape[-1], kw, sw, pw, dw)):
        span = size + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside
            out -= 1
        sizes.append((out, max(0, (out - 1) * s + d * (k - 1) + 1 - (size + 2 * p))))
    (ho, extra_h), (wo, extra_w) = sizes
    if ph or pw or extra_h or extra_w:
        x = F.pad(x, (pw, pw + extra_w, ph, ph + extra_h), value=-math.inf)
    result: Tensor | None = None
    for i in range(kh):
        for j in range(kw):
            view = x[..., i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw]
            result = view.clone() if result is None else torch.maximum(result, view, out=result)
    return result


def running_max_pool(inputs: Tensor, pool: dict) -> Tensor:
    """Increments of the max-pooled running sums of ``inputs`` (T, B, C, H, W): see module doc."""
    sums = inputs.clone(memory_format=torch.contiguous_format)
    flat, chunks = time_chunks(sums)
    for cols in chunks:
        running = flat[:, cols]
        for t in range(1, flat.shape[0]):
            running[t].add_(running[t - 1])
    steps, batch = sums.shape[:2]
    pooled = window_max(sums.reshape(steps * batch, *sums.shape[2:]), **pool)
    del sums
    pooled = pooled.reshape(steps, batch, *pooled.shape[1:])
    out = torch.empty_like(pooled)
    out[0] = pooled[0]
    torch.sub(pooled[1:], pooled[:-1], out=out[1:])
    return out


class IFNeuron(SpikingNeuron):
    """A layer of soft-reset integrate-and-fire neurons with threshold 1 (see module docstring).

    ``init`` is the initial membrane (0.5 = theta/2 with ``half_init``). With ``recording`` on,
    the layer also counts neurons whose final membrane is still at or above 1 (saturated: their
    input exceeded the threshold, so the SNN clipped them).
    """

    unit_spikes = True

    def __init__(self, T: int, init: float = 0.5) -> None:
        super().__init__(T, T)
        self.T, self.init = int(T), float(init)
        self.register_stat("saturated_count")

    def dynamics(self, inputs: Tensor) -> Tensor:
        spikes, membrane = if_dynamics(inputs, init=self.init)
        if self.recording:
            with torch.no_grad():
                self.saturated_count += (membrane >= 1.0).sum()
        return spikes

    def extra_repr(self) -> str:
        return f"T={self.T}, init={self.init:g}"


class RateMaxPool(SpikingNeuron):
    """2-d max-pooling of rate-coded frames by the max of running sums (see module docstring).

    ``pool`` holds ``F.max_pool2d``'s keyword arguments (kernel_size, stride, padding,
    dilation, ceil_mode). State per input neuron: its running spike count.
    """

    unit_spikes = True

    def __init__(self, T: int, kernel_size, stride=None, padding=0, dilation=1,
                 ceil_mode: bool = False) -> None:
        super().__init__(T, T)
        self.T = int(T)
        if stride in (None, [], ()):
            stride = kernel_size
        self.pool = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                         ceil_mode=bool(ceil_mode))

    def dynamics(self, inputs: Tensor) -> Tensor:
        return running_max_pool(inputs, self.pool)

    def extra_repr(self) -> str:
        return f"T={self.T}, pool={self.pool}"


class RepeatEncoder(torch.nn.Module):
    """Constant analog input: the raw image repeated as T frames, (B, ...) -> (T*B, ...)."""

    def __init__(self, T: int) -> None:
        super().__init__()
        self.T = int(T)

    def forward(self, images: Tensor) -> Tensor:
        frames = images.unsqueeze(0).expand(self.T, *images.shape)
        return frames.reshape(self.T * images.shape[0], *images.shape[1:])

    def extra_repr(self) -> str:
        return f"T={self.T}"


def _register() -> None:
    from snnconvert.serialize import _from_json, _jsonable, register_module, register_simple

    register_simple(IFNeuron, "T", "init")
    register_simple(RepeatEncoder, "T")
    register_module(
        "RateMaxPool", RateMaxPool,
        lambda m: {"T": m.T, **{k: _jsonable(v) for k, v in m.pool.items()}},
        lambda c: RateMaxPool(**{k: _from_json(v) for k, v in c.items()}),
    )


_register()
