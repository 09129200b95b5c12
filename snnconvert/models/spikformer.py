"""Spikformer-style vision transformers (Zhou et al. 2022; the DTSS paper's §II.B and fig 1).

``spikformer-N-D``: N encoder blocks of embedding width D on 32x32 images. As an ANN every
spiking layer is a ReLU module (one per layer, so each becomes its own neuron layer when
converted) and the network trains fast; converted (rate / M-LIF coding) it is the spiking
transformer, which ``finetune`` trains further with BPTT:

* spiking patch splitting (SPS): four 3x3 convolutions (D/8, D/4, D/2, D channels) with BN and
  an activation, max-pooling after the second and third (32 -> 8: 64 tokens), and a relative
  position embedding (activation -> 3x3 conv -> BN) added to the token map;
* spiking self-attention (SSA): activation on the block input, then Q, K, V from 1x1
  convolutions without bias + BN + activation, ``(Q K^T) V * scale`` with a fixed scale and no
  softmax (:class:`~snnconvert.graph.attention.SpikingAttention`), an activation, and a 1x1
  projection + BN;
* MLP: activation -> 1x1 conv + BN -> activation -> 1x1 conv + BN;
* BN after each linear/conv layer instead of LayerNorm, 1x1 convolutions without bias in place
  of linear layers, residual adds around SSA and MLP;
* head: activation -> global average over tokens -> linear classifier.

Module names follow the DTSS layer groups: ``sps.*`` (sps), ``*.ssa.in_act`` and
``*.ssa.{q,k,v}_act`` (qkv), ``*.ssa.attn_act`` (attn), ``*.mlp.*`` (mlp).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from snnconvert.errors import SnnConvertError
from snnconvert.graph.attention import SpikingAttention


@dataclass(frozen=True)
class SpikformerSpec:
    depth: int
    dim: int
    heads: int
    mlp_ratio: int = 4
    scale: float = 0.125


SPIKFORMER_CONFIGS = {
    "spikformer-4-384": SpikformerSpec(4, 384, 12),
    "spikformer-2-128": SpikformerSpec(2, 128, 4),
    "spikformer-1-64": SpikformerSpec(1, 64, 2),
}
"""The registered sizes: the paper's CIFAR model and CPU-sized ones (32x32 input)."""


def _conv_bn(cin: int, cout: int, k: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout)


class SPS(nn.Module):
    """Spiking patch splitting: 32x32 image -> D x 8 x 8 token map."""

    def __init__(self, dim: int, in_channels: int = 3) -> None:
        super().__init__()
        widths = [in_channels, dim // 8, dim // 4, dim // 2, dim]
        for i in range(4):
            conv, bn = _conv_bn(widths[i], widths[i + 1], 3)
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", bn)
            if i < 3:
                self.add_module(f"act{i}", nn.ReLU())
        self.pool1, self.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)
        self.rpe_act = nn.ReLU()
        self.rpe_conv, self.rpe_bn = _conv_bn(dim, dim, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act0(self.bn0(self.conv0(x)))
        x = self.pool1(self.act1(self.bn1(self.conv1(x))))
        x = self.pool2(self.act2(self.bn2(self.conv2(x))))
        x = self.bn3(self.conv3(x))
        return x + self.rpe_bn(self.rpe_conv(self.rpe_act(x)))


class SSA(nn.Module):
    """Spiking self-attention without softmax (see the module docstring)."""

    def __init__(self, dim: int, heads: int, scale: float) -> None:
        super().__init__()
        self.in_act = nn.ReLU()
        for name in ("q", "k", "v"):
            conv, bn = _conv_bn(dim, dim, 1)
            self.add_module(f"{name}_conv", conv)
            self.add_module(f"{name}_bn", bn)
            self.add_module(f"{name}_act", nn.ReLU())
        self.attn = SpikingAttention(heads, scale)
        self.attn_act = nn.ReLU()
        self.proj_conv, self.proj_bn = _conv_bn(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.in_act(x)
        q = self.q_act(self.q_bn(self.q_conv(s)))
        k = self.k_act(self.k_bn(self.k_conv(s)))
        v = self.v_act(self.v_bn(self.v_conv(s)))
        return self.proj_bn(self.proj_conv(self.attn_act(self.attn(q, k, v))))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.in_act = nn.ReLU()
        self.fc1_conv, self.fc1_bn = _conv_bn(dim, hidden, 1)
        self.fc1_act = nn.ReLU()
        self.fc2_conv, self.fc2_bn = _conv_bn(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1_act(self.fc1_bn(self.fc1_conv(self.in_act(x))))
        return self.fc2_bn(self.fc2_conv(x))


class Block(nn.Module):
    def __init__(self, spec: SpikformerSpec) -> None:
        super().__init__()
        self.ssa = SSA(spec.dim, spec.heads, spec.scale)
        self.mlp = MLP(spec.dim, spec.dim * spec.mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ssa(x)
        return x + self.mlp(x)


class Spikformer(nn.Module):
    """SPS -> N blocks -> activation -> token average -> linear head."""

    def __init__(self, spec: SpikformerSpec, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if spec.dim % 8 or spec.dim % spec.heads:
            raise SnnConvertError(f"spikformer: dim {spec.dim} must be a multiple of 8 and of heads {spec.heads}")
        self.sps = SPS(spec.dim, in_channels)
        self.blocks = nn.Sequential(*(Block(spec) for _ in range(spec.depth)))
        self.head_act = nn.ReLU()
        self.head = nn.Linear(spec.dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head_act(self.blocks(self.sps(x)))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def spikformer(name: str, num_classes: int = 10) -> Spikformer:
    """A registered Spikformer by name (``spikformer-4-384``, ``spikformer-2-128``, ...)."""
    if name not in SPIKFORMER_CONFIGS:
        raise SnnConvertError(f"unknown spikformer {name!r}: choose one of {', '.join(SPIKFORMER_CONFIGS)}")
    return Spikformer(SPIKFORMER_CONFIGS[name], num_classes)


def layer_group(name: str) -> str:
    """The DTSS layer group of a neuron layer of a Spikformer (by module path): ``sps``,
    ``qkv``, ``attn``, ``mlp``, else ``other`` (the head activation, any CNN layer)."""
    if name.startswith("sps.") or ".sps." in name:
        return "sps"
    leaf = name.rsplit(".", 1)[-1]
    if ".ssa." in f".{name}":
        return "attn" if leaf.startswith("attn") or leaf.startswith("proj") else "qkv"
    if ".mlp." in f".{name}":
        return "mlp"
    return "other"
