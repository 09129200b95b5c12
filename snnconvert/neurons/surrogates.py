"""Surrogate gradients of spike functions, and the autograd function that attaches them.

A surrogate replaces the derivative of the unit step ``H(x)`` of a firing decision. Every
surrogate here is a function of ``x = u/theta - 1``: the membrane's distance to the threshold in
units of the threshold, so the step sits at ``x = 0``. ``grad(x)`` is ``d o / d(u/theta)``;
a neuron feeds the spike function the ratio ``u/theta`` (the chain rule through ``u/theta``
supplies the ``1/theta`` factor of the papers and the gradient of a learnable threshold).
``step(x)`` is the smooth step whose derivative ``grad`` is (the primitive, zero at ``-inf``):
a differentiable stand-in for ``H`` in reference computations.

Normalisations (M-LIF paper, "000"):

* ``triangular:gamma`` is eq 4, ``(gamma/theta) max(0, 1 - |u/theta - 1|)``: a triangle of
  half-width ``theta`` and height ``gamma/theta``. ``gamma`` scales the *height* (a damping
  factor, A.3 uses 0.3 and 1.0), not the width, so the surrogate integrates to ``gamma``
  (1 only for ``gamma = 1``).
* ``sigmoid:alpha`` is eq 5, ``(alpha/theta) sigma(a) (1 - sigma(a))`` with
  ``a = alpha (u/theta - 1)``: the exact derivative of ``sigma(a)``; integrates to 1.
* ``straight-through``: a box of width 1 centred on the step, ``1`` for ``|x| <= 1/2``
  (integrates to 1). Summed over the unit-spaced steps of a rounding quantizer (see
  :func:`staircase_grad`) it is exactly 1 inside the representable range and 0 outside: the
  straight-through estimator of integer / multi-bit spikes.
* ``mlif-window:<base>``: the M-LIF one-hot lanes (000 §3.2, fig 2, A.1). Lane ``s`` fires in
  the window ``2^s < u/theta <= 2^(s+1)`` (the top lane ``S-1`` is open above); the lane spike
  ``o_s`` is binary (value 1) and the neuron emits ``o = sum_s 2^s o_s``. Its surrogate is the
  base surrogate rescaled to each window edge ``e = 2^s theta``, ``(1/e) g(u/e - 1)`` (eq 4 / eq
  5 with ``theta -> 2^s theta``), rising edge minus falling edge:
  ``d o_s/du = g_s(u) - g_(s+1)(u)`` (``s < S-1``), ``g_(S-1)(u)`` for the top lane, and
  ``d o/du = sum_s 2^s d o_s/du`` (the §3.2 equation and A.1). Each edge term integrates to the
  base's integral (``gamma`` for triangles, 1 for sigmoids), so lane ``s`` integrates to that
  multiple of its 0/1 window indicator: 0 over the whole line for ``s < S-1``, ``gamma`` (or 1)
  for the top lane; its primitive ``lane_step`` is the smoothed window.

New surrogates register with :func:`register_surrogate`; specs are ``name[:param[:param...]]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from snnconvert.errors import SnnConvertError
from snnconvert.registry import Registry


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


class Surrogate:
    """Base class: the derivative ``grad(x)`` of a smoothed unit step at ``x = u/theta - 1``."""

    name: str = ""
    support: float = math.inf  # grad is 0 for |x| > support

    def params(self) -> tuple[float, ...]:
        """The numeric parameters, in spec order."""
        return ()

    @property
    def spec(self) -> str:
        """Text that :func:`get_surrogate` parses back into an equal surrogate."""
        return ":".join([self.name, *(_fmt(p) for p in self.params())])

    def grad(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, x: Tensor) -> Tensor:
        """The smooth step whose derivative is :meth:`grad` (0 far below the threshold)."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Surrogate) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"Surrogate({self.spec!r})"


class Triangular(Surrogate):
    """Eq 4: ``gamma * max(0, 1 - |x|)`` (half-width 1 threshold, height gamma, area gamma)."""

    name = "triangular"
    support = 1.0

    def __init__(self, gamma: float = 0.3) -> None:
        self.gamma = _positive(gamma, "triangular", "gamma")

    def params(self) -> tuple[float, ...]:
        return (self.gamma,)

    def grad(self, x: Tensor) -> Tensor:
        return self.gamma * torch.clamp(1.0 - x.abs(), min=0.0)

    def step(self, x: Tensor) -> Tensor:
        y = torch.clamp(x, -1.0, 1.0)
        # integral of max(0, 1-|x|) from -1: (1+y)^2/2 below 0, 1 - (1-y)^2/2 above
        return self.gamma * torch.where(y <= 0, 0.5 * (1.0 + y) ** 2, 1.0 - 0.5 * (1.0 - y) ** 2)


class Sigmoid(Surrogate):
    """Eq 5: ``alpha * sigma(alpha x) * (1 - sigma(alpha x))``, the derivative of ``sigma(alpha x)``."""

    name = "sigmoid"

    def __init__(self, alpha: float = 4.0) -> None:
        self.alpha = _positive(alpha, "sigmoid", "alpha")

    def params(self) -> tuple[float, ...]:
        return (self.alpha,)

    def grad(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)

    def step(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.alpha * x)


class StraightThrough(Surrogate):
    """Box ``1`` for ``|x| <= 1/2``: the straight-through estimator of one unit step."""

    name = "straight-through"
    support = 0.5

    def grad(self, x: Tensor) -> Tensor:
        return (x.abs() <= 0.5).to(x.dtype)

    def step(self, x: Tensor) -> Tensor:
        return torch.clamp(x + 0.5, 0.0, 1.0)


class MLIFWindow(Surrogate):
    """M-LIF one-hot lanes: per lane, rising-edge minus falling-edge copies of ``base`` (see
    module docstring). ``grad(x, lanes)`` is ``d o/d(u/theta)`` of the lane value ``o``;
    with ``lanes = 1`` it is ``base.grad(x)`` (eq 6 with S = 1 is eq 1)."""

    name = "mlif-window"

    def __init__(self, base: Surrogate) -> None:
        if isinstance(base, MLIFWindow):
            raise SnnConvertError("surrogate 'mlif-window' takes a single-edge surrogate, not another window")
        self.base = base

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.base.spec}"

    def edge_grad(self, x: Tensor, s: int) -> Tensor:
        """Base surrogate at the edge ``u/theta = 2^s``: ``2^-s g((1 + x)/2^s - 1)``."""
        if s == 0:  # the threshold itself: exactly the base surrogate
            return self.base.grad(x)
        scale = 2.0 ** -s
        return scale * self.base.grad((1.0 + x) * scale - 1.0)

    def edge_step(self, x: Tensor, s: int) -> Tensor:
        if s == 0:
            return self.base.step(x)
        return self.base.step((1.0 + x) * 2.0 ** -s - 1.0)

    def lane_grad(self, x: Tensor, s: int, lanes: int) -> Tensor:
        """``d o_s / d(u/theta)`` of the binary lane ``o_s`` (0 <= s < lanes)."""
        g = self.edge_grad(x, s)
        return g if s == lanes - 1 else g - self.edge_grad(x, s + 1)

    def lane_step(self, x: Tensor, s: int, lanes: int) -> Tensor:
        """The smoothed window of lane ``s``: the primitive of :meth:`lane_grad`."""
        w = self.edge_step(x, s)
        return w if s == lanes - 1 else w - self.edge_step(x, s + 1)

    def grad(self, x: Tensor, lanes: int = 1) -> Tensor:
        # sum_s 2^s (g_s - g_(s+1)) + 2^(S-1) g_(S-1), telescoped: g_0 + sum_{s>=1} 2^(s-1) g_s
        total = self.edge_grad(x, 0)
        for s in range(1, lanes):
            total = total + 2.0 ** (s - 1) * self.edge_grad(x, s)
        return total

    def step(self, x: Tensor, lanes: int = 1) -> Tensor:
        total = self.edge_step(x, 0)
        for s in range(1, lanes):
            total = total + 2.0 ** (s - 1) * self.edge_step(x, s)
        return total


class Box(Surrogate):
    """DTSS paper eq 6: ``1`` for ``|x| < width`` (open), else 0; with ``width = 1`` and
    ``x = TS - 1`` it is ``d TM / d TS = 1`` for ``0 < TS < 2`` (the time-step mask)."""

    name = "box"

    def __init__(self, width: float = 1.0) -> None:
        self.width = _positive(width, "box", "width")
        self.support = self.width

    def params(self) -> tuple[float, ...]:
        return (self.width,)

    def grad(self, x: Tensor) -> Tensor:
        return (x.abs() < self.width).to(x.dtype)

    def step(self, x: Tensor) -> Tensor:
        return torch.clamp(x + self.width, 0.0, 2.0 * self.width)


def as_window(surrogate: Surrogate) -> MLIFWindow:
    """``surrogate`` as an M-LIF lane surrogate (a single-edge surrogate is wrapped)."""
    return surrogate if isinstance(surrogate, MLIFWindow) else MLIFWindow(surrogate)


def staircase_grad(surrogate: Surrogate, x: Tensor, first_edge: float, steps: int) -> Tensor:
    """Derivative surrogate of a staircase with ``steps`` unit steps at ``first_edge + k``
    (k = 0..steps-1): ``sum_k g(x - first_edge - k)`` (a rounding quantizer onto ``steps + 1``
    integer levels). A straight-through surrogate gives 1 on
    ``[first_edge - 1/2, first_edge + steps - 1/2]`` (the clip range) and 0 outside."""
    if steps <= 0:
        return torch.zeros_like(x)
    if isinstance(surrogate, StraightThrough):
        return ((x >= first_edge - 0.5) & (x <= first_edge + steps - 0.5)).to(x.dtype)
    reach = math.ceil(surrogate.support) if math.isfinite(surrogate.support) else steps
    if 2 * reach + 1 >= steps:
        total = surrogate.grad(x - first_edge)
        for k in range(1, steps):
            total = total + surrogate.grad(x - (first_edge + k))
        return total
    nearest = torch.floor(x - first_edge)  # only steps within the support contribute
    total = torch.zeros_like(x)
    for d in range(-reach, reach + 1):
        k = nearest + d
        inside = (k >= 0) & (k <= steps - 1)
        total = total + torch.where(inside, surrogate.grad(x - first_edge - k), torch.zeros_like(x))
    return total


class SpikeFunction(torch.autograd.Function):
    """Forward: ``fire(x)`` (the exact, non-differentiable firing); backward:
    ``grad_output * slope(x)`` (the surrogate). ``fire`` and ``slope`` are callables."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, fire: Callable[[Tensor], Tensor],  # noqa: ANN401
                slope: Callable[[Tensor], Tensor]) -> Tensor:
        ctx.slope = slope
        ctx.save_for_backward(x)
        return fire(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None]:  # noqa: ANN401
        (x,) = ctx.saved_tensors
        return grad_output * ctx.slope(x).to(grad_output.dtype), None, None


def spike(x: Tensor, fire: Callable[[Tensor], Tensor], slope: Callable[[Tensor], Tensor]) -> Tensor:
    """``fire(x)`` with the surrogate derivative ``slope(x)`` in the backward pass."""
    return SpikeFunction.apply(x, fire, slope)


# ---------------------------------------------------------------------------- registry

SurrogateFactory = Callable[..., Surrogate]


def _no_loading() -> None:
    """The built-in shapes register below, at import; others register where they are defined."""


SURROGATES: Registry[SurrogateFactory] = Registry("surrogate gradient", same=lambda _a, _b: True, load=_no_loading)
"""Every surrogate shape by name (a later registration of a name replaces the earlier one)."""


def register_surrogate(name: str, factory: SurrogateFactory) -> None:
    """Make ``name`` parseable: ``factory(*params)`` receives the spec's ``:``-separated
    parameters as strings and returns a :class:`Surrogate` (raise ``SnnConvertError`` on bad ones)."""
    if not name or ":" in name:
        raise ValueError(f"bad surrogate name {name!r}")
    SURROGATES.register(name, factory)


def get_surrogate(spec: str | Surrogate) -> Surrogate:
    """Parse ``name[:param...]`` (e.g. ``"triangular:0.3"``, ``"mlif-window:sigmoid:4"``)."""
    if isinstance(spec, Surrogate):
        return spec
    name, *params = str(spec).strip().split(":")
    if name not in SURROGATES:
        raise SnnConvertError(f"unknown surrogate gradient {name!r} in {spec!r}; known: {', '.join(SURROGATES)}")
    return SURROGATES.get(name)(*params)


def _positive(value: float | str, name: str, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SnnConvertError(f"surrogate {name!r}: {what} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise SnnConvertError(f"surrogate {name!r}: {what} must be a positive finite number, got {value!r}")
    return v


def _one_param(cls: Callable[[float], Surrogate], name: str, default: float) -> SurrogateFactory:
    def factory(*params: str) -> Surrogate:
        if len(params) > 1:
            raise SnnConvertError(f"surrogate {name!r} takes one parameter, got {':'.join(params)!r}")
        return cls(params[0] if params else default)

    return factory


def _straight_through(*params: str) -> Surrogate:
    if params:
        raise SnnConvertError(f"surrogate 'straight-through' takes no parameter, got {':'.join(params)!r}")
    return StraightThrough()


def _window(*params: str) -> Surrogate:
    if not params:
        raise SnnConvertError("surrogate 'mlif-window' needs a base surrogate, e.g. 'mlif-window:triangular:0.3'")
    return MLIFWindow(get_surrogate(":".join(params)))


register_surrogate("triangular", _one_param(Triangular, "triangular", 0.3))
register_surrogate("sigmoid", _one_param(Sigmoid, "sigmoid", 4.0))
register_surrogate("straight-through", _straight_through)
register_surrogate("mlif-window", _window)
register_surrogate("box", _one_param(Box, "box", 1.0))


class StackedSigmoid(Sigmoid):
    """SpQuant-SNN's stacked gradient surrogation (paper 001, eqs 11-13): one sigmoid derivative
    of smoothness T per boundary of an integer quantizer; ``grad(x)`` is a single term, and
    :func:`stacked_grad` sums the terms at every level boundary s_k = (k_i + k_(i+1)) / 2."""

    name = "sgs"


def stacked_grad(u: Tensor, lo: int, hi: int, smoothness: float) -> Tensor:
    """Q*(u) of eq 11 for the integer levels lo..hi: ``sum_k T sigma(T(u - s_k))(1 - sigma(T(u - s_k)))``
    with s_k = lo + 1/2, ..., hi - 1/2 (eq 12)."""
    return staircase_grad(StackedSigmoid(smoothness), u, lo + 0.5, hi - lo)


register_surrogate("sgs", _one_param(StackedSigmoid, "sgs", 4.0))
