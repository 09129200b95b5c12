"""One-hot multi-level leaky integrate-and-fire (M-LIF) neuron (M-LIF paper, §3).

Each neuron has one membrane ``u`` and ``S`` binary-weighted output lanes (lane ``s`` weighs
``2^s``). Per time step (eq 6, one-hot case)::

    u[t] = beta * u[t-1] + x[t] - theta * o[t-1]                                    (eq 6)
    o[t] = sum_s 2^s o_s[t],  o_s[t] = 1  iff  2^s < u[t]/theta <= 2^(s+1)  (s < S-1)
                                             or 2^(S-1) < u[t]/theta         (s = S-1)   (eqs 7-8)

so at most one lane fires and ``o[t]`` is 0 (``u/theta <= 1``) or one of 1, 2, ..., 2^(S-1).
``x[t]`` is the synaptic input ``W o^{l-1}[t]`` (eq 6 sums the input lanes, which is the
weight applied to the lane value: a shift). The reset subtracts the previous step's output
and is not leaked, exactly as eq 6 writes it. With ``S = 1`` the rule is ``1 < u/theta`` and
eq 6 is eq 1: the classic LIF neuron (eqs 1-2).

Frames carry the lane value ``o[t]`` (one non-zero per neuron per step); the module sets
``lanes = S`` so spike density is computed over the S lanes. The module works in units of the
threshold (``theta = 1``); conversion puts ``Gain(1/theta)`` before and ``Gain(theta)`` after.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from snnconvert.neurons.base import SpikingNeuron, StepState
from snnconvert.neurons.surrogates import Surrogate, as_window, get_surrogate, spike
from snnconvert.registry import serializable


def lane_boundaries(S: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> Tensor:
    """The window edges 1, 2, 4, ..., 2^(S-1) of eqs 7-8 (in units of theta)."""
    return torch.tensor([2.0**s for s in range(S)], dtype=dtype, device=device)


def lane_values(S: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> Tensor:
    """Output value per window index: 0 (silent), then the lane values 1, 2, ..., 2^(S-1)."""
    return torch.tensor([0.0] + [2.0**s for s in range(S)], dtype=dtype, device=device)


# Sign + exponent bits of IEEE floats: masking the mantissa rounds a positive float down to a
# power of two.
_EXPONENT_MASKS = {torch.float32: (torch.int32, -(1 << 23)), torch.float64: (torch.int64, -(1 << 52))}


def fire_level(ratio: Tensor, S: int, out: Tensor | None = None) -> Tensor:
    """Eqs 7-8: the lane value ``2^s`` whose window ``(2^s, 2^(s+1)]`` holds ``ratio = u/theta``
    (the top lane's window is open above), 0 for ``ratio <= 1``.

    float32/float64 take a fast exact path: clamp to [1, 1.5 * 2^(S-1)], step to the next float
    below (integer -1 on the bit pattern, so a window's closed right edge 2^(s+1) falls into
    [2^s, 2^(s+1))), drop the mantissa (-> 2^s; the clamped ``ratio <= 1`` gives 0.5) and floor
    (0.5 -> 0). Other dtypes use ``bucketize`` on the edges 1, 2, ..., 2^(S-1).
    """
    if ratio.dtype not in _EXPONENT_MASKS or (out is not None and not out.is_contiguous()):
        window = torch.bucketize(ratio, lane_boundaries(S, ratio.dtype, ratio.device))
        level = torch.take(lane_values(S, ratio.dtype, ratio.device), window)
        return level if out is None else out.copy_(level)
    int_dtype, mask = _EXPONENT_MASKS[ratio.dtype]
    level = torch.clamp(ratio, 1.0, 1.5 * 2.0 ** (S - 1), out=out)
    level.view(int_dtype).sub_(1).bitwise_and_(mask)
    return level.floor_()


def compared_level(ratio: Tensor, S: int) -> Tensor:
    """:func:`fire_level` with comparisons instead of float bit tricks (the same values: the
    lane of ``r`` is ``sum_s [r > 2^s] w_s`` with ``w_0 = 1, w_s = 2^(s-1)``); what ONNX can hold."""
    level = (ratio > 1.0).to(ratio.dtype)
    for s in range(1, S):
        level = level + (ratio > 2.0**s).to(ratio.dtype) * 2.0 ** (s - 1)
    return level


def mlif_dynamics(
    inputs: Tensor,
    *,
    S: int,
    beta: float = 1.0,
    theta: float = 1.0,
    trace: Tensor | None = None,
) -> Tensor:
    """Run eqs 6-8 over the T input frames ``inputs`` (T, B, ...); returns the T output frames
    of lane values ``o[t]`` (0 or 2^s, not multiplied by theta).

    If ``trace`` (a tensor shaped like ``inputs``) is given, the membrane potential ``u[t]`` on
    which step t's firing decision is taken is written into ``trace[t]``.
    """
    steps = inputs.shape[0]
    outputs = torch.empty_like(inputs)
    if steps == 0:
        return outputs
    u = inputs[0] if steps == 1 else inputs[0].clone()  # u[-1] = 0, o[-1] = 0; never written if T = 1
    for t in range(steps):
        if t > 0:
            if beta != 1.0:
                u.mul_(beta)
            u.add_(inputs[t]).sub_(outputs[t - 1], alpha=theta)
        if trace is not None:
            trace[t].copy_(u)
        fire_level(u / theta if theta != 1.0 else u, S, out=outputs[t])
    return outputs


def mlif_dynamics_autograd(
    inputs: Tensor,
    *,
    S: int,
    beta: float | Tensor = 1.0,
    theta: float | Tensor = 1.0,
    surrogate: Surrogate | str = "mlif-window:triangular:0.3",
) -> Tensor:
    """Differentiable :func:`mlif_dynamics` (same values, bit for bit, for equal ``beta`` and
    ``theta``): out-of-place updates, lane selection as a spike function whose backward is the
    M-LIF window surrogate of ``u/theta`` (a single-edge surrogate is applied per window edge).
    ``beta``/``theta`` may be tensors broadcasting over a (B, ...) frame (learnable leak and
    threshold). Full BPTT: the membrane and the reset ``theta * o[t-1]`` keep their gradients
    (eq 6 as written; the paper does not detach the reset)."""
    window = as_window(get_surrogate(surrogate))
    leaky = isinstance(beta, Tensor) or beta != 1.0
    scaled = isinstance(theta, Tensor) or theta != 1.0

    def fire(ratio: Tensor) -> Tensor:
        return fire_level(ratio, S)

    def slope(ratio: Tensor) -> Tensor:
        return window.grad(ratio - 1.0, lanes=S)

    outputs: list[Tensor] = []
    u = inputs[0] if inputs.shape[0] else inputs
    for t in range(inputs.shape[0]):
        if t > 0:
            if leaky:
                u = u * beta
            u = u + inputs[t]
            u = u - outputs[-1] * theta if isinstance(theta, Tensor) else torch.sub(u, outputs[-1], alpha=theta)
        outputs.append(spike(u / theta if scaled else u, fire, slope))
    return torch.stack(outputs) if outputs else torch.empty_like(inputs)


@serializable
class MLIFNeuron(SpikingNeuron):
    """A layer of one-hot M-LIF neurons in threshold units (see module docstring).

    Records, besides the base statistics, how many spikes each lane emitted
    (``lane_counts``, lane 0 first) so reports can show which levels carry the activity.

    Training: ``surrogate`` (default: the paper's triangular window, gamma = 0.3, A.3) is used
    when gradients are needed; ``learn_threshold`` / ``learn_leak`` add the parameters
    ``threshold`` (theta, initialised to 1: threshold units) and ``leak`` (beta, initialised to
    ``beta``), one per layer or ``channels`` entries (channel axis 1).
    """

    serial_params = ("T", "S", "beta", "surrogate", "learn_threshold", "learn_leak", "channels")

    def __init__(self, T: int, S: int, beta: float = 1.0, surrogate: str = "mlif-window:triangular:0.3",
                 learn_threshold: bool = False, learn_leak: bool = False, channels: int = 1) -> None:
        super().__init__(T, T)
        self.T, self.S, self.beta = int(T), int(S), float(beta)
        self.surrogate = get_surrogate(surrogate).spec
        self.lanes = self.S
        self.register_stat("lane_counts", self.S)
        self.init_learnable(learn_threshold, learn_leak, channels, self.beta)

    def dynamics(self, inputs: Tensor) -> Tensor:
        if self.threshold is None and self.leak is None and not self.needs_grad(inputs):
            return mlif_dynamics(inputs, S=self.S, beta=self.beta)
        dims = inputs.dim() - 1
        theta = self.per_channel(self.threshold, dims)
        leak = self.per_channel(self.leak, dims)
        return mlif_dynamics_autograd(
            inputs, S=self.S, beta=self.beta if leak is None else leak.to(inputs.dtype),
            theta=1.0 if theta is None else theta.to(inputs.dtype), surrogate=self.surrogate,
        )

    def export_dynamics(self, inputs: Tensor) -> Tensor:
        """Eqs 6-8 out of place with :func:`compared_level` (the same values)."""
        dims = inputs.dim() - 1
        theta = self.per_channel(self.threshold, dims)
        leak = self.per_channel(self.leak, dims)
        beta = self.beta if leak is None else leak.to(inputs.dtype)
        outputs: list[Tensor] = []
        u = inputs[0]
        for t in range(inputs.shape[0]):
            if t > 0:
                if isinstance(beta, Tensor) or beta != 1.0:
                    u = u * beta
                u = u + inputs[t]
                u = u - outputs[-1] if theta is None else u - outputs[-1] * theta.to(inputs.dtype)
            outputs.append(compared_level(u if theta is None else u / theta.to(inputs.dtype), self.S))
        return torch.stack(outputs)

    def step_states(self) -> tuple[StepState, ...]:
        return (StepState("membrane"), StepState("output"))

    def step_refusal(self) -> str | None:
        return None if self.threshold is None and self.leak is None else "a learned threshold or leak"

    def step(self, frame: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """u = beta u + z - o_prev; o = the lane of u (eqs 6-8, threshold units)."""
        u = state["membrane"]
        if self.beta != 1.0:
            u = u * self.beta
        u = u + frame - state["output"]
        level = compared_level(u, self.S)
        return level, {"membrane": u, "output": level}

    def make_trainable(self, *, learn_threshold: bool, learn_leak: bool, channels: Callable[[], int] | None,
                       dtype: torch.dtype, device: torch.device) -> None:
        """Threshold (init 1) and leak (init ``beta``), per layer or per channel."""
        self.add_threshold_leak(learn_threshold=learn_threshold, learn_leak=learn_leak, channels=channels,
                                dtype=dtype, device=device, leak=self.beta)

    def reset_threshold(self, theta: float, *, trainable: bool, dtype: torch.dtype, device: torch.device) -> bool:
        return self.reset_learned_threshold(theta, trainable=trainable, dtype=dtype, device=device)

    has_membrane = True

    def membrane_run(self, inputs: Tensor, clip: float | None) -> tuple[Tensor, Tensor]:
        """Eqs 6-8: u[t] = beta u[t-1] + x[t] - theta o[t-1]; the post-spike membrane is
        u[t] - theta o[t], clipped at c theta (the next step then reads it back)."""
        dims = inputs.dim() - 1
        theta = self.per_channel(self.threshold.detach(), dims) if self.threshold is not None else 1.0
        beta = self.per_channel(self.leak.detach(), dims) if self.leak is not None else self.beta
        post = torch.zeros(inputs.shape[1:], dtype=inputs.dtype, device=inputs.device)
        o_prev = torch.zeros_like(post)
        spikes, first = [], post
        for t in range(inputs.shape[0]):
            u = beta * (post + theta * o_prev) - theta * o_prev + inputs[t] if t > 0 else inputs[0]
            o = fire_level(u / theta, self.S)
            post = u - theta * o
            if clip is not None:
                post = torch.maximum(post, torch.as_tensor(clip, dtype=u.dtype) * theta)
            spikes.append(o)
            o_prev = o
            if t == 0:
                first = post / theta
        return torch.stack(spikes), first

    @torch.no_grad()
    def _record(self, out: Tensor) -> None:
        super()._record(out)
        fired = out[out != 0]
        lane = torch.frexp(fired.double()).exponent - 1  # 2^s = 0.5 * 2^(s+1): exact
        self.lane_counts += torch.bincount(lane.long(), minlength=self.S)[: self.S].double()

    def extra_repr(self) -> str:
        return f"T={self.T}, S={self.S}, beta={self.beta}, surrogate={self.surrogate!r}"
