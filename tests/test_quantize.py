"""Quantizers, calibration histograms, PTQ/QAT and the per-layer records."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.graph import PrepareConfig, prepare
from snnconvert.quantize import (
    ActQuant,
    QATSchedule,
    QConv2d,
    QConvBn2d,
    QuantizeConfig,
    RangeDoublingHistogram,
    layer_records,
    quantize_graph,
)
from snnconvert.quantize.fake_quant import fake_quantize, fake_quantize_weight, symmetric_weight_scale


def test_integer_tensor_requantizes_to_itself() -> None:
    scale, zero = torch.tensor(0.25), torch.tensor(3.0)
    q = torch.arange(0, 256, dtype=torch.float32)
    x = (q - zero) * scale  # values exactly on the grid
    assert torch.equal(fake_quantize(x, scale, zero, 0, 255), x)


def test_quantization_error_is_at_most_half_a_step_inside_the_range() -> None:
    torch.manual_seed(0)
    scale = torch.tensor(0.037)
    x = torch.rand(10_000) * 255 * 0.037
    err = (fake_quantize(x, scale, torch.tensor(0.0), 0, 255) - x).abs()
    assert float(err.max()) <= 0.037 / 2 + 1e-6


def test_rounding_is_half_up_and_clamped() -> None:
    scale = torch.tensor(1.0)
    x = torch.tensor([-3.0, -0.5, 0.5, 1.5, 2.5, 254.5, 300.0])
    got = fake_quantize(x, scale, torch.tensor(0.0), 0, 255)
    assert got.tolist() == [0.0, 0.0, 1.0, 2.0, 3.0, 255.0, 255.0]  # ties go up, as TSA neurons do


def test_weight_quantization_is_symmetric_per_channel() -> None:
    w = torch.tensor([[0.5, -1.0, 0.25], [0.01, 0.02, -0.04]])
    scale = symmetric_weight_scale(w, 8)
    assert torch.allclose(scale, torch.tensor([1.0 / 127, 0.04 / 127]))
    q = fake_quantize_weight(w, scale, 8)
    assert (q - w).abs().max() <= scale.max() / 2 + 1e-7
    assert torch.equal(fake_quantize_weight(q, scale, 8), q)  # re-quantizes to itself


def test_histogram_percentile_matches_the_exact_quantile_within_one_bin() -> None:
    torch.manual_seed(0)
    hist = RangeDoublingHistogram(1, bins=2048)
    data = [torch.rand(5000).pow(3) * (i + 1) for i in range(4)]  # the range grows: bins double
    for chunk in data:
        hist.update(chunk)
    values = torch.cat(data)
    width = float(hist.top[0]) / 2048
    for p in (50.0, 99.0, 99.9):
        exact = torch.quantile(values.double(), p / 100)
        assert abs(float(hist.clip("percentile", p, 8)[0]) - float(exact)) <= width + 1e-9
    assert float(hist.clip("max", 0, 8)[0]) == pytest.approx(float(values.max()))


def test_mse_clip_ignores_rare_outliers() -> None:
    # 200k half-normal values and 2 outliers at 50, 4 bits: clipping at 50 costs a rounding noise of
    # 200000 * (50/15)^2 / 12 = 185k, while clipping near 3 costs ~2 * 47^2 + 200000 * (3/15)^2 / 12
    # + the clipped tail, about 5k; the optimum lies between 2 and 4.
    torch.manual_seed(0)
    hist = RangeDoublingHistogram(1)
    x = torch.randn(200_000).abs()
    x[:2] = 50.0
    hist.update(x)
    clip = float(hist.clip("mse", 0, 4)[0])
    assert 2.0 < clip < 4.0
    assert float(hist.clip("max", 0, 4)[0]) == pytest.approx(50.0)


def test_per_channel_histograms_are_independent() -> None:
    hist = RangeDoublingHistogram(2, bins=64)
    x = torch.zeros(100, 2, 4, 4)
    x[:, 0] = 1.0
    x[:, 1] = 8.0
    hist.update(x)
    clips = hist.clip("percentile", 50.0, 8)
    assert clips[0] == pytest.approx(1.0, rel=0.05) and clips[1] == pytest.approx(8.0, rel=0.05)


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu(self.bn(self.conv(x))), 1))


SPEC = InputSpec(1, (6, 6), None, (0.5,), (0.25,))


def _data(n: int = 64, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    y = (x.mean(dim=(1, 2, 3)) * 3).long().clamp(max=2)
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


def test_ptq_records_table3_parameters() -> None:
    torch.manual_seed(0)
    model = Small().eval()
    prepared = prepare(model, SPEC)
    result = quantize_graph(prepared, _data(), QuantizeConfig(bits=8), example_shape=(2, 1, 6, 6))
    records = {r.name: r for r in layer_records(result.model)}
    conv, fc = records["conv"], records["fc"]
    input_quant: ActQuant = result.model.get_submodule("input_quant")
    assert conv.inputs[0].name == "input_quant" and conv.inputs[0].scale == pytest.approx(1 / 255)
    assert conv.output is not None and conv.output.zero_point == 0.0
    assert fc.inputs[0].name == conv.output.name and fc.output is None  # the classifier emits logits
    assert conv.weight_bits == 8 and conv.weight_zero_point == 0
    assert float(input_quant.scale) == pytest.approx(1 / 255)
    layer: QConv2d = result.model.get_submodule("conv")
    ints = layer.integer_weight()
    assert ints.abs().max() <= 127
    assert torch.allclose(layer.weight, ints.float() * layer.w_scale.view(-1, 1, 1, 1))  # snapped to the grid
    clipped = {s.name: s for s in result.clip_stats}
    assert 0.0 <= clipped[conv.output.name].clipped_share <= 0.01


def test_quantized_output_is_close_to_float() -> None:
    torch.manual_seed(0)
    prepared = prepare(Small().eval(), SPEC)
    result = quantize_graph(prepared, _data(256), QuantizeConfig(bits=8, clip_method="max"), example_shape=(2, 1, 6, 6))
    x = _data(64, seed=1)[0][0]
    with torch.no_grad():
        ref, got = prepared(x), result.model(x)
    assert (ref - got).abs().max() < 0.05 * ref.abs().max()


def test_qat_schedule_scales_the_paper_schedule() -> None:
    assert (QATSchedule(12).freeze_bn_epoch, QATSchedule(12).freeze_quant_epoch) == (3, 5)
    assert (QATSchedule(24).freeze_bn_epoch, QATSchedule(24).freeze_quant_epoch) == (6, 10)
    assert QATSchedule(4).freeze_bn_epoch == 1 and QATSchedule(4).freeze_quant_epoch == 2


def test_qconvbn_in_eval_equals_the_fused_conv() -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    q = QConvBn2d.from_conv_bn(conv, bn, 8).eval()
    q.quantize_weights = False
    x = torch.randn(4, 2, 5, 5)
    with torch.no_grad():
        assert torch.allclose(q(x), bn.eval()(conv(x)), atol=1e-5)
        fused = q.to_qconv()
        fused.quantize_weights = False
        assert torch.allclose(fused(x), q(x), atol=1e-5)


def test_qat_runs_the_schedule_and_freezes() -> None:
    torch.manual_seed(0)
    unfused = prepare(Small().eval(), SPEC, PrepareConfig(fuse_batchnorm=False))
    config = QuantizeConfig(bits=4, qat_epochs=4, qat_lr=1e-3)
    result = quantize_graph(unfused, _data(), config, example_shape=(2, 1, 6, 6), train_loader=_data())
    history = result.qat_history
    assert [h["bn_frozen"] for h in history] == [0.0, 1.0, 1.0, 1.0]
    assert [h["quant_frozen"] for h in history] == [0.0, 0.0, 1.0, 1.0]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert not any(isinstance(m, QConvBn2d) for m in result.model.modules())  # folded after QAT
    assert all(not q.scale.requires_grad for q in result.model.modules() if isinstance(q, ActQuant))


@pytest.mark.parametrize("bad", [dict(bits=0), dict(bits=1), dict(clip_method="kl"), dict(percentile=0.0),
                                 dict(qat_epochs=-1), dict(weight_bits=40)])
def test_impossible_options_are_one_line_errors(bad: dict) -> None:
    with pytest.raises(SnnConvertError) as err:
        QuantizeConfig(**bad).validate()
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"{next(iter(bad))} ")  # names the field


class _CountingLoader:
    """A loader of ``batches`` that counts the batches read."""

    def __init__(self, batches: list) -> None:
        self.batches, self.read = batches, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.read += 1
            yield batch


def test_qat_reads_only_the_batches_it_trains_on() -> None:
    torch.manual_seed(0)
    prepared = prepare(Small().eval(), SPEC)
    loader = _CountingLoader(_data(n=160))  # 10 batches
    config = QuantizeConfig(bits=4, qat_epochs=2, qat_batches_per_epoch=3, qat_lr=1e-3)
    quantize_graph(prepared, _data(), config, example_shape=(2, 1, 6, 6), train_loader=loader)
    assert loader.read == 2 * 3  # 3 per epoch; the other 7 are never decoded
