"""SWS max-pooling of concatenated spike trains (issue 26: GoogLeNet, Inception v3, SqueezeNet).

A max-pool over a channel concatenation of quantized ReLU outputs pools each channel's train on
its own, and every train's scale is positive, so the scales move behind the pool as one
per-channel gain and an SWS max-pool neuron takes the concatenated trains. At Ts = Tc the SNN is
the quantized ANN: each network below equals the exact integer reference to float64 rounding."""

from __future__ import annotations

import pytest
import torch
import torchvision
from helpers import randomize_batchnorm, sws_against_exact
from torch import nn

from snnconvert.data import InputSpec
from snnconvert.errors import SnnConvertError

SPEC = InputSpec(3, (8, 8), None, None, None)


class Fire(nn.Module):
    """Two ReLU branches of different scales, concatenated, max-pooled (3x3, stride 1, padding 1,
    ceil mode: GoogLeNet's branch pool), then max-pooled again and classified."""

    def __init__(self, relu_first: bool = True) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.fc = nn.Linear(10 * 4 * 4, 10)
        self.relu_first = relu_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = torch.relu(self.b(x)) if self.relu_first else self.b(x)
        x = self.pool(torch.cat([torch.relu(self.a(x)), b], 1))
        return self.fc(nn.functional.max_pool2d(x, 2).flatten(1))


def test_a_pool_of_concatenated_trains_simulates_exactly() -> None:
    torch.manual_seed(0)
    model = Fire().eval()
    with torch.no_grad():
        model.b.weight.mul_(5.0)  # the two branches' quantization scales differ
    assert sws_against_exact(model, SPEC) <= 1e-9


def test_a_pool_of_a_concatenation_with_a_current_is_refused() -> None:
    with pytest.raises(SnnConvertError, match="SWS max-pooling must take a quantized ReLU output"):
        sws_against_exact(Fire(relu_first=False).eval(), SPEC)


@pytest.mark.parametrize("name,size", [("squeezenet1_1", 32), ("googlenet", 32), ("inception_v3", 75)])
def test_inception_and_fire_networks_convert_and_simulate_exactly(name: str, size: int) -> None:
    """torchvision's networks with random weights (measured: 0, 4.7e-16, 1.1e-15 of the logit scale)."""
    torch.manual_seed(0)
    options = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = randomize_batchnorm(getattr(torchvision.models, name)(num_classes=10, **options)).eval()
    assert sws_against_exact(model, InputSpec(3, (size, size), None, None, None), images=2) <= 1e-9
