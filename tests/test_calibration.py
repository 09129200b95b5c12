"""Layer-wise calibration after conversion (snnconvert.calibrate): hand-built one-layer cases."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import fx, nn
from torch.utils.data import DataLoader, TensorDataset

from snnconvert.calibrate import _least_squares, calibrate, check_calibration, find_sites
from snnconvert.cli.coding_options import coding_options
from snnconvert.codings import get_coding
from snnconvert.codings.common import insert_neurons, replace_synapses
from snnconvert.errors import SnnConvertError
from snnconvert.graph.passes import recompile_graph
from snnconvert.methods.rate.neuron import IFNeuron
from snnconvert.simulate.encoders import RepeatEncoder
from snnconvert.simulate.synapse import Gain, SynapseConv2d, SynapseLinear, WeightedSumDecoder

T = 8
THETA = 1.0
OFFSET = 0.3


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu(self.conv(x)), 1))


def _ann() -> fx.GraphModule:
    """conv + ReLU whose pre-activations on the test images lie in about [0.1, 0.9]: every
    neuron is in the IF layer's linear range (no clipping at 0 or at theta = 1)."""
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.conv.weight.uniform_(-0.02, 0.02)
        net.conv.bias.copy_(torch.tensor([0.3, 0.5, 0.7]))
    return fx.symbolic_trace(net.eval())


def _images(n: int = 96) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 2, 4, 4, generator=g)
    return DataLoader(TensorDataset(x, torch.randint(0, 4, (n,), generator=g)), batch_size=32)


def _unfolded(ann: fx.GraphModule) -> fx.GraphModule:
    """The rate coding's unfolded graph with a known bias error: the conv synapse's bias is
    ``OFFSET`` too low."""
    gm = copy.deepcopy(ann)
    replace_synapses(gm, torch.ones(T, dtype=torch.float64))
    gm.double()
    insert_neurons(gm, {"relu": (IFNeuron(T, 0.5), torch.tensor(THETA, dtype=torch.float64))})
    recompile_graph(gm)
    with torch.no_grad():
        gm.conv.bias.sub_(OFFSET)
    return gm


def _layer_mse(gm: fx.GraphModule, ann: fx.GraphModule, loader: DataLoader) -> float:
    """Mean squared error of the IF layer's time-averaged output (real units) against the ReLU."""
    out_gain = gm.get_submodule("relu_out_gain")
    seen: list[torch.Tensor] = []
    handle = out_gain.register_forward_hook(lambda _m, _i, out: seen.append(out))
    errors = []
    with torch.no_grad():
        for x, _ in loader:
            seen.clear()
            gm(RepeatEncoder(T)(x.double()))
            decoded = seen[0].reshape(T, len(x), *seen[0].shape[1:]).mean(0)
            target = torch.relu(ann.conv(x)).double()
            errors.append(((decoded - target) ** 2).flatten())
    handle.remove()
    return float(torch.cat(errors).mean())


def test_bias_calibration_removes_a_known_offset() -> None:
    ann, loader = _ann(), _images()
    gm = _unfolded(ann)
    before = _layer_mse(gm, ann, loader)
    assert before > 0.8 * OFFSET**2  # the offset dominates: at least most of OFFSET^2
    result = calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, "bias", images=48)
    after = _layer_mse(gm, ann, loader)
    # with the offset gone, a half-init IF layer rounds a constant input in [0, theta] to the
    # nearest multiple of theta/T: every error is at most theta/(2T), so the MSE is at most that squared
    assert after <= (THETA / (2 * T)) ** 2 + 1e-9, (before, after)
    assert result.calibrated == 1 and result.layers == 1
    assert result.layer_error["relu"][1] < result.layer_error["relu"][0]
    assert result.before and result.after and result.seconds > 0


def test_bias_goes_into_the_synapse_and_gains_stay_reciprocal() -> None:
    ann, loader = _ann(), _images()
    gm = _unfolded(ann)
    bias0 = gm.conv.bias.detach().clone()
    calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, "bias", images=48)
    assert isinstance(gm.conv, SynapseConv2d)
    # the correction restores roughly the removed offset (the rest is rounding to multiples of 1/T)
    shift = gm.conv.bias.detach() - bias0
    assert torch.allclose(shift, torch.full_like(shift, OFFSET), atol=1.0 / T)
    g_in, g_out = gm.get_submodule("relu_in_gain"), gm.get_submodule("relu_out_gain")
    assert isinstance(g_in, Gain) and isinstance(g_out, Gain)
    product = g_in.gain * g_out.gain  # one value or one per channel: the threshold scale cancels
    assert torch.allclose(product, torch.ones_like(product), rtol=1e-12)


def test_calibration_is_deterministic() -> None:
    ann, loader = _ann(), _images()
    states = []
    for _ in range(2):
        gm = _unfolded(ann)
        calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, "layerwise", images=48)
        states.append(gm.state_dict())
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_layerwise_is_no_worse_than_bias() -> None:
    ann, loader = _ann(), _images()
    errors = {}
    for mode in ("bias", "layerwise"):
        gm = _unfolded(ann)
        errors[mode] = calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, mode,
                                 images=48).layer_error["relu"][1]
    assert errors["layerwise"] <= errors["bias"]


def test_mode_none_changes_nothing() -> None:
    ann, loader = _ann(), _images()
    gm = _unfolded(ann)
    state = {k: v.clone() for k, v in gm.state_dict().items()}
    result = calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, "none")
    assert result.calibrated == 0 and not result.before
    for key, value in gm.state_dict().items():
        assert torch.equal(value, state[key])


def test_sites_pair_neurons_with_ann_activations() -> None:
    ann = _ann()
    sites, skipped = find_sites(_unfolded(ann), ann)
    assert [s.name for s in sites] == ["relu"] and skipped == []
    assert sites[0].synapse is not None and sites[0].reference == "relu"


def test_option_errors_are_one_line() -> None:
    for args in (("sometimes", 10.0, 64), ("bias", 0.0, 64), ("bias", 10.0, 1), ("bias", True, 64)):
        with pytest.raises(SnnConvertError) as info:
            check_calibration(*args)
        assert "\n" not in str(info.value)


def test_calibration_is_on_in_to_snn_for_inexact_codings_only() -> None:
    for name in ("mlif", "rate", "multibit", "spquant"):
        fields = {f.name: f for f in dataclasses.fields(get_coding(name).config)}
        assert fields["calibrate"].default == "none", name  # the API converts as the papers do
        assert coding_options(get_coding(name), {}, [])["calibrate"] == "layerwise", name  # to-snn calibrates
        assert coding_options(get_coding(name), {"calibrate": "none"}, [])["calibrate"] == "none", name
    assert "calibrate" not in {f.name for f in dataclasses.fields(get_coding("sws").config)}  # exact
    assert "calibrate" not in coding_options(get_coding("sws"), {}, [])


def test_a_calibration_that_lowers_held_out_agreement_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy says the calibrated network agrees less with the ANN on held-out images: every
    parameter and buffer goes back (gains that became per-channel included), and to-snn says so."""
    import snnconvert.calibrate as cal

    ann, loader = _ann(), _images()
    gm = _unfolded(ann)
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    readings = iter([{"top1": 0.5, "agreement": 0.9, "images": 48}, {"top1": 0.4, "agreement": 0.8, "images": 48}])
    monkeypatch.setattr(cal, "proxy", lambda *args: next(readings))
    result = calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, "bias", images=48)
    assert result.reverted and result.calibrated == 1
    after = gm.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before), [k for k in before if not torch.equal(after[k],
                                                                                                        before[k])]
    rows = cal.summary_rows({"calibration": result.as_info()})
    assert rows == [("calibration", "bias: undone (the held-out agreement with the ANN fell from 90.0% to 80.0%); "
                                    "the network is the plain conversion")]


def test_a_calibration_that_helps_is_kept() -> None:
    ann, loader = _ann(), _images()
    gm = _unfolded(ann)
    result = calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, "bias", images=48)
    assert not result.reverted and result.after["agreement"] >= result.before["agreement"]
    assert not torch.equal(gm.conv.bias, _unfolded(ann).conv.bias)  # the offset correction stayed


# ------------------------------------------------------------------ closed-form weight fit


def _conv_synapse(groups: int) -> SynapseConv2d:
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 6, 3, padding=1, stride=2, groups=groups).double()
    return SynapseConv2d.from_conv(conv, conv.weight.detach(), conv.bias.detach(), torch.ones(T, dtype=torch.float64))


@pytest.mark.parametrize("groups", [1, 2])
def test_least_squares_recovers_the_weights_that_made_the_targets(groups: int) -> None:
    """Targets made by a known conv (weights W, bias b) from random inputs: with no ridge the
    solution is W and b (a full-rank problem: 4 images x 25 positions = 100 rows >= 19 unknowns
    per group), to float64 round-off."""
    syn = _conv_synapse(groups)
    true = nn.Conv2d(4, 6, 3, padding=1, stride=2, groups=groups).double()
    g = torch.Generator().manual_seed(3)
    inputs = [torch.rand(4, 4, 9, 9, generator=g, dtype=torch.float64) for _ in range(2)]
    with torch.no_grad():
        targets = [true(x) for x in inputs]
    weight, bias = _least_squares(syn, inputs, targets, 0.0, 1.0)
    assert torch.allclose(weight, true.weight.detach(), atol=1e-9)
    assert torch.allclose(bias, true.bias.detach(), atol=1e-9)


def test_least_squares_bias_is_divided_by_the_frame_gain_and_ridge_pulls_to_the_weights() -> None:
    """A linear synapse whose bias enters every frame times 0.5: the solved bias is the fitted
    offset / 0.5. Targets the present weights already make are kept at any ridge; a very large
    ridge keeps the present weights whatever the targets."""
    torch.manual_seed(4)
    lin = nn.Linear(5, 3).double()
    gains = torch.full((2,), 0.5, dtype=torch.float64)
    syn = SynapseLinear.from_linear(lin, lin.weight.detach(), lin.bias.detach(), gains)
    x = [torch.rand(40, 5, dtype=torch.float64)]
    offset = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    weight, bias = _least_squares(syn, x, [x[0] @ lin.weight.detach().T + offset], 0.0, 0.5)
    assert torch.allclose(weight, lin.weight.detach(), atol=1e-9)
    assert torch.allclose(bias, offset / 0.5, atol=1e-9)
    own = [x[0] @ lin.weight.detach().T + 0.5 * lin.bias.detach()]
    for ridge in (1e-3, 10.0):
        w, b = _least_squares(syn, x, own, ridge, 0.5)
        assert torch.allclose(w, lin.weight.detach(), atol=1e-9) and torch.allclose(b, lin.bias.detach(), atol=1e-9)
    w, _ = _least_squares(syn, x, [torch.zeros(40, 3, dtype=torch.float64)], 1e9, 0.5)
    assert torch.allclose(w, lin.weight.detach(), atol=1e-6)


def _unfolded_weights(noise: float) -> tuple[fx.GraphModule, fx.GraphModule, DataLoader]:
    """The rate coding's unfolded graph whose conv weights are off by a fixed random matrix
    (a mixing error that no per-channel threshold scale or bias can undo)."""
    ann, loader = _ann(), _images()
    gm = _unfolded(ann)
    with torch.no_grad():
        gm.conv.bias.add_(OFFSET)  # only the weight error
        gm.conv.weight.add_(noise * torch.randn(gm.conv.weight.shape, generator=torch.Generator().manual_seed(5),
                                                dtype=gm.conv.weight.dtype))
    return gm, ann, loader


def test_layerwise_undoes_a_weight_error_that_bias_calibration_cannot() -> None:
    """The IF layer reads the image itself (its synapse's inputs are exact), so the least-squares
    fit gives back the ANN's pre-activation and the layer's error falls to the IF rounding bound
    (theta/(2T))^2 of the offset test; bias and threshold alone stay far above it."""
    errors = {}
    for mode in ("bias", "layerwise"):
        gm, ann, loader = _unfolded_weights(0.5)
        calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, mode, images=48)
        errors[mode] = _layer_mse(gm, ann, loader)
    assert errors["layerwise"] <= (THETA / (2 * T)) ** 2 + 1e-9, errors
    assert errors["bias"] > 2 * (THETA / (2 * T)) ** 2, errors


def test_layerwise_refits_the_classifier_to_the_ann_logits() -> None:
    """After the last neuron layer the classifier is solved against the ANN's logits: the
    decoded logits' error on the fitted images falls, and the flag is recorded."""
    gm, ann, loader = _unfolded_weights(0.1)
    with torch.no_grad():
        gm.fc.weight.mul_(0.5)  # a classifier the ANN's logits disagree with

    def logit_error(net: fx.GraphModule) -> float:
        x = torch.cat([b[0] for b in loader])[:48]  # the fitted images
        with torch.no_grad():
            out = WeightedSumDecoder(T).double()(net(RepeatEncoder(T)(x.double())))
            return float(((out - ann(x).double()) ** 2).mean())

    before = logit_error(gm)
    result = calibrate(gm, RepeatEncoder(T), WeightedSumDecoder(T), ann, loader, "layerwise", images=48)
    assert result.head and result.as_info()["head"]
    assert result.refitted[-1] == "fc" and set(result.refitted) <= {"conv", "fc"}
    assert logit_error(gm) < 0.1 * before


def test_least_squares_in_image_chunks_and_every_kth_row_keeps_rows_and_targets_aligned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Large layers are unfolded a few images at a time and read every k-th row: with exact
    targets any full-rank subset of aligned rows recovers the weights, so the solution stays the
    one that made the targets (chunks of 1 image, every 2nd row: 4 x 13 = 52 rows >= 37 unknowns)."""
    import snnconvert.calibrate as cal

    syn = _conv_synapse(1)
    true = nn.Conv2d(4, 6, 3, padding=1, stride=2).double()
    g = torch.Generator().manual_seed(6)
    inputs = [torch.rand(4, 4, 9, 9, generator=g, dtype=torch.float64)]
    with torch.no_grad():
        targets = [true(x) for x in inputs]
    monkeypatch.setattr(cal, "UNFOLD_ELEMENTS", 1)
    monkeypatch.setattr(cal, "FIT_ROWS", 50)
    weight, bias = _least_squares(syn, inputs, targets, 0.0, 1.0)
    assert torch.allclose(weight, true.weight.detach(), atol=1e-9)
    assert torch.allclose(bias, true.bias.detach(), atol=1e-9)
