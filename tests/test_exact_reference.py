"""The quantized ANN in exact arithmetic (snnconvert.quantize.exact), the reference of agreement."""

from __future__ import annotations

import torch
from helpers import quantize_random
from torch import nn

from snnconvert.data import InputSpec
from snnconvert.pipeline import quantize
from snnconvert.quantize import QuantizeConfig
from snnconvert.quantize.exact import ExactWeightLayer, exact_layers, exact_logits, exact_reference
from snnconvert.quantize.modules import QConv2d, QLinear


def _linear(seed: int = 0) -> QLinear:
    torch.manual_seed(seed)
    layer = QLinear(300, 4, w_bits=8)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    layer.refresh_weight_scale()
    return layer


def test_a_linear_layer_sums_exactly_then_rounds_twice() -> None:
    """x = C_a * n with integers n < 256: sum(C_a n q) is exact in float64, then one rounding for
    * C_w and one for + b, computed here with Python's integers and floats."""
    layer = _linear()
    c_a = float(torch.tensor(0.0123, dtype=torch.float32))  # a float32 activation scale
    n = torch.randint(0, 256, (2, 300), generator=torch.Generator().manual_seed(1))
    q = layer.integer_weight()
    out = ExactWeightLayer(layer)(torch.tensor(c_a, dtype=torch.float64) * n.double())
    for i in range(2):
        for o in range(4):
            exact_sum = c_a * sum(int(a) * int(w) for a, w in zip(n[i], q[o], strict=True))  # an exact integer * c_a
            expected = exact_sum * float(layer.w_scale[o]) + float(layer.bias.detach()[o])
            assert float(out[i, o]) == expected


def test_the_exact_sum_does_not_depend_on_the_order_or_the_batch() -> None:
    """Reversing the input channels (another summation order) and running one image alone give the
    same float64 bits; the float32 layer is not asked to."""
    torch.manual_seed(2)
    conv = QConv2d(64, 8, 3, padding=1, w_bits=8)
    conv.refresh_weight_scale()
    exact = ExactWeightLayer(conv)
    c_a = float(torch.tensor(0.0173, dtype=torch.float32))  # activation scales are float32 (24-bit significands)
    x = torch.randint(0, 256, (16, 64, 6, 6)).double() * c_a
    reversed_layer = ExactWeightLayer(conv)
    reversed_layer.integer = exact.integer.flip(1)
    out = exact(x)
    assert torch.equal(out, reversed_layer(x.flip(1)))
    assert torch.equal(out[3:4], exact(x[3:4]))


def test_the_reference_of_a_quantized_cnn_matches_its_float64_run() -> None:
    """W_q = C_w q rounded to float32 (the fake-quantized weight) differs from the exact product by
    at most 2^-24 relative, so the logits agree to ~1e-6 and every image's class is the same."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 8, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, 10))
    q = quantize(model, data="digits", input_spec=InputSpec(1, (8, 8), None, None, None),
                 config=QuantizeConfig(calib_limit=64), eval_limit=0)
    from snnconvert.data.digits import digits_arrays

    images = digits_arrays("test")[0][:64]
    reference = exact_logits(q.model, images)
    float64 = _float64(q.model, images)
    assert exact_layers(exact_reference(q.model)) == 3
    scale = float(reference.abs().max())
    assert float((reference - float64).abs().max()) <= 1e-5 * scale
    assert torch.equal(reference.argmax(1), float64.argmax(1))
    assert next(q.model.parameters()).dtype == torch.float32  # the user's model is left as it was


def _float64(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    import copy

    with torch.no_grad():
        return copy.deepcopy(model).double()(images.double())


def test_the_border_pad_of_a_folded_normalization_sits_on_the_grid_in_float64() -> None:
    """The quantizer snaps the pad values (the input mean) to the input grid C_in * (Q - Z); stored
    in float32 they are that product rounded to 24 bits. The reference recomputes them in float64:
    by hand, the pad equals C_in * (Q - Z) with Q from the float32-stored value."""
    from snnconvert.graph.modules import PadWithValues

    spec = InputSpec(3, (8, 8), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3)).eval()
    q = quantize_random(model, spec)
    stored = next(m for m in q.modules() if isinstance(m, PadWithValues))
    pad = next(m for m in exact_reference(q).modules() if isinstance(m, PadWithValues))
    quant = q.get_submodule("input_quant")
    scale, zero = quant.scale.detach().double().view(-1), quant.zero_point.double().view(-1)
    integers = torch.round(stored.values.double() / scale) + zero
    assert pad.values.dtype == torch.float64
    assert torch.equal(pad.values, scale * (integers - zero))
    assert torch.allclose(pad.values, stored.values.double(), rtol=1e-7, atol=0)  # the float32 value, rounded
