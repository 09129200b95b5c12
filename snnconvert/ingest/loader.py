"""``load_model`` and ``list_models``: from a model name and a weights choice to a LoadedModel."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from snnconvert.data.input_spec import InputSpec
from snnconvert.errors import SnnConvertError
from snnconvert.ingest import torchvision_zoo as tv
from snnconvert.ingest.bundled import bundled_weights_path, require_bundled_weights
from snnconvert.ingest.checkpoint import apply_state_dict, compare_state_dict, read_checkpoint
from snnconvert.ingest.types import LoadedModel
from snnconvert.limits import shorten
from snnconvert.models.registry import BUNDLED_MODELS, BundledArch
from snnconvert.options import opt

RANDOM_WEIGHTS = ("random", "none")
DEFAULT_WEIGHTS = ("default",)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".th", ".ckpt", ".bin", ".tar", ".pkl")
TORCHVISION_CLASSES = 1000
MAX_NAME_CHARS = 200
MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class ModelEntry:
    """One row of ``snnconvert models``."""

    name: str
    family: str  # "bundled" | "torchvision"
    input_spec: InputSpec
    weights_offline: str  # which weights can be loaded on this machine right now
    description: str = ""


@dataclass
class _Built:
    module: nn.Module
    num_classes: int
    source: str
    notes: list[str]


def load_model(
    spec: str,
    weights: str | None = None,
    *,
    num_classes: int | None = None,
    input_size: tuple[int, int] | None = None,
) -> LoadedModel:
    """Build model ``spec`` with the ingest format that claims it (:mod:`snnconvert.ingest.formats`:
    an ONNX file, or a bundled or torchvision name) and load ``weights`` into it.

    ``weights``: ``None``/``"DEFAULT"`` for the model's default weights, ``"random"``/``"none"``
    for random init, a torchvision weights name (local cache only), or a checkpoint path.
    The returned module is in eval mode and expects input normalized by its ``input_spec``.
    """
    from snnconvert.ingest.formats import format_for

    _check_text(spec, "model spec", MAX_PATH_CHARS)
    _, fmt = format_for(spec)
    return fmt.load(spec, weights, num_classes=num_classes, input_size=input_size)


def load_zoo_model(spec: str, weights: str | None = None, *, num_classes: int | None = None,
                   input_size: tuple[int, int] | None = None) -> LoadedModel:
    """The ``zoo`` ingest format: a bundled or torchvision model by name (see :func:`load_model`)."""
    _check_text(spec, "model name", MAX_NAME_CHARS)
    if weights is not None:
        _check_text(weights, "--weights", MAX_PATH_CHARS)
    name, family = resolve_name(spec)
    if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 1):
        raise SnnConvertError(f"--num-classes must be a positive integer, got {num_classes}")
    size = _check_input_size(input_size)
    if family == "bundled":
        arch = BUNDLED_MODELS[name]
        built = _load_bundled(arch, weights, num_classes)
        input_spec = arch.input_spec
        default_data = arch.default_data if built.num_classes == arch.num_classes else None
    else:
        built, input_spec = _load_torchvision(name, weights, num_classes)
        default_data = None
    built.module.eval()
    if size is not None:
        input_spec = _override_size(name, built.module, input_spec, size)
    return LoadedModel(
        module=built.module,
        name=name,
        source=built.source,
        input_spec=input_spec,
        num_classes=built.num_classes,
        default_data=default_data,
        notes=built.notes,
    )


def _check_text(value: object, what: str, limit: int) -> None:
    """A one-line error for a non-string or overlong name/path (before it reaches the OS or difflib)."""
    if not isinstance(value, str):
        raise SnnConvertError(f"{what} must be text, got a {type(value).__name__}")
    if len(value) > limit:
        raise SnnConvertError(f"{what} {shorten(value, 40)} has {len(value)} characters (most {limit}); "
                              "check the command line")
    if "\0" in value:
        raise SnnConvertError(f"{what} {shorten(value, 40)} contains a NUL character")


def list_models() -> list[ModelEntry]:
    """Every accepted model name with its input spec and the weights available offline."""
    entries = [
        ModelEntry(arch.name, "bundled", arch.input_spec, _bundled_offline(arch), arch.description)
        for arch in BUNDLED_MODELS.values()
    ]
    for name in tv.torchvision_names():
        default = tv.resolve_weights(name, "DEFAULT")
        spec = tv.input_spec_for(default)
        entries.append(ModelEntry(name, "torchvision", spec, _tv_offline(name), _tv_desc(default)))
    return entries


def resolve_name(spec: str) -> tuple[str, str]:
    """Return ``(name, family)`` of a model spec, or raise with close matches."""
    text = spec.strip()
    family, sep, rest = text.partition(":")
    key = (rest if sep and family.lower() in ("bundled", "torchvision") else text).lower()
    wanted = family.lower() if sep else None
    if key in BUNDLED_MODELS and wanted in (None, "bundled"):
        return key, "bundled"
    torchvision_names = tv.torchvision_names()
    if key in torchvision_names and wanted in (None, "torchvision"):
        return key, "torchvision"
    if Path(text).suffix.lower() in CHECKPOINT_SUFFIXES:
        raise SnnConvertError(
            f"'{shorten(spec)}' looks like a checkpoint file, not a model name; pass the architecture "
            f"name as the model and the file with {opt('quantize', 'weights', assign=True)}FILE"
        )
    names = [*BUNDLED_MODELS, *torchvision_names]
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise SnnConvertError(f"unknown model '{shorten(spec)}'; {hint}run `snnconvert models` to list them all")


def _weights_choice(weights: str | None) -> str:
    """``"default"``, ``"random"`` or ``"named"`` (a weights name or a file path)."""
    if weights is None or weights.strip().lower() in DEFAULT_WEIGHTS:
        return "default"
    if weights.strip().lower() in RANDOM_WEIGHTS:
        return "random"
    if not weights.strip():
        raise SnnConvertError("--weights is empty; pass a checkpoint file, a name, or random")
    return "named"


def _load_bundled(arch: BundledArch, weights: str | None, num_classes: int | None) -> _Built:
    choice = _weights_choice(weights)
    if choice == "random":
        classes = num_classes or arch.num_classes
        return _Built(arch.build(classes), classes, f"bundled:{arch.name}/random", [])
    if choice == "default":
        path = require_bundled_weights(arch)
        state_dict, _ = read_checkpoint(path)
        classes = num_classes or arch.num_classes
        module = arch.build(classes)
        notes = _load_pretrained(
            module, state_dict, f"bundled weights {path}", arch.name, arch.num_classes, classes
        )
        return _Built(module, classes, f"bundled:{arch.name}", notes)
    assert weights is not None
    return _load_file(arch.name, weights, num_classes, arch.num_classes, arch.build)


def _load_torchvision(
    name: str, weights: str | None, num_classes: int | None
) -> tuple[_Built, InputSpec]:
    choice = _weights_choice(weights)
    if choice == "random":
        classes = num_classes or TORCHVISION_CLASSES
        module = tv.build(name, None, classes)
        return _Built(module, classes, f"torchvision:{name}/random", []), tv.RANDOM_SPEC
    member = tv.resolve_weights(name, weights or "DEFAULT")
    if member is None and choice == "default":
        raise SnnConvertError(
            f"torchvision model {name} has no pretrained weights; pass "
            f"{opt('quantize', 'weights', assign=True)}FILE or "
            f"{opt('quantize', 'weights', assign=True)}random"
        )
    if member is not None:
        label = (weights or "DEFAULT").upper()
        state_dict = tv.load_cached(name, member, label)
        pretrained = tv.pretrained_classes(member)
        classes = num_classes or pretrained or TORCHVISION_CLASSES
        module = tv.build(name, member, classes)
        source = f"torchvision weights {member.name} ({tv.cache_path(member)})"
        notes = _load_pretrained(module, state_dict, source, name, pretrained, classes)
        tv.drop_aux_heads(name, module)
        built = _Built(module, classes, f"torchvision:{name}/{member.name}", notes)
        return built, tv.input_spec_for(member)
    assert weights is not None
    if not Path(weights).expanduser().exists() and re.fullmatch(r"[A-Za-z0-9_]+", weights):
        raise SnnConvertError(
            f"{name} has no weights named '{shorten(weights)}' and there is no file of that name; "
            f"available: {', '.join(tv.weight_names(name))}, random, or {opt('quantize', 'weights', assign=True)}FILE"
        )

    def build(classes: int) -> nn.Module:
        return tv.build(name, None, classes)

    aux = tv.AUX_HEAD_PREFIXES.get(name, ())
    built = _load_file(name, weights, num_classes, TORCHVISION_CLASSES, build, drop_prefixes=aux)
    built.notes.append(
        "input normalization assumed to be ImageNet mean/std at 224x224 (torchvision's default)"
    )
    return built, tv.RANDOM_SPEC


def _load_file(
    name: str,
    weights: str,
    num_classes: int | None,
    default_classes: int,
    build: Callable[[int], nn.Module],
    drop_prefixes: tuple[str, ...] = (),
) -> _Built:
    path = Path(weights).expanduser().resolve()
    state_dict, notes = read_checkpoint(path)
    if drop_prefixes:
        kept = {k: v for k, v in state_dict.items() if not k.startswith(drop_prefixes)}
        if len(kept) < len(state_dict):
            notes.append(f"dropped auxiliary-head weights ({', '.join(drop_prefixes)}*)")
        state_dict = kept
    classes = num_classes or default_classes
    module = build(classes)
    if num_classes is None:
        inferred = _infer_num_classes(module, state_dict, classes)
        if inferred is not None:
            classes = inferred
            module = build(classes)
            notes.append(f"num_classes={classes} inferred from the checkpoint's output layer")
    apply_state_dict(module, state_dict, source=f"checkpoint {path}", name=name)
    return _Built(module, classes, f"file:{path}", notes)


def _infer_num_classes(
    module: nn.Module, state_dict: Mapping[str, Tensor], current: int
) -> int | None:
    """The class count of a checkpoint that differs from ``module`` only in its output layer."""
    missing, unexpected, _ = compare_state_dict(module, state_dict)
    expected = module.state_dict()
    pairs = [
        (tuple(v.shape), tuple(expected[k].shape))
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or not pairs:
        return None
    head_like = all(
        len(got) == len(want) > 0 and got[1:] == want[1:] and want[0] == current
        for got, want in pairs
    )
    if not head_like:
        return None
    sizes = {got[0] for got, _ in pairs}
    return sizes.pop() if len(sizes) == 1 and min(sizes) >= 1 else None


def _load_pretrained(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    source: str,
    name: str,
    pretrained_classes: int | None,
    classes: int,
) -> list[str]:
    """Load pretrained weights; with a different class count, everything but the head."""
    skip: list[str] = []
    if pretrained_classes is not None and classes != pretrained_classes:
        expected = module.state_dict()
        skip = [
            k
            for k, v in state_dict.items()
            if k in expected and tuple(v.shape) != tuple(expected[k].shape)
        ]
    apply_state_dict(module, state_dict, source=source, name=name, skip=skip)
    if not skip:
        return []
    return [
        f"pretrained head ({', '.join(skip)}) not loaded: the weights have {pretrained_classes} "
        f"classes, the model {classes}; the new head is randomly initialized"
    ]


def _check_input_size(input_size: tuple[int, int] | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    values = tuple(input_size)
    if len(values) != 2 or not all(isinstance(v, int) and v > 0 for v in values):
        raise SnnConvertError(f"input size must be two positive integers (H, W), got {input_size}")
    return values[0], values[1]


def _override_size(
    name: str, module: nn.Module, spec: InputSpec, size: tuple[int, int]
) -> InputSpec:
    """Use ``size`` as the input size after checking that the model accepts it."""
    new_spec = replace(spec, size=size, resize=None)
    try:
        with torch.no_grad():
            module(torch.zeros(new_spec.example_shape(1)))
    except Exception as exc:  # any failure means the architecture cannot take this size
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        native = "x".join(str(s) for s in spec.size)
        raise SnnConvertError(
            f"{name} cannot take {size[0]}x{size[1]} inputs ({detail}); use its native size "
            f"{native} or another input size"
        ) from None
    return new_spec


def _bundled_offline(arch: BundledArch) -> str:
    path = bundled_weights_path(arch)
    if path is None:
        return "none bundled: pass --weights FILE"
    if path.is_file():
        return f"bundled {arch.default_data or arch.name} weights"
    return f"missing: run {arch.train_command}" if arch.train_command else f"missing: {path}"


def _tv_offline(name: str) -> str:
    cached = tv.cached_weight_names(name)
    default = tv.resolve_weights(name, "DEFAULT")
    if default is not None and default.name in cached:
        return "DEFAULT (cached)"
    if cached:
        return f"{', '.join(cached)} (cached)"
    return "none cached: pass --weights FILE"


def _tv_desc(default: object) -> str:
    metrics = getattr(default, "meta", {}).get("_metrics", {}).get("ImageNet-1K", {})
    acc = metrics.get("acc@1")
    return f"ImageNet-1K top-1 {acc}% with {default.name}" if acc is not None else ""
