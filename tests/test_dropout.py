"""Dropout kept through conversion (M-LIF paper 000, A.3: SNN dropout 0.2): one mask per sample
for all its time steps, active in training, an identity at inference, saved and exported."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnconvert.data.input_spec import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.finetune import FinetuneConfig
from snnconvert.finetune.model import trainable_copy
from snnconvert.pipeline import load, quantize, save, to_snn
from snnconvert.simulate.dropout import FrameDropout


class _Dropped(nn.Module):
    """conv-BN-ReLU-dropout twice (the paper's "oC3, D"), a residual add, pool, dropout, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1, self.d1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Dropout(0.2)
        self.c2, self.b2, self.d2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Dropout2d(0.1)
        self.pool, self.d3, self.fc = nn.AdaptiveAvgPool2d(1), nn.Dropout(0.5), nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.d1(torch.relu(self.b1(self.c1(x))))
        x = self.d2(torch.relu(self.b2(self.c2(x)) + x))
        return self.fc(self.d3(torch.flatten(self.pool(x), 1)))


@pytest.fixture(scope="module")
def quantized():
    torch.manual_seed(0)
    return quantize(_Dropped().eval(), data="digits", eval_limit=0,
                    input_spec=InputSpec(channels=1, size=(8, 8)), num_classes=10)


def test_one_mask_per_sample_shared_by_its_frames() -> None:
    torch.manual_seed(0)
    drop = FrameDropout(0.25, frames=4).train()
    out = drop(torch.ones(4 * 3, 16, 5, 5)).view(4, 3, -1)  # time-major: frame k is rows 3k..3k+2
    assert torch.equal(out, out[:1].expand_as(out))  # the same neurons dropped at every step
    assert not torch.equal(out[0, 0], out[0, 1])  # samples draw their own masks
    assert out.unique().tolist() == [0.0, pytest.approx(1.0 / 0.75, rel=1e-7)]  # kept: scaled by 1/(1-p), float32
    share = float((out[0] == 0).float().mean())  # 1,200 Bernoulli(0.25) draws: sd 0.0125
    assert abs(share - 0.25) < 0.05
    ch = FrameDropout(0.5, frames=2, channelwise=True).train()(torch.ones(2 * 3, 8, 4, 4)).view(2, 3, 8, -1)
    assert torch.equal(ch, ch[..., :1].expand_as(ch)) and torch.equal(ch, ch[:1].expand_as(ch))  # whole channels
    x = torch.rand(12, 4)
    assert drop.eval()(x) is x and FrameDropout(0.0, frames=4).train()(x) is x
    odd = FrameDropout(0.5, frames=4).train()(torch.ones(6, 200))  # 6 rows: not 4 frames per sample
    assert not torch.equal(odd[0], odd[1])  # each frame draws its own mask
    with pytest.raises(ValueError):
        FrameDropout(1.0)


@pytest.mark.parametrize("coding", ["mlif", "rate", "sws"])
def test_conversion_keeps_dropout_inactive_at_inference(quantized, coding: str, tmp_path) -> None:
    snn = to_snn(quantized, coding=coding)
    drops = [m for m in snn.modules() if isinstance(m, FrameDropout)]
    assert [(m.p, m.channelwise) for m in drops] == [(0.2, False), (0.1, True), (0.5, False)]
    assert all(m.frames == snn.info["frames"] for m in drops)
    path = tmp_path / "d.snnc"
    save(path, quantized, snn)
    _, loaded = load(path)
    images = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(images), snn(images))  # eval: the identity, and it round-trips
    if coding == "sws":  # the scale after d1 folds into c2 through the dropout, which then sums spikes exactly
        assert snn.body.c2.spike_inputs == 1
        assert not [m for m in snn.body.modules() if type(m).__name__ == "Gain" and m.gain.numel() > 1]


def test_finetune_dropout_sets_p_and_is_active_in_training(quantized) -> None:
    snn = to_snn(quantized, coding="mlif", T=2)
    model, _ = trainable_copy(snn, FinetuneConfig(dropout=0.3))
    assert [m.p for m in model.modules() if isinstance(m, FrameDropout)] == [0.3, 0.3, 0.3]
    assert [m.p for m in snn.modules() if isinstance(m, FrameDropout)] == [0.2, 0.1, 0.5]  # input untouched
    images = torch.rand(4, 1, 8, 8)
    torch.manual_seed(1)
    a = model.train()(images)
    b = model(images)
    assert not torch.equal(a, b)  # a new mask each forward in training
    with torch.no_grad():
        assert torch.equal(model.eval()(images), model(images))
    kept, _ = trainable_copy(snn, FinetuneConfig())
    assert [m.p for m in kept.modules() if isinstance(m, FrameDropout)] == [0.2, 0.1, 0.5]


def test_finetune_dropout_on_a_network_without_dropout_is_refused() -> None:
    q = quantize("lenet5", data="digits", eval_limit=0)
    with pytest.raises(SnnConvertError, match="no dropout layer"):
        trainable_copy(to_snn(q, coding="mlif"), FinetuneConfig(dropout=0.2))
    with pytest.raises(SnnConvertError, match="dropout"):
        FinetuneConfig(dropout=1.0).validate()


def test_rate_networks_with_dropout_still_run_in_time_chunks(quantized) -> None:
    from snnconvert.simulate.chunks import chunkable

    snn = to_snn(quantized, coding="rate", T=8)
    images = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert chunkable(snn, images)  # eval: dropout is the identity on every frame
        whole = snn(images)
        snn.time_chunk_bytes = 1  # the smallest chunks: one step at a time
        assert torch.equal(snn(images), whole)
    snn.train()
    with torch.no_grad():
        assert not chunkable(snn, images)  # an active mask spans all steps of a sample
