"""The one table of bundled architectures: how to build them and what input they expect."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from torch import nn

from snnconvert.data.input_spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from snnconvert.models.cifar_resnet import CIFAR_RESNET_DEPTHS, cifar_resnet
from snnconvert.models.lenet import DIGITS_MEAN, DIGITS_STD, lenet5
from snnconvert.models.mlif_resnet import mlif_resnet20
from snnconvert.models.spikformer import SPIKFORMER_CONFIGS, spikformer

# ImageNet channel statistics: the CIFAR ResNet checkpoints this project targets were trained with them


@dataclass(frozen=True)
class BundledArch:
    """A bundled architecture.

    ``build(num_classes)`` returns a freshly initialized module that expects normalized input;
    ``weights_file`` names a file in ``snnconvert.assets`` (package data; ``None``: no bundled
    weights) and ``train_command`` is how to produce that file; ``default_data`` is the data
    spec (as accepted by ``--data``) the bundled weights were trained on.
    """

    name: str
    build: Callable[[int], nn.Module]
    input_spec: InputSpec
    description: str
    num_classes: int = 10
    weights_file: str | None = None
    train_command: str | None = None
    default_data: str | None = None


_CIFAR_SPEC = InputSpec(3, (32, 32), None, IMAGENET_MEAN, IMAGENET_STD)


def _table() -> dict[str, BundledArch]:
    table = {
        "lenet5": BundledArch(
            name="lenet5",
            build=lenet5,
            input_spec=InputSpec(1, (8, 8), None, DIGITS_MEAN, DIGITS_STD),
            description="LeNet-style CNN for the 8x8 digits (2 conv + 3 FC, max-pooling)",
            weights_file="lenet5-digits.pt",
            train_command="python models/train_digits.py",
            default_data="digits",
        )
    }
    for name, depth in CIFAR_RESNET_DEPTHS.items():
        table[name] = BundledArch(
            name=name,
            build=partial(cifar_resnet, name),
            input_spec=_CIFAR_SPEC,
            description=f"CIFAR-10 ResNet-{depth} (He et al. 2016, option-A shortcuts)",
        )
    table["mlif-resnet20"] = BundledArch(
        name="mlif-resnet20",
        build=mlif_resnet20,
        input_spec=_CIFAR_SPEC,
        description="the M-LIF paper's ResNet20 (000 A.3.1): 64->512 channels, conv shortcuts, dropout "
                    "(ANN p=0; finetune --dropout 0.2), 11.2M parameters",
    )
    for name, spec in SPIKFORMER_CONFIGS.items():
        table[name] = BundledArch(
            name=name,
            build=partial(spikformer, name),
            input_spec=_CIFAR_SPEC,
            description=f"Spikformer-style ViT, {spec.depth} blocks x {spec.dim} (no softmax, BN, 32x32)",
        )
    return table


BUNDLED_MODELS: Mapping[str, BundledArch] = MappingProxyType(_table())
