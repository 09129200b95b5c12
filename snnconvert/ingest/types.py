"""The result of ingesting a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from snnconvert.data.input_spec import InputSpec


@dataclass
class LoadedModel:
    """A float classifier with what the pipeline needs to know about it.

    ``module`` is in eval mode and owns its weights; ``source`` says where it came from
    (e.g. ``"bundled:lenet5"``, ``"torchvision:resnet18/IMAGENET1K_V1"``, ``"file:ckpt.pt"``).
    """

    module: nn.Module
    name: str
    source: str
    input_spec: InputSpec
    num_classes: int
    default_data: str | None = None  # data spec the model was trained for, e.g. "digits"
    notes: list[str] = field(default_factory=list)
