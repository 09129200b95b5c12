"""SWS paper fig 5b: the TSA threshold not lowered (V_th = theta beta^Ts instead of half of it)."""

from __future__ import annotations

import pytest
import torch
from helpers import quantize_random, randomize_batchnorm

from snnconvert.errors import SnnConvertError
from snnconvert.ingest import load_model
from snnconvert.methods.sws.coding import SWSConfig, convert_sws, neuron_modules, summary_rows
from snnconvert.methods.sws.neuron import TSANeuron, tsa_dynamics, tsa_dynamics_autograd
from snnconvert.methods.sws.reference import _TSAState, reference_run, tsa_step
from snnconvert.neurons.base import unfold_time
from snnconvert.serialize import module_from_spec, module_spec

# Tc = 3, Ts = 3 (every input is in before the first spike), beta = 2, qmax = 7; one pulse at the
# last step makes V = 5.4 and 5.8 (weights 4, 2, 1 of the three spikes; r = u / beta^Ts):
#   lowered, V = 5.4: r = 1.35 -> +1 (4), 0.35 -> 0.7 -> +1 (6), -0.3 -> -0.6 -> -1 (5)   = round(5.4)
#   lowered, V = 5.8: r = 1.45 -> +1 (4), 0.45 -> 0.9 -> +1 (6), -0.1 -> -0.2 ->  0 (6)   = round(5.8)
#   not lowered, V = 5.4: 1.35 -> +1 (4), 0.35 -> 0.7 -> 0, 1.4 -> +1 (5)                = floor(5.4)
#   not lowered, V = 5.8: 1.45 -> +1 (4), 0.45 -> 0.9 -> 0, 1.8 -> +1 (5)                = floor(5.8)
INPUTS = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.4, 5.8]], dtype=torch.float64)
EXPECTED = {0.5: ([[1, 1], [1, 1], [-1, 0]], [5.0, 6.0]), 1.0: ([[1, 1], [0, 0], [1, 1]], [5.0, 5.0])}


@pytest.mark.parametrize("threshold", [0.5, 1.0])
def test_tsa_threshold_by_hand_in_all_three_simulations(threshold: float) -> None:
    """The fast loop, the differentiable loop and the step-by-step reference fire the hand-derived
    spikes; not lowered, the neuron truncates where the paper's rounds."""
    spikes, expected_emitted = EXPECTED[threshold]
    fast, _, emitted = tsa_dynamics(INPUTS, Ts=3, beta=2.0, qmax=7.0, threshold=threshold)
    assert fast.tolist() == spikes and emitted.tolist() == expected_emitted
    grad, _, emitted_grad = tsa_dynamics_autograd(INPUTS, Ts=3, beta=2.0, qmax=7.0, threshold=threshold)
    assert torch.equal(grad, fast) and torch.equal(emitted_grad, emitted)
    state = _TSAState(torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    stepped = []
    for t in range(1, 7):  # Tc + Ts steps; spike k fires at t = Ts + k
        z = INPUTS[t - 1] if t <= 3 else None
        stepped.append(tsa_step(state, z, t - 3 if t > 3 else 0, Tc=3, Ts=3, beta=2.0, qmax=7.0, qmin=0.0,
                                fraction=threshold))
    assert torch.stack(stepped[3:]).tolist() == spikes


def test_the_option_reaches_every_tsa_layer_and_the_artifact() -> None:
    """lowered_threshold=False: every TSA layer fires at theta beta^Ts, the folded engine still
    equals the step-by-step reference, the summary says so, and a module's stored config keeps
    the threshold (the paper's default is left out, so earlier artifacts read the same)."""
    torch.manual_seed(1)
    lm = load_model("lenet5")
    q = quantize_random(randomize_batchnorm(lm.module), lm.input_spec)
    snn = convert_sws(q, SWSConfig(Tc=8, Ts=1, lowered_threshold=False))
    tsa = [m for m in neuron_modules(snn.body).values() if isinstance(m, TSANeuron)]
    assert tsa and all(m.threshold == 1.0 for m in tsa)
    recorded = {}
    for layer, module in snn.body.named_modules():
        if hasattr(module, "Ts"):
            module.register_forward_hook(lambda m, i, o, n=layer: recorded.__setitem__(n, unfold_time(o, 8)))
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        logits = snn(x)
    ref_logits, ref_spikes = reference_run(snn, x)
    for layer, frames in ref_spikes.items():
        assert torch.equal(torch.stack(frames), recorded[layer]), layer
    assert torch.allclose(logits, ref_logits, rtol=0, atol=1e-9)
    assert ("TSA threshold", "theta beta^Ts, not lowered (fig 5b ablation: not exact)") in summary_rows(snn.info)
    stored = module_spec(tsa[0])
    assert stored["config"]["threshold"] == 1.0 and module_from_spec(stored).threshold == 1.0
    assert "threshold" not in module_spec(TSANeuron(8, 2))["config"]


def test_the_ablation_refuses_what_needs_exactness() -> None:
    lm = load_model("lenet5")
    q = quantize_random(lm.module, lm.input_spec)
    for config in (SWSConfig(Ts="auto", lowered_threshold=False),
                   SWSConfig(Ts=2, residual_tolerance=0.0, lowered_threshold=False)):
        with pytest.raises(SnnConvertError, match="ablation that is never exact") as err:
            convert_sws(q, config)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="threshold must be in"):
        TSANeuron(8, 2, threshold=0.0)
