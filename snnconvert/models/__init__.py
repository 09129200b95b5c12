"""Bundled architectures (CIFAR ResNets, LeNet-5 for digits) and their registry."""

from snnconvert.models.cifar_resnet import (
    CIFAR_RESNET_DEPTHS,
    BasicBlock,
    CifarResNet,
    ShortcutA,
    cifar_resnet,
    count_parameters,
)
from snnconvert.models.lenet import DIGITS_MEAN, DIGITS_STD, LeNet5, lenet5
from snnconvert.models.registry import BUNDLED_MODELS, BundledArch

__all__ = [
    "BUNDLED_MODELS",
    "CIFAR_RESNET_DEPTHS",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "BasicBlock",
    "BundledArch",
    "CifarResNet",
    "LeNet5",
    "ShortcutA",
    "cifar_resnet",
    "count_parameters",
    "lenet5",
]
