"""SpQuant-SNN neuron: LIF with an integer-only quantized membrane and membrane-aware pruning.

Paper 001 (SpQuant-SNN). Units: the layer's real threshold is folded into the weights, so the
threshold starts at 1 (a learnable ``threshold`` moves it) and the integer membrane levels are
in threshold units. Per time step t (eqs 1, 2, 7, 10)::

    h[t]  = tau * Q(u[t-1]) + y[t]                     (eq 10; u[-1] = 0, tau = 0.5)
    S[t]  = 1 if h[t] >= V_th else 0                   (eq 2)
    u[t]  = h[t] * (1 - S[t])        (hard reset, eq 1)   or   h[t] - V_th * S[t]   (soft reset)
    u[t]  = max(u[t], c)             (optional negative clipping bound c, section 4.1)

``Q`` (eq 7) rounds to the nearest integer level (ties up: +1 from 0.5) and clips to the
precision's range: ternary {-1, 0, 1} (1.58 bits), k-bit {-2^(k-1) .. 2^(k-1)-1}, binary
{0, 1} (ternary with its -1 level dropped, eqs 19-20), or ``none`` (full precision, no Q).
The stored state is the integer ``Q(u[t])``; ``Q`` has no scale (no dequantization).

Gradients: the hard reset's factor (1 - S[t]) is detached (the membrane's gradient passes where
the neuron did not fire); the temporal path d h[t+1]/d u[t] = tau * Q*(u[t]) (eq 13), Q* the stacked
gradient surrogate of eqs 11-12 (:func:`~snnconvert.neurons.surrogates.stacked_grad`: one
sigmoid derivative of smoothness T_s per level boundary s_k = (k_i + k_(i+1)) / 2). The spike
function uses the triangular surrogate of eq 4 in ``h - V_th``; with a learnable threshold the
separate gradient path of eqs 24-27 applies: d S/d V_th = -tri(h - V_th) * sigmoid(h - V_th),
kept only where the neuron fired (eq 27's indicator) and summed over the layer (eq 27 writes the
magnitude |dL/dV_th|; the sign is kept here, otherwise every threshold could only fall).

Pruning (eqs 21-23), per sample, decided from the first time step:

* spatial: importance Imp = ||Q(y[0])||_2 over channels at each position, y[0] the first-step
  output of the layer's convolution ("we compute the spatial mask after the first convolution
  operations at layer l", section 4.3.1; for a residual layer this is the conv branch, before the
  shortcut is added); the ``spatial`` share of positions with the lowest importance is masked
  (exactly floor(spatial * H * W)): :func:`spatial_keep`;
* channel: :class:`ChannelGate` of layer l+1 reads layer l's membrane prior Q(h_l[0]) (2x2 average
  pool, pointwise conv C_l -> C_(l+1), softmax over the channels, threshold 0.47 / C; eq 23)
  before layer l+1's conv.

In a converted network the graph wires both in (``codings.spquant._wire``): the gate runs on the
previous neuron layer's input frames, its mask goes to the conv and to the neuron, and the conv's
output goes to the neuron as ``conv_out``. The conv (:class:`~snnconvert.methods.spquant.pot.PoTConv2d`)
then computes only the kept outputs (or the dense conv then the masks where that is cheaper);
masked neurons never fire and hold no membrane; from step 2 on the time loop gathers the active
neurons and updates only them (``membrane_updates`` counts the updates done). A bare layer (not
wired) takes both priors from its own first step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.methods.spquant.config import GATE_RULES, SPATIAL_SCORING, membrane_range
from snnconvert.neurons.base import SpikingNeuron
from snnconvert.neurons.surrogates import get_surrogate, spike, stacked_grad
from snnconvert.registry import serializable


def membrane_bits(precision: str) -> float:
    """Storage bits per membrane value: 32 (none), log2(3) = 1.58 (ternary), 1 (binary), k (k-bit)."""
    levels = membrane_range(precision)
    if levels is None:
        return 32.0
    return math.log2(levels[1] - levels[0] + 1)


def quantize_membrane(u: Tensor, lo: int, hi: int) -> Tensor:
    """Eq 7: the nearest integer level (ties up), clipped to [lo, hi]."""
    return torch.clamp(torch.floor(u + 0.5), lo, hi)


def quantize_membrane_sgs(u: Tensor, lo: int, hi: int, smoothness: float) -> Tensor:
    """:func:`quantize_membrane` whose backward is the stacked gradient surrogate Q* (eqs 11-12)."""
    return spike(u, lambda x: quantize_membrane(x, lo, hi), lambda x: stacked_grad(x, lo, hi, smoothness))


class _SGPSpike(torch.autograd.Function):
    """Eqs 24-27: S = [h >= V_th]; dS/dh = tri(h - V_th) (eq 4 with the neuron's surrogate);
    dL/dV_th = sum over fired neurons of -dL/dS * tri * sigmoid(h - V_th)."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, theta: Tensor, surrogate: Any) -> Tensor:  # noqa: ANN401
        ctx.surrogate = surrogate
        ctx.save_for_backward(h, theta)
        return (h >= theta).to(h.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # noqa: ANN401
        h, theta = ctx.saved_tensors
        x = h - theta
        tri = ctx.surrogate.grad(x).to(grad.dtype)
        grad_h = grad * tri
        window = torch.sigmoid(x) * (x >= 0).to(grad.dtype)  # eq 26 penalty window, eq 27 indicator
        grad_theta = -(grad * tri * window)
        while grad_theta.dim() > theta.dim():
            grad_theta = grad_theta.sum(0)
        for axis, size in enumerate(theta.shape):
            if size == 1 and grad_theta.shape[axis] != 1:
                grad_theta = grad_theta.sum(axis, keepdim=True)
        return grad_h, grad_theta.reshape(theta.shape), None


def fire(h: Tensor, theta: float | Tensor, surrogate: Any) -> Tensor:  # noqa: ANN401
    """The spike of eq 2 with eq 4's surrogate on h, and eqs 24-27 on a tensor threshold."""
    if isinstance(theta, Tensor) and theta.requires_grad:
        return _SGPSpike.apply(h, theta, surrogate)
    th = theta
    return spike(h, lambda x: (x >= th).to(x.dtype), lambda x: surrogate.grad(x - th))


def spatial_mask(prior: Tensor, sparsity: float) -> Tensor:
    """Eqs 21-22: per sample, mask the ``floor(sparsity * H * W)`` positions of ``prior``
    (B, C, H, W) with the lowest importance ``||prior||_2`` over channels. Returns (B, 1, H, W)
    of 0/1 in the dtype of ``prior``."""
    b, _, h, w = prior.shape
    pruned = int(math.floor(sparsity * h * w + 1e-9))
    keep = torch.ones(b, h * w, dtype=prior.dtype, device=prior.device)
    if pruned > 0:
        imp = torch.linalg.vector_norm(prior.detach(), 2, dim=1).reshape(b, h * w)
        order = torch.argsort(imp, dim=1, stable=True)
        keep.scatter_(1, order[:, :pruned], 0.0)
    return keep.reshape(b, 1, h, w)


def rounding_map(T: int, tau: float, precision: str) -> tuple[float, float]:
    """``(gain, offset)`` that make a converted T = 2 LIF layer round instead of floor.

    With constant input y (threshold units, u[-1] = 0) the neuron fires twice iff y >= 1 and once
    iff m <= y < 1, m = 1 / (1 + tau) for a full-precision membrane and max(1/2, 1 - tau) for an
    integer one (Q(y) = 1 from y = 1/2), with hard or soft reset. The rate-coded output
    {0, 1/2, 1} is the nearest level of the activation x in [0, 1] when x >= 3/4 maps to y >= 1 and
    x >= 1/4 to y >= m: ``y = a x + b`` with a = 2 (1 - m), b = 1 - 3 (1 - m) / 2 (tau = 0.5: 2/3 and
    1/2 full precision, 1 and 1/4 integer). Plain y = x floors (dead zone up to 2/3) and leaves a
    converted ResNet-20 at chance. Other T: (1, 0)."""
    if T != 2:
        return 1.0, 0.0
    m = 1.0 / (1.0 + tau) if membrane_range(precision) is None else max(0.5, 1.0 - tau)
    return 2.0 * (1.0 - m), 1.0 - 1.5 * (1.0 - m)


def spatial_keep(first: Tensor, sparsity: float, precision: str) -> Tensor:
    """The spatial keep mask (B, 1, H, W) of eqs 21-22 from the first-step conv output ``first``
    (B, C, H, W): importance ``||Q(first)||_2`` over channels. The conv synapse (to skip the
    pruned positions) and its neuron layer (to leave them out of accumulate-and-fire) both call
    this on the same tensor, so they agree exactly."""
    levels = membrane_range(precision)
    prior = first.detach() if levels is None else quantize_membrane(first.detach(), *levels)
    return spatial_mask(prior, sparsity)


@serializable
class ChannelGate(nn.Module):
    """Eq 23: the channel mask of layer l+1 from the membrane prior of layer l: 2x2 average pool,
    pointwise conv (C_l -> C_(l+1) channels), its output averaged over positions (U_att), then by
    ``rule``:

    * ``eq23`` (the paper): ``U_sf = softmax(U_att)`` over the C_(l+1) channels and
      ``U_cm = [U_sf >= theta]`` with ``theta = threshold / C_(l+1)``: ``threshold`` is in units
      of the uniform share 1/C (the paper gives no value; 0.47 keeps channels with at least 47 %
      of the average attention). The conv starts at 0, so every channel starts open (U_sf = 1/C).
    * ``keep-skip`` (ours, the earlier default): a two-way softmax per channel over (keep,
      skip), the keep logit U_att and the skip logit 0, ``keep >= threshold``; the conv bias
      starts at ``bias_init`` (keep probability sigmoid(3) = 0.95).

    :meth:`forward` takes the time-folded input frames of the previous neuron layer (its first
    step is the membrane before the first spike, quantized by ``precision``: the prior U^l) and
    returns the (B, C_(l+1)) 0/1 mask, whose backward is the softmax's gradient
    (straight-through), so the gate learns during fine-tuning. It runs before layer l+1's
    convolution, which then computes only the kept channels."""

    serial_params = ("in_channels", "threshold", "bias_init", "out_channels", "T", "precision", "rule")

    def __init__(self, in_channels: int, threshold: float = 0.47, bias: float = 3.0, out_channels: int | None = None,
                 T: int = 1, precision: str = "none", bias_init: float | None = None, rule: str = "keep-skip") -> None:
        super().__init__()
        if rule not in GATE_RULES:
            raise SnnConvertError(f"channel gate rule {rule!r} is not possible: choose {' or '.join(GATE_RULES)}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels) if out_channels else self.in_channels
        self.threshold, self.T, self.precision, self.rule = float(threshold), int(T), str(precision), rule
        self.bias_init = 0.0 if rule == "eq23" else float(bias if bias_init is None else bias_init)
        membrane_range(self.precision)
        self.conv = nn.Conv2d(self.in_channels, self.out_channels, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.fill_(self.bias_init)  # every channel starts open (keep-skip: keep probability 0.95)
        self.track_keep = False  # set by the spquant training method: keep the soft mask for its loss
        self.last_keep: Tensor | None = None
        self.last_keep_value: Tensor | None = None

    def probabilities(self, prior: Tensor) -> Tensor:
        """(B, C_(l+1)) scores compared with ``threshold``: ``C * softmax(U_att)`` (eq23) or the
        keep probability (keep-skip)."""
        pooled = F.avg_pool2d(prior, 2) if min(prior.shape[-2:]) >= 2 else prior
        att = self.conv(pooled.to(self.conv.weight.dtype)).mean(dim=(2, 3))
        if self.rule == "eq23":
            return torch.softmax(att, dim=1) * att.shape[1]
        logits = torch.stack([att, torch.zeros_like(att)], dim=-1)
        return torch.softmax(logits, dim=-1)[..., 0]

    def forward(self, frames: Tensor) -> Tensor:
        batch = frames.shape[0] // self.T
        levels = membrane_range(self.precision)
        prior = frames[:batch].detach()
        if levels is not None:
            prior = quantize_membrane(prior, *levels)
        return self.mask_from_prior(prior)

    def mask_from_prior(self, prior: Tensor) -> Tensor:
        """The straight-through (B, C_out) mask from a quantized prior (B, C_in, H, W)."""
        p = self.probabilities(prior)
        hard = (p >= self.threshold).to(p.dtype)
        mask = hard + (p - p.detach())
        # the sparsity loss's keep share: eq23's scores always average 1, so it reads the mask
        keep = mask if self.rule == "eq23" else p
        self.last_keep = keep if (self.track_keep and torch.is_grad_enabled() and p.requires_grad) else None
        self.last_keep_value = p.detach()
        return mask


@serializable
class SpQuantNeuron(SpikingNeuron):
    """A layer of SpQuant-SNN LIF neurons (see module docstring).

    Options: ``tau`` (0.5), ``reset`` ("hard" eq 1 or "soft"), ``precision`` of the membrane,
    ``smoothness`` T of Q* (eq 11), ``clip`` (negative bound c or None), ``spatial`` (pruned
    share of positions, 0 = off), ``gate`` with ``channels`` (eq 23 channel mask) and
    ``gate_threshold``; ``learn_threshold`` adds the layer's ``threshold`` parameter (init 1);
    ``input_gain`` / ``input_offset`` map the synaptic input y to ``gain * y + offset`` at every
    step (1 / 0: the paper's neuron; see :func:`rounding_map`).
    Recorded (with ``recording``): membrane updates done, active / spatial / channel shares.
    """

    unit_spikes = True
    serial_params = ("T", "tau", "reset", "precision", "smoothness", "clip", "spatial", "gate_enabled",
                     "channels", "gate_threshold", "surrogate", "learn_threshold", "gate_in_channels",
                     "input_gain", "input_offset", "gate_rule", "spatial_scoring")

    def __init__(self, T: int, tau: float = 0.5, reset: str = "hard", precision: str = "ternary",
                 smoothness: float = 4.0, clip: float | None = None, spatial: float = 0.0,
                 gate_enabled: bool = False, channels: int = 1, gate_threshold: float = 0.47,
                 surrogate: str = "triangular:1.0", learn_threshold: bool = False, gate_in_channels: int = 0,
                 input_gain: float = 1.0, input_offset: float = 0.0, gate_rule: str = "keep-skip",
                 spatial_scoring: str = "first") -> None:
        super().__init__(T, T)
        if reset not in ("hard", "soft"):
            raise SnnConvertError(f"reset {reset!r} is not possible: choose hard or soft")
        self.T, self.tau, self.reset = int(T), float(tau), reset
        self.precision = str(precision)
        self.levels = membrane_range(self.precision)
        self.smoothness, self.clip = float(smoothness), None if clip is None else float(clip)
        self.spatial, self.gate_threshold = float(spatial), float(gate_threshold)
        self.gate_enabled, self.channels = bool(gate_enabled), int(channels)
        self.surrogate = get_surrogate(surrogate).spec
        self.learn_threshold = bool(learn_threshold)
        self.register_parameter("threshold", nn.Parameter(torch.ones(1)) if learn_threshold else None)
        self.gate_in_channels = int(gate_in_channels) or self.channels
        self.input_gain, self.input_offset = float(input_gain), float(input_offset)  # y -> gain y + offset
        for name, value, choices in (("gate rule", gate_rule, GATE_RULES),
                                     ("spatial scoring", spatial_scoring, SPATIAL_SCORING)):
            if value not in choices:
                raise SnnConvertError(f"{name} {value!r} is not possible: choose {' or '.join(choices)}")
        # artifacts from before these options store neither: keep-skip gates, scored on the first step
        self.gate_rule, self.spatial_scoring = str(gate_rule), str(spatial_scoring)
        self.gate = (ChannelGate(self.gate_in_channels, self.gate_threshold, out_channels=self.channels, T=self.T,
                                 precision=self.precision, rule=self.gate_rule) if self.gate_enabled else None)
        self._conv_out: Tensor | None = None  # this call's wired inputs (see forward)
        self._channel_mask: Tensor | None = None
        self.last_spatial: Tensor | None = None  # the spatial mask of the last call (work accounting)
        for name in ("membrane_updates", "neuron_steps", "active_neurons", "spatial_pruned", "channel_pruned",
                     "channel_count", "position_count"):
            self.register_stat(name)
        self.register_stat("shape", 3)

    has_membrane = True

    def membrane_run(self, inputs: Tensor, clip: float | None) -> tuple[Tensor, Tensor]:
        """The neuron's own dynamics with its ``clip`` set; the post-spike membrane of the first
        step recomputed from h_1 = y_1 (before quantization and masks)."""
        saved = self.clip
        self.clip = clip
        try:
            spikes = type(self).dynamics(self, inputs)
        finally:
            self.clip = saved
        theta = 1.0 if self.threshold is None else self.threshold.detach().reshape(())
        h = inputs[0]
        s = (h >= theta).to(h.dtype)
        first = h * (1 - s) if self.reset == "hard" else h - theta * s
        return spikes, first / theta

    def enable_threshold(self) -> None:
        """Add the learnable threshold (init 1) if the layer has none (fine-tuning)."""
        if self.threshold is None:
            dtype = next((b.dtype for b in self.parameters()), torch.float32)
            self.threshold = nn.Parameter(torch.ones(1, dtype=dtype))
            self.learn_threshold = True

    def q(self, u: Tensor, grad: bool) -> Tensor:
        if self.levels is None:
            return u
        lo, hi = self.levels
        return quantize_membrane_sgs(u, lo, hi, self.smoothness) if grad else quantize_membrane(u, lo, hi)

    def forward(self, frames: Tensor, conv_out: Tensor | None = None,  # type: ignore[override]
                channel_mask: Tensor | None = None) -> Tensor:
        """``frames`` (T*B, ...) as every neuron; in a pruned network the graph also passes the
        producing convolution's output ``conv_out`` (its first step is the spatial prior, eqs
        21-22) and the ``channel_mask`` (B, C) of the gate fed by the previous layer's membrane
        prior (eq 23). Unwired (a bare layer), both priors come from this layer's own first step."""
        self._conv_out, self._channel_mask = conv_out, channel_mask
        try:
            return super().forward(frames)
        finally:
            self._conv_out = self._channel_mask = None

    def masks(self, h0: Tensor) -> Tensor | None:
        """The 0/1 mask of active neurons (B, C, H, W) or (B, C, 1, 1) for this call, or None."""
        wired = self._channel_mask
        if h0.dim() != 4 or ((self.spatial <= 0 or self.spatial_scoring == "step") and self.gate is None
                             and wired is None):
            return None
        batch = h0.shape[0]
        mask = torch.ones_like(h0[:, :1])
        self.last_spatial = None
        if self.spatial > 0 and self.spatial_scoring == "first":
            first = self._conv_out[:batch] if self._conv_out is not None else h0
            self.last_spatial = spatial_keep(first, self.spatial, self.precision).to(h0.dtype)
            mask = mask * self.last_spatial
        channel = wired
        if channel is None and self.gate is not None:  # unwired: the layer's own prior
            channel = self.gate.mask_from_prior(self.q(h0.detach(), False))
        if channel is not None:
            mask = mask * channel.to(h0.dtype)[:, :, None, None]
        return mask

    def dynamics(self, inputs: Tensor) -> Tensor:
        grad = self.needs_grad(inputs) or (torch.is_grad_enabled() and (
            (self._channel_mask is not None and self._channel_mask.requires_grad)
            or (self.gate is not None and any(p.requires_grad for p in self.gate.parameters()))))
        surrogate = get_surrogate(self.surrogate)
        theta: float | Tensor = 1.0 if self.threshold is None else self.threshold.to(inputs.dtype).reshape(())
        if self.input_gain != 1.0 or self.input_offset != 0.0:
            inputs = inputs * self.input_gain + self.input_offset
        steps, frame = inputs.shape[0], inputs.shape[1:]
        if self.spatial > 0 and self.spatial_scoring == "step" and inputs.dim() == 5:
            return self._dynamics_scored_per_step(inputs, theta, surrogate, grad)
        outputs: list[Tensor] = []
        h = inputs[0]
        mask = self.masks(h)
        if mask is not None:
            mask = mask.expand_as(h) if mask.shape != h.shape else mask
        record = self.recording
        s = fire(h, theta, surrogate)
        if mask is not None:
            s = s * mask
        outputs.append(s)
        u = self._after_spike(h, s, theta)
        if mask is not None:
            u = u * mask.detach()
        n = h.numel()
        updates = float(n)
        if steps > 1:
            if mask is None:
                for t in range(1, steps):
                    h = self.tau * self.q(u, grad) + inputs[t]
                    s = fire(h, theta, surrogate)
                    outputs.append(s)
                    u = self._after_spike(h, s, theta)
                updates += float(n) * (steps - 1)
            else:  # only the active neurons: gather once, update them, scatter their spikes
                idx = torch.nonzero(mask.detach().reshape(-1) > 0).reshape(-1)
                gain = mask.reshape(-1).index_select(0, idx)  # 1 forward; the gate's gradient
                ua = u.reshape(-1).index_select(0, idx)
                for t in range(1, steps):
                    ha = self.tau * self.q(ua, grad) + inputs[t].reshape(-1).index_select(0, idx)
                    sa = fire(ha, theta, surrogate)
                    ua = self._after_spike(ha, sa, theta)
                    full = torch.zeros(n, dtype=inputs.dtype, device=inputs.device)
                    outputs.append(full.index_put((idx,), sa * gain).reshape(frame))
                updates += float(idx.numel()) * (steps - 1)
        if record:
            self._record_work(frame, mask, updates, steps)
        return torch.stack(outputs)

    def _dynamics_scored_per_step(self, inputs: Tensor, theta: float | Tensor, surrogate: Any,  # noqa: ANN401
                                  grad: bool) -> Tensor:
        """Eqs 21-22 at every step t: the ``spatial`` share of positions with the lowest
        ``Imp_t = ||Q(y_t)||_2`` (y_t this step's conv output, or the input when unwired) neither
        fire nor keep a membrane at step t (``U_t = U_sm,t x Q(u_t)``); the channel mask holds for
        every step."""
        steps, frame = inputs.shape[0], inputs.shape[1:]
        batch = frame[0]
        channel = self.masks(inputs[0])  # the channel mask alone (B, C, 1, 1) or None
        outputs: list[Tensor] = []
        pruned = 0.0
        updates = 0.0
        active = 0.0
        u: Tensor | None = None
        for t in range(steps):
            h = inputs[t] if u is None else self.tau * self.q(u, grad) + inputs[t]
            source = self._conv_out[t * batch:(t + 1) * batch] if self._conv_out is not None else inputs[t]
            spatial = spatial_keep(source, self.spatial, self.precision).to(h.dtype)  # (B, 1, H, W)
            mask = spatial if channel is None else spatial * channel
            mask = mask.expand_as(h)
            s = fire(h, theta, surrogate) * mask
            outputs.append(s)
            u = self._after_spike(h, s, theta) * mask.detach()
            if self.recording:
                kept = float((mask.detach() > 0).sum())
                updates, active = updates + kept, active + kept / steps
                pruned += spatial_mask_count(spatial) / steps
        if self.recording:
            self.last_spatial = None
            self._record_work(frame, channel, updates, steps, active=active, spatial_pruned=pruned)
        return torch.stack(outputs)

    def _after_spike(self, h: Tensor, s: Tensor, theta: float | Tensor) -> Tensor:
        u = h * (1.0 - s.detach()) if self.reset == "hard" else h - s * theta
        if self.clip is not None:
            u = torch.clamp(u, min=self.clip)
        return u

    @torch.no_grad()
    def _record_work(self, frame: torch.Size, mask: Tensor | None, updates: float, steps: int,
                     active: float | None = None, spatial_pruned: float | None = None) -> None:
        """Add this call's work. ``active`` / ``spatial_pruned`` (per-step scoring): the neurons
        active and the positions pruned, each averaged over the steps; ``mask`` is then the
        (B, C, 1, 1) channel mask alone, or None."""
        batch = frame[0]
        per = frame[1:]
        self.membrane_updates += updates
        self.neuron_steps += float(math.prod(frame)) * steps
        shape = list(per) + [1] * (3 - len(per))
        self.shape.copy_(torch.tensor(shape[:3], dtype=torch.float64))
        if mask is None and active is None:
            self.active_neurons += float(math.prod(frame))
            self.channel_count += float(batch * per[0])
            self.position_count += float(batch * (math.prod(per[1:]) if len(per) > 1 else 1))
            return
        m = (mask > 0).double() if mask is not None else torch.ones(batch, per[0], 1, 1, dtype=torch.float64)
        self.active_neurons += float(m.sum()) if active is None else active
        channel = m.amax(dim=(2, 3))  # (B, C): a channel is masked when none of its positions is active
        self.position_count += float(batch * per[1] * per[2])
        self.channel_count += float(channel.numel())
        if spatial_pruned is not None:
            self.spatial_pruned += spatial_pruned
        elif self.spatial > 0 and self.last_spatial is not None:  # S_p: the spatial mask alone (eq 22)
            self.spatial_pruned += spatial_mask_count(self.last_spatial)
        self.channel_pruned += float((channel == 0).sum())

    def work(self) -> dict[str, float]:
        """Per sample, from the recorded run: neurons, membrane updates done, share of active
        neurons, spatial sparsity S_p, channel sparsity S_c and the layer shape (C, H, W)."""
        samples = max(float(self.samples), 1.0)
        return {
            "neurons": float(self.neurons),
            "membrane_updates": float(self.membrane_updates) / samples,
            "dense_updates": float(self.neuron_steps) / samples,
            "active_share": float(self.active_neurons) / max(float(self.neurons) * samples, 1.0),
            "spatial_sparsity": float(self.spatial_pruned) / max(float(self.position_count), 1.0),
            "channel_sparsity": float(self.channel_pruned) / max(float(self.channel_count), 1.0),
            "shape": [int(v) for v in self.shape.tolist()],
        }

    def extra_repr(self) -> str:
        return (f"T={self.T}, tau={self.tau:g}, reset={self.reset}, precision={self.precision}, "
                f"spatial={self.spatial:g} ({self.spatial_scoring}), gate={self.gate_enabled}")


def spatial_mask_count(spatial: Tensor) -> float:
    """Positions pruned in a (B, H, W) 0/1 map of active positions."""
    return float((spatial == 0).sum())
