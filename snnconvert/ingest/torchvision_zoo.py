"""torchvision classification models, with weights taken from the local torch hub cache only."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from snnconvert.data.input_spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.ingest.checkpoint import load_state_dict_file
from snnconvert.options import opt

RANDOM_SPEC = InputSpec(3, (224, 224), 256, IMAGENET_MEAN, IMAGENET_STD)

# Auxiliary training heads (loaded with pretrained weights, then dropped).
AUX_HEAD_PREFIXES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "googlenet": ("aux1.", "aux2."),
        "inception_v3": ("AuxLogits.",),
    }
)
# Old DenseNet checkpoints name layers "norm.1" etc.; torchvision renames them on load.
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def torchvision_names() -> list[str]:
    """Names of torchvision's image classification models."""
    return list(torchvision.models.list_models(module=torchvision.models))


def weights_enum(name: str) -> type[WeightsEnum] | None:
    """The weights enum of a torchvision model, or ``None`` if it has none."""
    try:
        return torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return None


def weight_names(name: str) -> list[str]:
    """``DEFAULT`` plus every weights name of a torchvision model."""
    enum = weights_enum(name)
    return ["DEFAULT", *(member.name for member in enum)] if enum is not None else []


def resolve_weights(name: str, weights: str) -> WeightsEnum | None:
    """The weights enum member called ``weights`` (case-insensitive), or ``None`` if none is."""
    enum = weights_enum(name)
    if enum is None:
        return None
    members = {key.upper(): member for key, member in enum.__members__.items()}
    return members.get(weights.upper())


def cache_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps the downloaded file of ``weights``."""
    filename = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def cached_weight_names(name: str) -> list[str]:
    """Names of the weights of ``name`` whose files are in the local cache."""
    enum = weights_enum(name)
    if enum is None:
        return []
    return [member.name for member in enum if cache_path(member).is_file()]


def input_spec_for(weights: WeightsEnum | None) -> InputSpec:
    """Input geometry and normalization from a weights' preset transforms (ImageNet defaults)."""
    if weights is None:
        return RANDOM_SPEC
    transform = weights.transforms()
    crop = int(_first(getattr(transform, "crop_size", 224)))
    resize = getattr(transform, "resize_size", 256)
    return InputSpec(
        channels=3,
        size=(crop, crop),
        resize=int(_first(resize)) if resize is not None else None,
        mean=tuple(float(m) for m in getattr(transform, "mean", IMAGENET_MEAN)),
        std=tuple(float(s) for s in getattr(transform, "std", IMAGENET_STD)),
    )


def _first(value: int | list[int] | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, (list, tuple)) else value


def build_kwargs(name: str, weights: WeightsEnum | None, num_classes: int) -> dict[str, object]:
    """Constructor arguments that make ``name`` match the architecture of ``weights``.

    Mirrors what torchvision's builders set when they load weights themselves.
    """
    kwargs: dict[str, object] = {"num_classes": num_classes}
    if weights is None:
        if name in AUX_HEAD_PREFIXES:  # no auxiliary training heads on a model to convert
            kwargs.update(aux_logits=False, init_weights=True)
        return kwargs
    if name in AUX_HEAD_PREFIXES:
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    elif name.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    elif name.startswith("maxvit"):
        kwargs["input_size"] = weights.meta["min_size"]
    elif name.startswith("vgg"):
        kwargs["init_weights"] = False
    return kwargs


def build(name: str, weights: WeightsEnum | None, num_classes: int) -> nn.Module:
    """Construct ``name`` without letting torchvision load (or download) any weights."""
    kwargs = build_kwargs(name, weights, num_classes)
    return torchvision.models.get_model(name, weights=None, **kwargs)


def pretrained_classes(weights: WeightsEnum) -> int | None:
    """Number of classes the weights were trained for, if known."""
    categories = weights.meta.get("categories")
    return len(categories) if categories else None


def offline_weights_error(name: str, weights: WeightsEnum, label: str) -> SnnConvertError:
    """The one-line error for weights that are not in the local cache."""
    return SnnConvertError(
        f"weights {label} for {name} are not in the local cache {cache_path(weights)} and this "
        f"machine is offline; pass {opt('quantize', 'weights', assign=True)}FILE or "
        f"{opt('quantize', 'weights', assign=True)}random"
    )


def load_cached(name: str, weights: WeightsEnum, label: str) -> dict[str, Tensor]:
    """Load the cached weights file (weights_only) and apply torchvision's key fixes."""
    path = cache_path(weights)
    if not path.is_file():
        raise offline_weights_error(name, weights, label)
    state_dict = load_state_dict_file(path)
    if name.startswith("densenet"):
        state_dict = {_DENSENET_KEY.sub(r"\1\2", k): v for k, v in state_dict.items()}
    return state_dict


def drop_aux_heads(name: str, module: nn.Module) -> None:
    """Remove the auxiliary training heads that googlenet/inception_v3 weights come with."""
    if name == "inception_v3" and getattr(module, "AuxLogits", None) is not None:
        module.aux_logits = False
        module.AuxLogits = None
    elif name == "googlenet" and getattr(module, "aux1", None) is not None:
        module.aux_logits = False
        module.aux1 = None
        module.aux2 = None
