"""Helpers shared by test modules (import with ``from helpers import ...``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import fx, nn

SHARED_DATA = Path(os.environ.get("SNNCONVERT_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch-norm non-trivial statistics (random-weight models are otherwise identity-BN)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            n = m.num_features
            m.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_((torch.rand(n, generator=g) - 0.3) * 0.4)
    return model.eval()


def quantize_random(model: nn.Module, spec, bits: int = 8, images: int = 32, seed: int = 0) -> fx.GraphModule:
    """Prepare and post-training quantize ``model`` on uniform random images."""
    from snnconvert.graph import prepare
    from snnconvert.quantize import QuantizeConfig, quantize_graph

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(images, *spec.example_shape(1)[1:], generator=g)
    calib = [(x[i:i + 16], torch.zeros(len(x[i:i + 16]), dtype=torch.long)) for i in range(0, images, 16)]
    return quantize_graph(prepare(model, spec), calib, QuantizeConfig(bits=bits, method="max"),
                          example_shape=spec.example_shape(2)).model
