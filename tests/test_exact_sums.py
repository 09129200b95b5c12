"""Synapses that sum spikes exactly in float32 (integer weights), and SWS exact in evaluate's
default precision (issue 27, item 1)."""

from __future__ import annotations

import pytest
import torch
from helpers import quantize_random, randomize_batchnorm
from torch import fx

from snnconvert.codings.common import mark_spike_inputs
from snnconvert.configs.evaluate import EvaluateConfig
from snnconvert.data import InputSpec
from snnconvert.evaluate import in_dtype, snn_dtype
from snnconvert.methods.sws.coding import convert_sws
from snnconvert.methods.sws.config import SWSConfig
from snnconvert.models import cifar_resnet
from snnconvert.quantize.exact import exact_logits
from snnconvert.simulate.synapse import SynapseConv2d, SynapseLinear, integer_form

SMALL = InputSpec(3, (16, 16), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _integer_rows(rows: int, cols: int, seed: int, top: int = 127) -> torch.Tensor:
    """Random integers in [-top, top], every row reaching +-top (as a max-abs quantizer gives)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-top, top + 1, (rows, cols), generator=g).double()
    q[:, 0] = top * torch.where(torch.rand(rows, generator=g) < 0.5, -1.0, 1.0)
    return q


def test_integer_form_recovers_the_integers_and_scales_of_a_quantized_weight() -> None:
    q = _integer_rows(6, 40, seed=0)
    c = torch.rand(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1e-2 + 1e-4
    form = integer_form(q * c[:, None])
    assert form is not None
    got_q, got_c = form
    assert got_q.dtype == torch.float32 and torch.equal(got_q.double(), q)
    assert torch.allclose(got_c, c, rtol=1e-15, atol=0)


def test_integer_form_with_one_scale_per_tensor_and_the_refusals() -> None:
    q = _integer_rows(4, 30, seed=2, top=100)
    q[0, 0] = 127.0  # only row 0 reaches the top: one scale for the tensor, found from the global max
    form = integer_form(q * 0.0123)
    assert form is not None and torch.equal(form[0].double(), q)
    assert integer_form((q * 0.0123).float()) is None  # float32 weights: the integers are rounded away
    noisy = q * 0.0123
    noisy[1, 3] += 1e-6  # not an integer multiple of any candidate scale
    assert integer_form(noisy) is None


def _synapse(spike_inputs: int, seed: int = 0) -> SynapseConv2d:
    """A 3x3 conv of 64 channels (K = 576 terms) with weights ``q * c`` and a bias spread over 4 steps."""
    g = torch.Generator().manual_seed(seed)
    syn = SynapseConv2d(64, 8, 3, padding=1, steps=4, spike_inputs=spike_inputs).double()
    q = _integer_rows(8, 64 * 9, seed).view(8, 64, 3, 3)
    c = torch.rand(8, dtype=torch.float64, generator=g) * 1e-3 + 1e-5
    with torch.no_grad():
        syn.weight.copy_(q * c.view(-1, 1, 1, 1))
        syn.bias.copy_(torch.randn(8, dtype=torch.float64, generator=g))
        syn.frame_bias_gain.fill_(1.0 / 15.0)
    syn.q, syn.c = q, c
    return syn


def _spikes(batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (4 * batch, 64, 6, 6), generator=g).double()


def test_a_spike_input_synapse_sums_exactly() -> None:
    """Expected by hand: the integer sums conv(x, q) are exact in float64 (|sum| <= 576 * 127), then
    one float64 multiply-add per output with the layer's scale (the weights' max / 127, within
    1e-15 of c) and the bias times its step gain, as the synapse does it."""
    syn = _synapse(spike_inputs=1)
    x = _spikes(3, seed=5)
    scale = integer_form(syn.weight.detach())[1]
    assert torch.allclose(scale, syn.c, rtol=1e-15, atol=0)
    with torch.no_grad():
        got = syn(x)
        sums = torch.nn.functional.conv2d(x, syn.q, padding=1)
        assert float(sums.abs().max()) <= 576 * 127
        shape = (1, -1, 1, 1)
        expected = torch.addcmul((syn.bias * syn.frame_bias_gain[0]).view(shape), sums, scale.view(shape))
    assert got.dtype == torch.float64 and torch.equal(got, expected)


def test_exact_sums_do_not_depend_on_the_batch() -> None:
    syn = _synapse(spike_inputs=1)
    x = _spikes(4, seed=6)
    with torch.no_grad():
        together = syn(x).view(4, 4, 8, 6, 6)
        alone = torch.stack([syn(x.view(4, 4, 64, 6, 6)[:, i].reshape(4, 64, 6, 6)).view(4, 8, 6, 6)
                             for i in range(4)], dim=1)
    assert torch.equal(together, alone)


def test_without_spike_inputs_or_with_gradients_the_float_weights_are_used() -> None:
    """The float64 path gives the same values to float64 rounding (a few 1e-16 of the sum's terms)."""
    exact, plain = _synapse(spike_inputs=1), _synapse(spike_inputs=0)
    x = _spikes(2, seed=7)
    with torch.no_grad():
        a, b = exact(x), plain(x)
    bound = 1e-13 * float((plain.weight.detach().abs().sum((1, 2, 3))).max())
    assert float((a - b).abs().max()) <= bound
    y = exact(x.requires_grad_())
    y.sum().backward()
    assert x.grad is not None and exact.weight.grad is not None  # the differentiable float path ran


def test_the_cached_integer_form_follows_weight_updates() -> None:
    syn = _synapse(spike_inputs=1)
    x = _spikes(1, seed=8)
    with torch.no_grad():
        syn(x)
        syn.weight.mul_(2.0)  # an optimizer step / a load: q * 2c, still a product
        got = syn(x)
        expected = torch.nn.functional.conv2d(x, syn.weight, padding=1) + (syn.bias / 15.0).view(1, -1, 1, 1)
    assert float((got - expected).abs().max()) <= 1e-12 * float(expected.abs().max())


def test_a_sum_that_could_round_in_float32_keeps_the_float_path() -> None:
    """K * max|q| * n must stay below 2^24: with inputs in steps of 1/2^15 it does not (576 * 127 * 2^15)."""
    syn = _synapse(spike_inputs=2 ** 15)
    x = _spikes(1, seed=9)
    with torch.no_grad():
        got = syn(x)
        expected = torch.nn.functional.conv2d(x, syn.weight, syn.bias / 15.0, padding=1)
    assert syn.__dict__["_integer_form"][1] is None
    assert float((got - expected).abs().max()) <= 1e-12 * float(expected.abs().max())


def _resnet_sws(Ts: int) -> tuple[fx.GraphModule, object]:
    torch.manual_seed(0)
    q = quantize_random(randomize_batchnorm(cifar_resnet("resnet20", 10)), SMALL)
    return q, convert_sws(q, SWSConfig(Tc=8, Ts=Ts))


def test_sws_marks_every_synapse_fed_by_spikes() -> None:
    q, snn = _resnet_sws(Ts=2)
    marks = {name: m.spike_inputs for name, m in snn.body.named_modules() if isinstance(m, (SynapseConv2d,
                                                                                            SynapseLinear))}
    convs = [n for n in marks if n != "linear"]
    assert len(convs) == 19 and all(marks[n] == 1 for n in convs)  # after the encoder or a TSA layer
    assert marks["linear"] == 0  # after a global average pool of a size only known at run time
    assert mark_spike_inputs(snn.body, encoder_spikes=False) == 18  # the stem conv reads the encoder


def test_sws_in_evaluates_default_precision_equals_the_exact_reference() -> None:
    """Ts = Tc: every layer emits the quantized ANN's integer, so the logits are the exact
    reference's up to float64 rounding (1e-9 of the logit scale; float32 membranes and weights
    miss by about 1e-6)."""
    q, snn = _resnet_sws(Ts=8)
    config = EvaluateConfig()
    assert config.dtype == "float32" and snn_dtype(snn, config) == torch.float64
    simulated = in_dtype(snn, snn_dtype(snn, config))
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = simulated(x.double())
    expected = exact_logits(q, x)
    assert float((got - expected).abs().max()) <= 1e-9 * float(expected.abs().max())


@pytest.mark.parametrize("spikes", [1, 4])
def test_average_pooled_spikes_are_marked_with_their_grain(spikes: int) -> None:
    """A 2x2 average of spikes is a multiple of 1/4: the synapse after it is marked 4."""
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = torch.nn.AvgPool2d(2) if spikes == 4 else torch.nn.Identity()
            self.conv = SynapseConv2d(2, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.pool(x))

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, name: str) -> bool:
            return isinstance(m, SynapseConv2d) or super().is_leaf_module(m, name)

    net = Net()
    gm = fx.GraphModule(net, Tracer().trace(net))
    assert mark_spike_inputs(gm, encoder_spikes=True) == 1
    assert gm.get_submodule("conv").spike_inputs == spikes
    assert mark_spike_inputs(gm, encoder_spikes=False) == 0


def test_the_timing_line_names_both_precisions_when_the_snn_keeps_its_own() -> None:
    from rich.console import Console

    from snnconvert.cli.render import _timing
    from snnconvert.evaluate import EvaluationReport, TimingReport

    report = EvaluationReport(model="m", source="s", coding="sws", snn_info={}, reports=("accuracy",), accuracy=None)
    for snn_precision, expected in (("float64", "ANNs float32, SNN float64, cpu, 2 threads"),
                                    ("float32", "img/s, float32, cpu, 2 threads")):
        report.timing = TimingReport(10, 0.1, 0.2, 1.0, 5.0, 10.0, 100.0, "float32", 2, "cpu", snn_precision)
        console = Console(record=True, width=200)
        _timing(console, report)
        assert expected in console.export_text()


def test_snn_dtype_picks_the_simulation_a_user_asks_for() -> None:
    """auto: the coding's own (SWS float64); float32 forces the fast simulation, where the float32
    weights carry no integer form, so no synapse takes the exact path."""
    from snnconvert.errors import SnnConvertError
    from snnconvert.simulate.synapse import _exact_weights

    q, snn = _resnet_sws(Ts=2)
    assert snn_dtype(snn, EvaluateConfig(dtype="float64", snn_dtype="auto")) == torch.float64
    assert snn_dtype(snn, EvaluateConfig(snn_dtype="float32")) == torch.float32
    fast = in_dtype(snn, torch.float32)
    stem = fast.body.get_submodule("conv1")
    assert stem.spike_inputs == 1 and _exact_weights(stem, torch.zeros(8, 3, 16, 16)) is None
    with torch.no_grad():
        assert fast(torch.rand(2, 3, 16, 16)).dtype == torch.float32
    with pytest.raises(SnnConvertError, match="snn_dtype"):
        EvaluateConfig(snn_dtype="float16").validate()


@pytest.mark.parametrize("grain", [-1, 3])
def test_a_grain_that_is_not_a_positive_power_of_two_keeps_the_float_path(grain: int) -> None:
    """A crafted artifact's ``spike_inputs`` cannot switch on the exact path for inputs it does not describe."""
    syn = _synapse(spike_inputs=grain)
    x = _spikes(1, seed=10)
    with torch.no_grad():
        got = syn(x)
        expected = torch.nn.functional.conv2d(x, syn.weight, syn.bias / 15.0, padding=1)
    assert "_integer_form" not in syn.__dict__
    assert float((got - expected).abs().max()) <= 1e-12 * float(expected.abs().max())
