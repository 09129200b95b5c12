"""Graph preparation: capture, support check, canonical form, BN fusion, normalization folding."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from snnconvert.data import InputSpec
from snnconvert.errors import UnsupportedGraphError
from snnconvert.graph import prepare
from snnconvert.graph.modules import BoundedReLU, PadWithValues
from snnconvert.graph.ops import Kind, kind_of
from snnconvert.models import cifar_resnet

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


def _normalized(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


ARCHS = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "resnet50": lambda: torchvision.models.resnet50(num_classes=10),
    "vgg16": lambda: torchvision.models.vgg16(num_classes=10),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
    "resnet20": lambda: cifar_resnet("resnet20", 10),
    "resnet56": lambda: cifar_resnet("resnet56", 10),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_prepared_model_gives_the_same_logits(name: str) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(ARCHS[name]())
    spec = InputSpec(3, (32, 32), None, MEAN, STD)
    before = copy.deepcopy(model.state_dict())
    prepared = prepare(model, spec)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(_normalized(x))
        got = prepared(x)
    assert (got - expected).abs().max().item() <= 1e-4 * max(1.0, expected.abs().max().item())
    kinds = {kind_of(prepared, n) for n in prepared.graph.nodes}
    assert Kind.NORM not in kinds  # every batch-norm fused
    for key, value in model.state_dict().items():  # the user's model is left as it was
        assert torch.equal(value, before[key])


def test_border_padding_stays_exact_with_folded_normalization() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=2)
    model = nn.Sequential(conv).eval()
    spec = InputSpec(3, (6, 6), None, MEAN, STD)
    prepared = prepare(model, spec)
    pads = [m for m in prepared.modules() if isinstance(m, PadWithValues)]
    assert len(pads) == 1 and pads[0].padding == (2, 2, 2, 2)
    assert torch.allclose(pads[0].values, torch.tensor(MEAN))  # raw pixels padded with the mean
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(_normalized(x)), atol=1e-5)


class FunctionalNet(nn.Module):
    """Every functional spelling the converters must accept."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.relu6 = nn.ReLU6()
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.conv2(a)) + a
        b = F.pad(b[:, :, ::2, ::2], (1, 1, 1, 1))
        c = torch.cat([b, b.clamp(0, 6)], dim=1)
        c = self.relu6(self.conv3(c))
        c = F.avg_pool2d(c, 2).relu()
        c = self.pool(c)
        return self.fc(torch.flatten(c, 1).view(c.size(0), -1))


def test_functional_ops_are_supported() -> None:
    torch.manual_seed(1)
    model = _randomize_bn(FunctionalNet())
    spec = InputSpec(3, (8, 8), None, MEAN, STD)
    prepared = prepare(model, spec)
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(_normalized(x)), atol=1e-5)
    acts = [m for m in prepared.modules() if isinstance(m, (nn.ReLU, BoundedReLU))]
    assert len(acts) == 5  # F.relu, torch.relu, clamp(0, 6), ReLU6, .relu()
    assert sum(isinstance(m, BoundedReLU) and m.upper == 6.0 for m in acts) == 2


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.SiLU()
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        return y * self.gate(y)


def test_unsupported_nodes_are_all_listed_in_one_error() -> None:
    model = Unsupported().eval()
    with pytest.raises(UnsupportedGraphError) as err:
        prepare(model, InputSpec(3, (8, 8), None, None, None))
    message = str(err.value)
    assert "3 unsupported node(s)" in message
    assert "SiLU at module 'act'" in message
    assert "Sigmoid at module 'gate'" in message
    assert "mul" in message and "test_graph.py" in message  # where in the user's code
    assert err.value.problems and len(err.value.problems) == 3


def test_maxpool_before_relu_is_swapped() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU()).eval()
    prepared = prepare(model, InputSpec(1, (8, 8), None, None, None))
    order = [kind_of(prepared, n) for n in prepared.graph.nodes if kind_of(prepared, n) in (Kind.MAXPOOL,
                                                                                             Kind.ACTIVATION)]
    assert order == [Kind.ACTIVATION, Kind.MAXPOOL]
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(prepared(x), model(x))
