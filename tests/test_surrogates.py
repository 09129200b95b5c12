"""Surrogate gradients (M-LIF paper eqs 4-5, §3.2, A.1) and the differentiable neuron dynamics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.methods.mlif.neuron import MLIFNeuron, fire_level
from snnconvert.methods.multibit.neuron import MultiBitEncoder, MultiBitNeuron
from snnconvert.methods.rate.neuron import IFNeuron, RateMaxPool
from snnconvert.methods.sws.neuron import SWSEncoder, SWSMaxPoolNeuron, TSANeuron
from snnconvert.neurons.surrogates import (
    SURROGATES,
    MLIFWindow,
    Surrogate,
    get_surrogate,
    register_surrogate,
    staircase_grad,
)
from snnconvert.simulate.synapse import SynapseLinear

F64 = torch.float64


def _t(*values: float) -> Tensor:
    return torch.tensor(values, dtype=F64)


# --- registry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["triangular:0.3", "triangular:1", "sigmoid:4", "sigmoid:2.5", "straight-through",
                                  "mlif-window:triangular:0.3", "mlif-window:sigmoid:4",
                                  "mlif-window:straight-through", "triangular:0.123456789"])
def test_spec_round_trips(spec: str) -> None:
    s = get_surrogate(spec)
    assert isinstance(s, Surrogate)
    again = get_surrogate(s.spec)
    assert again.spec == s.spec and again == s
    assert s.name == spec.split(":")[0]
    x = torch.linspace(-3, 3, 61, dtype=F64)
    assert torch.equal(again.grad(x), s.grad(x))


def test_registry_lists_names_and_accepts_new_surrogates() -> None:
    assert {"triangular", "sigmoid", "straight-through", "mlif-window"} <= set(SURROGATES)

    class Box(Surrogate):
        name = "test-box"
        support = 1.0

        def grad(self, x: Tensor) -> Tensor:
            return (x.abs() <= 1.0).to(x.dtype) * 0.5

    register_surrogate("test-box", lambda *params: Box())
    assert "test-box" in SURROGATES
    assert get_surrogate("test-box").spec == "test-box"
    # a registered surrogate also works as the base of an M-LIF window
    assert get_surrogate("mlif-window:test-box").spec == "mlif-window:test-box"


@pytest.mark.parametrize(("spec", "match"), [
    ("gaussian:1", "unknown surrogate gradient 'gaussian'.*known: .*triangular"),
    ("triangular:abc", "gamma must be a number"),
    ("triangular:-1", "positive"),
    ("triangular:0", "positive"),
    ("sigmoid:nan", "positive"),
    ("sigmoid:1:2", "one parameter"),
    ("straight-through:1", "no parameter"),
    ("mlif-window", "needs a base surrogate"),
    ("mlif-window:mlif-window:triangular:0.3", "not another window"),
])
def test_bad_specs_raise_clear_errors(spec: str, match: str) -> None:
    with pytest.raises(SnnConvertError, match=match):
        get_surrogate(spec)


# --- hand-computed values ------------------------------------------------------------------------


def test_triangular_is_eq4() -> None:
    # eq 4 in units of theta: gamma * max(0, 1 - |x|), x = u/theta - 1, gamma = 0.3
    g = get_surrogate("triangular:0.3")
    got = g.grad(_t(0.0, 0.5, -0.25, 1.0, -1.5, 2.0))
    # 0.3*1 = 0.3; 0.3*0.5 = 0.15; 0.3*0.75 = 0.225; 0.3*0 = 0; 0; 0
    assert torch.allclose(got, _t(0.3, 0.15, 0.225, 0.0, 0.0, 0.0), rtol=0, atol=1e-15)
    # the primitive: gamma/2 at the threshold, gamma*(1 - 0.5^2/2) = 0.3*0.875 = 0.2625 at x = 0.5
    assert torch.allclose(g.step(_t(-2.0, 0.0, 0.5, 3.0)), _t(0.0, 0.15, 0.2625, 0.3), rtol=0, atol=1e-15)


def test_sigmoid_is_eq5() -> None:
    # eq 5: alpha sigma(alpha x)(1 - sigma(alpha x)); alpha = 4
    g = get_surrogate("sigmoid:4")
    x = math.log(3.0) / 4  # sigma(ln 3) = 3/4 -> 4 * 3/4 * 1/4 = 0.75
    got = g.grad(_t(0.0, x, -x))
    assert torch.allclose(got, _t(1.0, 0.75, 0.75), rtol=0, atol=1e-15)  # 4 * 1/2 * 1/2 = 1 at x = 0


def test_straight_through_is_a_unit_box() -> None:
    g = get_surrogate("straight-through")
    got = g.grad(_t(0.0, 0.5, -0.5, 0.5000001, -0.49, 2.0))
    assert torch.equal(got, _t(1.0, 1.0, 1.0, 0.0, 1.0, 0.0))


def test_staircase_straight_through_is_one_inside_the_clip_range() -> None:
    # rounding onto 0..3: steps at 0.5, 1.5, 2.5 -> gradient 1 on [0, 3], 0 outside
    x = _t(-0.1, 0.0, 1.2, 3.0, 3.1)
    assert torch.equal(staircase_grad(get_surrogate("straight-through"), x, 0.5, 3), _t(0.0, 1.0, 1.0, 1.0, 0.0))
    # triangular:1 at x = 1.2: steps 0.5 (|d| = 0.7 -> 0.3), 1.5 (0.3 -> 0.7), 2.5 (1.3 -> 0): 1.0
    tri = get_surrogate("triangular:1")
    assert torch.allclose(staircase_grad(tri, _t(1.2), 0.5, 3), _t(1.0), rtol=0, atol=1e-15)
    # the windowed sum over many steps equals the plain sum
    many = torch.linspace(-3, 40, 431, dtype=F64)
    plain = sum(tri.grad(many - (0.5 + k)) for k in range(30))
    assert torch.allclose(staircase_grad(tri, many, 0.5, 30), plain, rtol=0, atol=1e-14)


def test_mlif_window_triangular_values() -> None:
    # S = 3, gamma = 0.3, u/theta = 3 (x = 2). Edge terms 2^-s g(r/2^s - 1):
    #   s=0: g(2) = 0;  s=1: 0.5 * g(0.5) = 0.5*0.15 = 0.075;  s=2: 0.25 * g(-0.25) = 0.25*0.225 = 0.05625
    # lanes: o_0 = 0 - 0.075 = -0.075; o_1 = 0.075 - 0.05625 = 0.01875; o_2 (top) = 0.05625
    # d o/d r = sum 2^s d o_s/dr = -0.075 + 2*0.01875 + 4*0.05625 = 0.1875
    w = get_surrogate("mlif-window:triangular:0.3")
    assert isinstance(w, MLIFWindow)
    x = _t(2.0)
    lanes = [float(w.lane_grad(x, s, 3)) for s in range(3)]
    assert lanes == pytest.approx([-0.075, 0.01875, 0.05625], abs=1e-15)
    assert float(w.grad(x, lanes=3)) == pytest.approx(0.1875, abs=1e-15)
    # one lane is eq 4 itself (eq 6 with S = 1 is eq 1)
    xs = torch.linspace(-3, 3, 121, dtype=F64)
    assert torch.equal(w.grad(xs, lanes=1), get_surrogate("triangular:0.3").grad(xs))


def test_mlif_window_sigmoid_values() -> None:
    # A.1, S = 2, alpha = 4, u/theta = 2 (x = 1): lane 0 = 4 s(4)(1 - s(4)) - (1/2) * 4 s(0)(1 - s(0))
    w = get_surrogate("mlif-window:sigmoid:4")
    s4 = 1.0 / (1.0 + math.exp(-4.0))
    lane0 = 4 * s4 * (1 - s4) - 0.5 * 1.0
    lane1 = 0.5 * 1.0  # top lane: (1/2) * 4 * 1/2 * 1/2
    assert float(w.lane_grad(_t(1.0), 0, 2)) == pytest.approx(lane0, abs=1e-15)
    assert float(w.lane_grad(_t(1.0), 1, 2)) == pytest.approx(lane1, abs=1e-15)
    assert float(w.grad(_t(1.0), lanes=2)) == pytest.approx(lane0 + 2 * lane1, abs=1e-15)


def test_mlif_window_matches_the_papers_formula_in_u() -> None:
    # §3.2: d o_s/du = gamma/(2^s theta) max(0, 1 - |u/(2^s theta) - 1|) - (same at 2^(s+1) theta);
    # the spike function differentiates u/theta, so autograd supplies the 1/theta.
    theta, gamma, S = 0.7, 0.3, 3
    u = torch.linspace(-1, 12, 263, dtype=F64, requires_grad=True)
    w = get_surrogate(f"mlif-window:triangular:{gamma}")
    from snnconvert.neurons.surrogates import spike

    out = spike(u / theta, lambda r: fire_level(r, S), lambda r: w.grad(r - 1.0, lanes=S))
    out.sum().backward()

    def tri(e: float) -> Tensor:
        return gamma / e * torch.clamp(1 - (u.detach() / e - 1).abs(), min=0)

    expected = sum(2**s * (tri(2**s * theta) - (tri(2 ** (s + 1) * theta) if s < S - 1 else 0)) for s in range(S))
    assert torch.allclose(u.grad, expected, rtol=0, atol=1e-14)


# --- each window lane integrates to its lane's (scaled) step ---------------------------------


@pytest.mark.parametrize(("base", "height"), [("triangular:0.3", 0.3), ("triangular:1", 1.0), ("sigmoid:4", 1.0)])
@pytest.mark.parametrize("S", [1, 2, 4])
def test_window_lanes_integrate_to_their_step(base: str, height: float, S: int) -> None:
    """Cumulative trapezoid integral of lane s over r = u/theta on a grid of step 1e-4 (float64)
    from far below the lowest edge:
    its total is 0 for a window lane and ``height`` (gamma, or 1 for the sigmoid) for the top
    lane; the running integral equals the lane's smoothed window ``lane_step`` (tolerance 1e-7),
    is exactly ``height * indicator`` away from the edges (triangles), and the smoothing
    preserves area: integral of (running integral - height * indicator) = 0 (tolerance 1e-5)."""
    w = get_surrogate(f"mlif-window:{base}")
    hi = 2.0 ** (S + 2)  # sigmoid: sigma(4 (2^(S+2) / 2^(S-1) - 1)) = sigma(28) = 1 - 7e-13
    lo = -20.0 if base.startswith("triangular") else -150.0  # sigmoid tails: sigma(4 (-150/16 - 1)) < 1e-18
    r = torch.arange(lo, hi, 1e-4, dtype=F64)
    x = r - 1.0
    for s in range(S):
        g = w.lane_grad(x, s, S)
        running = torch.cat([torch.zeros(1, dtype=F64), torch.cumulative_trapezoid(g, r)])
        top = s == S - 1
        assert float(running[-1]) == pytest.approx(height if top else 0.0, abs=1e-7)
        assert torch.allclose(running, w.lane_step(x, s, S), rtol=0, atol=1e-7)
        inside = (r > 2.0**s) & ((r <= 2.0 ** (s + 1)) | top)
        indicator = height * inside.to(F64)
        if base.startswith("triangular"):
            far = (r <= 0) | (r >= 2.0 ** (s + 2)) if not top else (r <= 0) | (r >= 2.0 ** (s + 1))
            assert torch.allclose(running[far], indicator[far], rtol=0, atol=1e-7)
        if not top:  # (the top lane's step is open above: compare up to a finite end)
            area = torch.trapezoid(running - indicator, r)
            assert float(area) == pytest.approx(0.0, abs=1e-5)


# --- BPTT gradients against finite differences of a smoothed reference -------------------------


def _hard(kind: str, r: Tensor, S: int) -> Tensor:
    return fire_level(r, S) if kind == "mlif" else (r >= 1.0).to(r.dtype)


def _reference(kind: str, params: dict[str, Tensor], images: Tensor, T: int, S: int, spec: str,
               anchors: list[Tensor] | None) -> tuple[Tensor, list[Tensor]]:
    """Pure-PyTorch 2-layer SNN (linear -> neuron -> linear -> neuron, T steps, eq 1 / eq 6 with
    learnable theta and beta). Each firing is ``H(r*) + P(r) - P(r*)`` where ``P`` is the
    integral of the surrogate (a smooth step) and ``r*`` the ratio u/theta of the hard run
    (``anchors``; the hard run itself when None): the same value as the hard network at the
    anchor, and a smooth function of the parameters whose derivative is the surrogate."""
    w = get_surrogate(spec)
    prim = (lambda r: w.step(r - 1.0, lanes=S)) if kind == "mlif" else (lambda r: w.step(r - 1.0))
    ratios: list[Tensor] = []
    x = images
    for layer in (1, 2):
        z = x @ params[f"w{layer}"].T + params[f"b{layer}"]
        theta, beta = params[f"theta{layer}"], params[f"beta{layer}"]
        u = torch.zeros_like(z[0]) + (0.5 * theta if kind == "if" else 0.0)
        outs = []
        for t in range(T):
            reset = theta * outs[-1] if outs else 0.0
            u = beta * u + z[t] - reset if kind == "mlif" else beta * u - reset + z[t]  # the modules' op order
            r = u / theta
            if anchors is None:
                o = _hard(kind, r.detach(), S)
            else:
                star = anchors[len(ratios)]
                o = _hard(kind, star, S) + prim(r) - prim(star)
            ratios.append(r.detach())
            outs.append(o)
        x = torch.stack(outs)
    return x, ratios


def _module_net(kind: str, params: dict[str, Tensor], T: int, S: int, spec: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for layer in (1, 2):
        wt = params[f"w{layer}"]
        syn = SynapseLinear(wt.shape[1], wt.shape[0], steps=T, dtype=F64)
        syn.weight = nn.Parameter(wt.clone())
        syn.bias = nn.Parameter(params[f"b{layer}"].clone())
        if kind == "mlif":
            neuron = MLIFNeuron(T, S, beta=0.5, surrogate=spec, learn_threshold=True, learn_leak=True)
        else:
            neuron = IFNeuron(T, init=0.5, surrogate=spec, learn_threshold=True, learn_leak=True)
        neuron = neuron.to(F64)
        neuron.threshold = nn.Parameter(params[f"theta{layer}"].reshape(1).clone())
        neuron.leak = nn.Parameter(params[f"beta{layer}"].reshape(1).clone())
        layers += [syn, neuron]
    return nn.Sequential(*layers)


@pytest.mark.parametrize(("kind", "spec"), [
    ("mlif", "mlif-window:triangular:0.3"), ("mlif", "mlif-window:sigmoid:4"), ("mlif", "mlif-window:triangular:1"),
    ("if", "triangular:1"), ("if", "sigmoid:4"),
])
def test_bptt_gradient_equals_finite_differences_of_smoothed_reference(kind: str, spec: str) -> None:
    """Gradients of every weight, bias, threshold and leak of a T = 3 two-layer SNN from the
    surrogate backward equal central finite differences (h = 1e-6, float64) of the anchored
    smooth reference (abs tolerance 2e-6 + rel 1e-5); the hard forward values agree exactly."""
    T, S, B = 3, 3, 5
    g = torch.Generator().manual_seed(1)
    params = {
        "w1": torch.randn(6, 4, generator=g, dtype=F64), "b1": torch.randn(6, generator=g, dtype=F64) * 0.3,
        "w2": torch.randn(3, 6, generator=g, dtype=F64) * 0.8, "b2": torch.randn(3, generator=g, dtype=F64) * 0.3,
        "theta1": _t(1.3)[0], "theta2": _t(0.8)[0], "beta1": _t(0.6)[0], "beta2": _t(0.9)[0],
    }
    if kind == "if":
        params["beta1"], params["beta2"] = _t(1.0)[0], _t(0.95)[0]
    images = torch.rand(T, B, 4, generator=g, dtype=F64) * 2.5
    coeffs = torch.randn(T, B, 3, generator=g, dtype=F64)

    net = _module_net(kind, params, T, S, spec)
    out = net(images.reshape(T * B, 4)).reshape(T, B, 3)
    hard, anchors = _reference(kind, params, images, T, S, spec, None)
    assert torch.equal(out, hard)  # the reference's hard run is the module's forward
    assert bool((out != 0).any()) and bool((out == 0).any())
    (out * coeffs).sum().backward()
    syn1, n1, syn2, n2 = net
    got = {"w1": syn1.weight.grad, "b1": syn1.bias.grad, "w2": syn2.weight.grad, "b2": syn2.bias.grad,
           "theta1": n1.threshold.grad[0], "theta2": n2.threshold.grad[0],
           "beta1": n1.leak.grad[0], "beta2": n2.leak.grad[0]}

    def loss(p: dict[str, Tensor]) -> float:
        y, _ = _reference(kind, p, images, T, S, spec, anchors)
        return float((y * coeffs).sum())

    h = 1e-6
    nonzero = 0
    for name, value in params.items():
        fd = torch.zeros_like(value)
        flat = fd.reshape(-1)
        for i in range(value.numel()):
            plus, minus = value.clone().reshape(-1), value.clone().reshape(-1)
            plus[i] += h
            minus[i] -= h
            flat[i] = (loss({**params, name: plus.reshape(value.shape)})
                       - loss({**params, name: minus.reshape(value.shape)})) / (2 * h)
        assert torch.allclose(got[name], fd, rtol=1e-5, atol=2e-6), name
        nonzero += int((fd.abs() > 1e-3).sum())
    assert nonzero > 10  # the check is not vacuous


# --- the differentiable path's forward equals the fast path exactly -------------------------------


def _neuron_cases(dtype: torch.dtype) -> list[tuple[nn.Module, Tensor]]:
    g = torch.Generator().manual_seed(3)

    def rnd(*shape: int, scale: float = 1.0) -> Tensor:
        return (torch.randn(*shape, generator=g, dtype=F64) * scale).to(dtype)

    spikes = torch.randint(-1, 2, (4 * 2, 3, 6, 6), generator=g).to(dtype)
    return [
        (MLIFNeuron(4, 3, beta=0.9), rnd(8, 3, 5, 5, scale=3)),
        (MLIFNeuron(4, 1), rnd(8, 7, scale=2)),
        (IFNeuron(4), rnd(8, 3, 5, 5)),
        (IFNeuron(4, init=0.0), rnd(8, 7)),
        (RateMaxPool(4, 2), (rnd(8, 3, 6, 6) > 0).to(dtype)),
        (RateMaxPool(4, 3, stride=2, padding=1, ceil_mode=True), rnd(8, 3, 7, 7)),
        (MultiBitNeuron(4, 4, bits=3), rnd(8, 3, 5, 5, scale=3)),
        (MultiBitNeuron(4, 4, bits=3, signed=True, tau=2.0), rnd(8, 3, 5, 5, scale=3)),
        (MultiBitNeuron(4, 2, bits=2, squeeze=True), rnd(8, 5, scale=3)),
        (MultiBitEncoder(4, bits=3, in_channels=3, padding=(1, 1, 1, 1)), rnd(2, 3, 5, 5, scale=3).abs()),
        (TSANeuron(4, 2, qmax=15.0), rnd(8, 3, 5, 5, scale=4)),
        (TSANeuron(3, 1, qmax=5.0), rnd(6, 9, scale=4)),
        (TSANeuron(4, 2, beta=3.0, qmax=30.0), rnd(8, 3, 5, 5, scale=30)),  # top clamp binds from step 2
        (TSANeuron(3, 0, beta=3.0, qmax=26.0), rnd(6, 9, scale=9)),
        (SWSEncoder(4, qmax=15), rnd(2, 3, 5, 5, scale=15).abs()),
        (SWSMaxPoolNeuron(2, 2, 0, 1, False, 4, 4, qmax=15.0), spikes),
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grad_path_forward_equals_fast_path(dtype: torch.dtype) -> None:
    for module, x in _neuron_cases(dtype):
        module = module.to(dtype)
        with torch.no_grad():
            fast = module(x)
        xg = x.clone().requires_grad_(True)
        slow = module(xg)
        assert slow.requires_grad, type(module).__name__
        assert torch.equal(fast, slow), type(module).__name__
        slow.sum().backward()  # the backward runs (no out= / in-place autograd errors)
        assert xg.grad is not None and torch.isfinite(xg.grad).all()
        if not isinstance(module, SWSEncoder):  # (the encoder's input quantization passes no gradient)
            assert bool((xg.grad != 0).any()), type(module).__name__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_learnable_threshold_and_leak_keep_the_forward(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(12, 3, 4, 4, generator=g, dtype=F64) * 3).to(dtype)
    for plain, learn in [
        (MLIFNeuron(4, 3, beta=0.9), MLIFNeuron(4, 3, beta=0.9, learn_threshold=True, learn_leak=True, channels=3)),
        (MLIFNeuron(4, 2, beta=0.75), MLIFNeuron(4, 2, beta=0.75, learn_threshold=True, learn_leak=True)),
        (IFNeuron(4), IFNeuron(4, learn_threshold=True, learn_leak=True, channels=3)),
    ]:
        plain, learn = plain.to(dtype), learn.to(dtype)
        with torch.no_grad():
            expected = plain(x)
            assert torch.equal(learn(x), expected)
        out = learn(x)
        assert torch.equal(out, expected)
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view(out.shape)).sum().backward()
        assert learn.threshold.grad is not None and bool((learn.threshold.grad != 0).any())
        assert learn.leak.grad is not None and bool((learn.leak.grad != 0).any())


def test_surrogate_changes_only_the_backward() -> None:
    x = torch.linspace(-1, 5, 40, dtype=F64).repeat(3, 1)  # T = 3 frames of 40 neurons
    grads = {}
    for spec in ("mlif-window:triangular:0.3", "mlif-window:sigmoid:4", "straight-through"):
        xg = x.clone().requires_grad_(True)
        out = MLIFNeuron(3, 3, surrogate=spec).to(F64)(xg)
        out.sum().backward()
        grads[spec] = xg.grad
        with torch.no_grad():
            assert torch.equal(out, MLIFNeuron(3, 3).to(F64)(x))
    assert not torch.allclose(grads["mlif-window:triangular:0.3"], grads["mlif-window:sigmoid:4"])
    # a single-edge spec on an M-LIF neuron is applied at each window edge
    assert MLIFNeuron(3, 3, surrogate="straight-through").surrogate == "straight-through"


def test_neurons_have_default_surrogates_and_serial_params() -> None:
    assert MLIFNeuron(2, 2).surrogate == "mlif-window:triangular:0.3"
    assert IFNeuron(2).surrogate == "triangular:1"
    assert MultiBitNeuron(2, 2).surrogate == "straight-through"
    assert TSANeuron(2, 1).surrogate == "straight-through"
    with pytest.raises(SnnConvertError, match="unknown surrogate"):
        IFNeuron(2, surrogate="nope")
    for module, _ in _neuron_cases(torch.float32):
        assert "surrogate" in type(module).serial_params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_serial_params_rebuild_every_neuron(dtype: torch.dtype) -> None:
    """``cls(**{p: getattr(m, p)})`` + ``load_state_dict`` rebuilds each module exactly."""
    cases = _neuron_cases(dtype) + [
        (MLIFNeuron(4, 3, beta=0.9, surrogate="mlif-window:sigmoid:4", learn_threshold=True, learn_leak=True,
                    channels=3), torch.randn(8, 3, 5, 5, dtype=dtype) * 3),
        (IFNeuron(4, init=0.25, learn_threshold=True, channels=3), torch.randn(8, 3, 5, 5, dtype=dtype)),
        (MultiBitNeuron(4, 4, bits=3, channels=3, surrogate="triangular:1", learn_threshold=True),
         torch.randn(8, 3, 5, 5, dtype=dtype) * 3),
    ]
    for module, x in cases:
        module = module.to(dtype)
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.rand_like(p) * 0.5 + 0.75)  # non-default values must come back
            for name, b in module.named_buffers():
                if name in ("center", "scale", "zero_point"):
                    b.copy_(torch.rand_like(b) + 0.5 if name == "scale" else torch.rand_like(b))
        cls = type(module)
        config = {p: getattr(module, p) for p in cls.serial_params}
        rebuilt = cls(**config)
        rebuilt.load_state_dict(module.state_dict(), strict=True, assign=True)
        assert {p: getattr(rebuilt, p) for p in cls.serial_params} == config, cls.__name__
        assert [(n, p.requires_grad) for n, p in rebuilt.named_parameters()] == \
            [(n, p.requires_grad) for n, p in module.named_parameters()]
        with torch.no_grad():
            assert torch.equal(rebuilt(x), module(x)), cls.__name__
