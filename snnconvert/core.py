"""What every stage shares: the quantized model and its records, artifacts (save / load), and
the data splits (evaluation images that never overlap the calibration images).

:mod:`snnconvert.stages` (quantize, convert), :mod:`snnconvert.finetune` and
:mod:`snnconvert.evaluate` import this module; :mod:`snnconvert.pipeline` orchestrates them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.utils.data import DataLoader

from snnconvert.artifact import Artifact, load_artifact, new_manifest, save_artifact
from snnconvert.codings import ConversionInputs
from snnconvert.data import InputSpec, load_split, make_loader, materialize, needs_holdout
from snnconvert.data.classes import ClassCheck, validate_class_names
from snnconvert.device import resolve_device
from snnconvert.errors import SnnConvertError
from snnconvert.limits import shorten
from snnconvert.options import config_from_stored, opt, stored_config
from snnconvert.quantize import (
    ClipStats,
    LayerQuantRecord,
    QuantizeConfig,
    integer_weights,
)
from snnconvert.simulate.network import SpikingNetwork


@dataclass
class ModelInfo:
    """Identity of the converted model: where it came from and what input it takes."""

    name: str
    source: str
    input_spec: InputSpec
    num_classes: int
    default_data: str | None = None
    notes: list[str] = field(default_factory=list)  # how the weights were found and adapted
    class_names: list[str] | None = None  # in label order; None: unknown (older artifacts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        spec = d["input_spec"]
        input_spec = InputSpec(
            channels=spec["channels"], size=tuple(spec["size"]), resize=spec["resize"],
            mean=tuple(spec["mean"]) if spec["mean"] is not None else None,
            std=tuple(spec["std"]) if spec["std"] is not None else None,
        )
        return cls(d["name"], d["source"], input_spec, d["num_classes"], d.get("default_data"),
                   list(d.get("notes", [])), validate_class_names(d.get("class_names"), d["num_classes"]))

    def class_check(self, allow_mismatch: bool = False) -> ClassCheck:
        """What labelled data must look like for this model (its class names, or only its output count)."""
        names = tuple(self.class_names) if self.class_names else None
        outputs = self.num_classes if isinstance(self.num_classes, int) and self.num_classes > 0 else None
        return ClassCheck(self.name, names, outputs, allow_mismatch)


DATA_GEOMETRY: dict[str, tuple[int, tuple[int, int]]] = {"digits": (1, (8, 8)), "cifar10": (3, (32, 32))}
"""Channels and size of the images of the data kinds that have one size."""


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff")


_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


_COLOR_MODES = ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


_GEOMETRY_PROBES = 8  # class folders whose first image is opened


def _first_image(folder: Path) -> Path | None:
    import os

    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if Path(entry.name).suffix.lower() in _IMAGE_SUFFIXES and not entry.name.startswith(".") \
                        and entry.is_file():
                    return Path(entry.path)
    except OSError:
        return None
    return None


def data_geometry(data: str) -> tuple[int | None, tuple[int, int] | None]:
    """``(channels, (height, width))`` of the images of ``data`` where known without loading it:
    fixed for ``digits`` and ``cifar10``; for an ``imagefolder`` the first image of up to 8 class
    folders is opened: its size, and the channels when all of them agree (gray or color)."""
    from snnconvert.data import parse_data_spec
    from snnconvert.data.folders import class_folders, natural_split

    spec = parse_data_spec(data)
    if spec.kind in DATA_GEOMETRY:
        return DATA_GEOMETRY[spec.kind]
    if spec.kind != "imagefolder" or spec.path is None or not spec.path.is_dir():
        return None, None
    from PIL import Image

    split = natural_split(spec.path)
    base = spec.path / split[0] if split else spec.path
    try:
        classes = class_folders(base)[:_GEOMETRY_PROBES]
    except OSError:
        return None, None
    channels: set[int | None] = set()
    size = None
    for name in classes:
        file = _first_image(base / name)
        if file is None:
            continue
        try:
            with Image.open(file) as image:
                width, height = image.size
                mode = image.mode
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
        size = size or (height, width)
        channels.add(1 if mode in _GRAY_MODES else 3 if mode in _COLOR_MODES else None)
    return (channels.pop() if len(channels) == 1 else None), size


def _mismatch(input_spec: InputSpec, channels: int | None, size: tuple[int, int] | None) -> tuple[bool, bool]:
    wrong_channels = channels is not None and channels != input_spec.channels
    too_small = size is not None and any(2 * s < w for s, w in zip(size, input_spec.size, strict=True))
    return wrong_channels, too_small


def check_data_matches(model: str, input_spec: InputSpec, data: str, *, calibrated_on: str | None = None) -> None:
    """A one-line error naming both when the images of ``data`` cannot be what ``model`` was
    trained on: another number of channels, or less than half the model's input size. With
    ``calibrated_on`` (the calibration data) images as far from the model's input as those are
    accepted: the model was calibrated (``--resize-data``) on such images."""
    channels, size = data_geometry(data)
    wrong_channels, too_small = _mismatch(input_spec, channels, size)
    if not (wrong_channels or too_small):
        return
    hint = f"(or {opt('quantize', 'resize_data')} to resize these anyway)"
    if calibrated_on is not None:
        try:
            ref_channels, ref_size = data_geometry(calibrated_on)
        except SnnConvertError:
            ref_channels, ref_size = None, None
        ref_wrong, ref_small = _mismatch(input_spec, ref_channels, ref_size)
        if (not wrong_channels or (ref_wrong and ref_channels == channels)) and (not too_small or ref_small):
            return
        hint = f"(it was calibrated on {shorten(calibrated_on, 120)})"
    want = f"{input_spec.channels}x{input_spec.size[0]}x{input_spec.size[1]}"
    have = f"{channels if channels is not None else '?'}x{size[0]}x{size[1]}" if size else f"{channels}-channel"
    data_option = opt("quantize", "data")
    raise SnnConvertError(f"{data_option} {shorten(data, 200)} has {have} images but {model} takes {want} input; "
                          f"give {data_option} with the images the model was trained on {hint}")


@dataclass
class CalibrationRecord:
    """Which images calibrated the model (so evaluation can keep away from them)."""

    spec: str
    limit: int | None
    seed: int
    calib_split: float
    images: int
    description: str
    fingerprint: str


@dataclass
class AccuracyPair:
    """Float vs quantized top-1 on held-out images, measured by ``quantize``."""

    float_top1: float
    quantized_top1: float
    images: int
    data: str


@dataclass
class QuantizedModel:
    """Result of :func:`quantize`: the prepared float graph and its quantized counterpart."""

    float_model: fx.GraphModule
    model: fx.GraphModule
    info: ModelInfo
    config: QuantizeConfig
    calibration: CalibrationRecord
    layers: list[LayerQuantRecord] = field(default_factory=list)
    clip_stats: list[ClipStats] = field(default_factory=list)
    accuracy: AccuracyPair | None = None
    qat_history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def top1(model: nn.Module, loader, *, dtype: torch.dtype = torch.float32) -> float:
    correct = total = 0
    for images, labels in loader:
        correct += int((model(images.to(dtype)).argmax(1) == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def eval_split(quantized: QuantizedModel, data: str | None, *, limit: int | None, seed: int = 0,
               allow_class_mismatch: bool = False):
    """Evaluation images of ``data`` (default: the calibration data's evaluation part), never
    overlapping the calibration images; other data must match the model's input, and the classes
    must match the model's (stored names, else its output count) unless ``allow_class_mismatch``."""
    calib = quantized.calibration
    if data and data != calib.spec and not quantized.info.source.endswith("/random"):
        check_data_matches(quantized.info.name, quantized.info.input_spec, data, calibrated_on=calib.spec)
    data = data or calib.spec
    holdout = needs_holdout(calib.spec, data)
    return load_split(data, "eval", quantized.info.input_spec, limit=limit, seed=seed if not holdout else calib.seed,
                      calib_split=calib.calib_split, holdout=holdout,
                      classes=quantized.info.class_check(allow_class_mismatch))


def conversion_inputs(quantized: QuantizedModel, *, need_calibration: bool,
                      show_progress: bool = False, device: str = "cpu") -> ConversionInputs:
    """What codings convert from; the calibration images are reloaded from the recorded spec.
    Calibration passes of the coding run on ``device`` (auto, cpu, cuda, cuda:N)."""
    loader = None
    if need_calibration:
        calib = quantized.calibration
        split = load_split(calib.spec, "calib", quantized.info.input_spec, limit=calib.limit, seed=calib.seed,
                           calib_split=calib.calib_split)
        loader = make_loader(materialize(split, progress=show_progress), quantized.config.batch_size)
    def sample(limit: int, seed: int) -> DataLoader:
        calib = quantized.calibration
        split = load_split(calib.spec, "calib", quantized.info.input_spec, limit=limit, seed=seed,
                           calib_split=calib.calib_split)
        return make_loader(materialize(split, progress=show_progress), quantized.config.batch_size)

    return ConversionInputs(quantized.float_model, quantized.model, quantized.info.input_spec, loader,
                            show_progress, device=resolve_device(device),
                            calibration_sample=sample if need_calibration else None)


def quantized_manifest(q: QuantizedModel) -> dict[str, Any]:
    return {
        "model": q.info.as_dict(),
        "quantize": stored_config(q.config),
        "calibration": asdict(q.calibration),
        "layers": [r.as_dict() for r in q.layers],
        "clip_stats": [asdict(s) for s in q.clip_stats],
        "accuracy": asdict(q.accuracy) if q.accuracy else None,
        "qat_history": q.qat_history,
    }


def save(path: str | Path, quantized: QuantizedModel, snn: SpikingNetwork | None = None,
         *, extra: dict[str, Any] | None = None) -> Path:
    """Write a quantized (or, with ``snn``, a converted) artifact atomically."""
    kind = "snn" if snn is not None else "quantized"
    manifest = new_manifest(kind, **quantized_manifest(quantized), **(extra or {}))
    models: dict[str, nn.Module] = {"float": quantized.float_model, "quantized": quantized.model}
    tensors = {f"int_weights/{k}": v for k, v in integer_weights(quantized.model).items()}
    if snn is not None:
        models["snn"] = snn
        manifest["snn"] = {"coding": snn.coding, "info": snn.info}
    return save_artifact(Artifact(kind, manifest, models, tensors), path)


def from_artifact(artifact: Artifact) -> tuple[QuantizedModel, SpikingNetwork | None]:
    m = artifact.manifest
    try:
        config = config_from_stored(QuantizeConfig, m["quantize"], "the artifact's quantize config")
        q = QuantizedModel(
            float_model=artifact.models["float"], model=artifact.models["quantized"],
            info=ModelInfo.from_dict(m["model"]), config=config,
            calibration=CalibrationRecord(**m["calibration"]),
            layers=[LayerQuantRecord(**{**r, "inputs": [_ref(i) for i in r["inputs"]],
                                        "output": _ref(r["output"]) if r["output"] else None})
                    for r in m.get("layers", [])],
            clip_stats=[ClipStats(**s) for s in m.get("clip_stats", [])],
            accuracy=AccuracyPair(**m["accuracy"]) if m.get("accuracy") else None,
            qat_history=m.get("qat_history", []),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise SnnConvertError(f"artifact manifest is incomplete ({str(exc)[:80]}); was it written by snnconvert?") \
            from exc
    snn = artifact.models.get("snn")
    if not isinstance(q.float_model, fx.GraphModule) or not isinstance(q.model, fx.GraphModule) \
            or not isinstance(snn, (SpikingNetwork, type(None))):
        raise SnnConvertError("artifact models are not the float/quantized graphs and spiking network snnconvert "
                              "writes; re-create the artifact")
    return q, snn


def _ref(d: dict):
    from snnconvert.quantize import QuantRef

    return QuantRef(**d)


def load(path: str | Path, *, allow_unchecked: bool = False) -> tuple[QuantizedModel, SpikingNetwork | None]:
    """Read an artifact: the quantized model and, if converted, the spiking network.
    ``allow_unchecked`` admits format v1 files, which carry no checksums."""
    return from_artifact(load_artifact(path, allow_unchecked=allow_unchecked))
