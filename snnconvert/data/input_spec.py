"""What a model expects as input: image geometry and the normalization folded into it."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)
"""The ImageNet channel statistics torchvision's models (and the CIFAR ResNet checkpoint) normalize with."""


@dataclass(frozen=True)
class InputSpec:
    """Input geometry and preprocessing of an image classifier.

    Data loaders produce raw pixels in [0, 1] of shape (channels, *size); the normalization
    ``(x - mean) / std`` is part of the model (it is folded into the first layer by the graph
    passes), never applied by the loader.
    """

    channels: int = 3
    size: tuple[int, int] = (224, 224)
    resize: int | None = None  # shorter side resized to this before the center crop
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def example_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self.channels, *self.size)
