"""The peer benchmark's building blocks (bench/sj_models.py): exact rewrites for SpikingJelly, its
conversion coverage, and the causality the benchmark relies on to read every T from one run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from snnconvert.codings.common import activation_percentiles
from snnconvert.data import InputSpec
from snnconvert.graph import prepare
from snnconvert.methods.rate import coding as rate
from snnconvert.models.cifar_resnet import ShortcutA, cifar_resnet

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture()
def sj_models(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import sj_models

    return sj_models


def _randomize_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def test_zero_pad_shortcut_conv_is_exact(sj_models) -> None:
    shortcut = ShortcutA(16, 32, 2)
    x = torch.randn(3, 16, 9, 9)
    conv = sj_models.zero_pad_shortcut_conv(shortcut, 16)
    assert torch.equal(conv(x), shortcut(x))


def test_rewrite_resnet20_identical_logits_and_no_functional_ops(sj_models) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(cifar_resnet("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    gm = sj_models.rewrite_for_spikingjelly(model, x[:2])
    with torch.no_grad():
        assert torch.equal(gm(x), model(x))
    calls = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    assert torch.nn.functional.pad not in calls
    assert not any(isinstance(m, ShortcutA) for m in gm.modules())
    assert any(isinstance(m, ShortcutA) for m in model.modules())  # the original is untouched


def test_rewrite_torchvision_resnet18_gives_one_relu_per_call(sj_models) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = _randomize_bn(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    gm = sj_models.rewrite_for_spikingjelly(model, x)
    with torch.no_grad():
        assert torch.allclose(gm(x), model(x), atol=1e-5)
    relu_calls = [n.target for n in gm.graph.nodes
                  if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.ReLU)]
    assert len(relu_calls) == len(set(relu_calls)) == 17
    assert torch.flatten not in {n.target for n in gm.graph.nodes if n.op == "call_function"}


def test_spikingjelly_coverage_as_ingested_vs_rewritten(sj_models) -> None:
    pytest.importorskip("spikingjelly")
    torch.manual_seed(0)
    model = _randomize_bn(cifar_resnet("resnet20"))
    calib = [(torch.randn(4, 3, 32, 32), None) for _ in range(2)]
    as_is = sj_models.sj_convert(model, calib, "max", name="resnet20", variant="as ingested")
    assert not as_is.ok and "pad" in as_is.error
    rewritten = sj_models.rewrite_for_spikingjelly(model, calib[0][0][:2])
    conv = sj_models.sj_convert(rewritten, calib, "max", name="resnet20", variant="rewritten")
    assert conv.ok, conv.error
    x = calib[0][0]
    multi = sj_models.sj_outputs(conv.snn, x, 12, 4, multi_step=True)
    single = sj_models.sj_outputs(conv.snn, x, 12, 4, multi_step=False)
    assert multi.shape == (12, 4, 10)
    assert torch.allclose(multi, single, atol=1e-4)
    # causal: the first 5 steps of a 12-step run are a 5-step run
    short = sj_models.sj_outputs(conv.snn, x, 5, 4, multi_step=True)
    assert torch.allclose(sj_models.prefix_means(multi)[4], short.mean(0), atol=1e-4)


def test_snnconvert_rate_prefix_equals_shorter_run(sj_models) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(cifar_resnet("resnet20"))
    spec = InputSpec(channels=3, size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    gm = prepare(model, spec)
    loader = [(torch.rand(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))]
    stats = activation_percentiles(gm, loader, (99.9,))
    x = torch.rand(3, 3, 32, 32)
    runs = {}
    for T in (6, 16):
        cfg = rate.Config(T=T, percentile=99.9)
        runs[T] = rate.build(gm, rate.thresholds_from(gm, stats, cfg), cfg)
    long = sj_models.snnc_outputs(runs[16], x, 3)
    assert long.shape == (16, 3, 10)
    with torch.no_grad():
        assert torch.allclose(sj_models.prefix_means(long)[5], runs[6](x), atol=1e-5)
        assert torch.allclose(sj_models.prefix_means(long)[15], runs[16](x), atol=1e-5)
