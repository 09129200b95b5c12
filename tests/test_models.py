"""Tests of the bundled architectures (snnconvert.models) and the bundled lenet5 weights."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from snnconvert.data.digits import digits_arrays
from snnconvert.ingest import load_model
from snnconvert.models import (
    BUNDLED_MODELS,
    CIFAR_RESNET_DEPTHS,
    BasicBlock,
    LeNet5,
    ShortcutA,
    cifar_resnet,
    count_parameters,
)


def _example(name: str, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(BUNDLED_MODELS[name].input_spec.example_shape(batch), generator=gen)


def test_registry_names() -> None:
    expected = {"lenet5", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "mlif-resnet20",
                "spikformer-4-384", "spikformer-2-128", "spikformer-1-64"}
    assert set(BUNDLED_MODELS) == expected
    for name, arch in BUNDLED_MODELS.items():
        assert arch.name == name
        assert arch.build(7)(_example(name)).shape == (2, 7)


def test_resnet20_parameter_count() -> None:
    # 0.27M parameters as in He et al. 2016, Table 6.
    assert count_parameters(cifar_resnet("resnet20")) == 269_722


def test_mlif_resnet20_is_the_papers_network() -> None:
    from snnconvert.models.mlif_resnet import mlif_resnet20

    model = mlif_resnet20()
    # by hand: stem 3*64*9 + 2*64*64*9 + 3 BNs (384) = 75,840; blocks 64,64: 2 x 73,984;
    # 64->128/2: 73,728 + 147,456 + 8,192 (1x1 shortcut) + 768 = 230,144; 128: 295,424;
    # 128->256/2: 919,040; 256: 1,180,672; 256->512/2: 3,673,088; 512: 4,720,640; fc 5,130
    assert count_parameters(model) == 11_247_946
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs if c.kernel_size == (3, 3)] == [64] * 7 + [128] * 4 + [256] * 4 + [512] * 4
    assert sum(c.kernel_size == (1, 1) for c in convs) == 3  # conv shortcuts where the shape changes
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.0, 0.0]  # 64C3, D, 64C3, D: the ANN's dropout is 0 (A.3.1)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name,depth", sorted(CIFAR_RESNET_DEPTHS.items()))
def test_resnet_depth(name: str, depth: int) -> None:
    model = cifar_resnet(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == depth
    assert all(c.bias is None and c.kernel_size == (3, 3) for c in convs)
    assert {c.out_channels for c in convs} == {16, 32, 64}


def test_resnet_rejects_bad_depth() -> None:
    from snnconvert.models import CifarResNet

    with pytest.raises(ValueError):
        CifarResNet(21)


def test_state_dict_layout_matches_reference_checkpoints() -> None:
    keys = set(cifar_resnet("resnet20").state_dict())
    assert {"conv1.weight", "bn1.running_var", "linear.weight", "linear.bias"} <= keys
    assert "layer3.2.conv2.weight" in keys and "layer2.0.bn1.running_mean" in keys
    assert not any("shortcut" in k for k in keys)  # option A has no parameters


def test_shortcut_a_matches_reference() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = ShortcutA(16, 32, stride=2)(x)
    expected = torch.zeros(2, 32, 4, 4)
    for c in range(16):
        for i in range(4):
            for j in range(4):
                expected[:, c + 8, i, j] = x[:, c, 2 * i, 2 * j]
    assert torch.equal(out, expected)
    assert torch.count_nonzero(out[:, :8]) == 0 and torch.count_nonzero(out[:, 24:]) == 0


def test_downsampling_block_uses_shortcut() -> None:
    block = BasicBlock(16, 32, stride=2).eval()
    same = BasicBlock(16, 16).eval()
    assert isinstance(block.shortcut, ShortcutA) and same.shortcut is None
    x = torch.randn(1, 16, 8, 8)
    assert block(x).shape == (1, 32, 4, 4)
    for m in (block.conv1, block.conv2):
        nn.init.zeros_(m.weight)  # residual branch gives bn bias only; with zero bias: shortcut
    for bn in (block.bn1, block.bn2):
        nn.init.zeros_(bn.bias)
    assert torch.equal(block(x), torch.relu(ShortcutA(16, 32, 2)(x)))


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_fx_trace_matches_eager(name: str) -> None:
    torch.manual_seed(0)
    model = BUNDLED_MODELS[name].build(10).eval()
    traced = torch.fx.symbolic_trace(model)
    x = _example(name)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), atol=1e-6)
    if name.startswith("resnet"):
        # The option-A shortcut is traced through: slicing and F.pad, not an opaque module.
        nodes = list(traced.graph.nodes)
        assert any("pad" in str(n.target) for n in nodes)
        assert not any(n.op == "call_module" and "shortcut" in str(n.target) for n in nodes)


def test_lenet5_structure() -> None:
    model = LeNet5()
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(nn.MaxPool2d) == 2 and kinds.count(nn.ReLU) == 4
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len({id(m) for m in relus}) == 4  # distinct modules, one per activation


def test_lenet5_normalization_matches_training_split() -> None:
    x, _, _ = digits_arrays("train")
    spec = BUNDLED_MODELS["lenet5"].input_spec
    assert spec.channels == 1 and spec.size == (8, 8)
    assert spec.mean is not None and spec.std is not None
    assert abs(spec.mean[0] - float(x.mean())) < 5e-4
    assert abs(spec.std[0] - float(x.std())) < 5e-4


def test_bundled_lenet5_weights_accuracy() -> None:
    loaded = load_model("lenet5")
    x, y, _ = digits_arrays("test")
    spec = loaded.input_spec
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    with torch.no_grad():
        accuracy = (loaded.module((x - mean) / std).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.97
    # Without the normalization the same weights do clearly worse: it is not applied twice.
    with torch.no_grad():
        raw = (loaded.module(x).argmax(1) == y).float().mean().item()
    assert raw < accuracy
