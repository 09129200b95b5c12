"""The Python API behind every CLI command: quantize -> to_snn -> evaluate, plus save/load.

Each function takes and returns ordinary ``nn.Module`` s and dataclasses::

    import snnconvert
    q = snnconvert.quantize("lenet5", data="digits")            # QuantizedModel
    snn = snnconvert.to_snn(q, coding="sws", Tc=8, Ts=2)        # SpikingNetwork (nn.Module)
    report = snnconvert.evaluate(q, snn, data="digits")          # EvaluationReport
    snnconvert.save("run.snnc", q, snn)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn
from torch.utils.data import DataLoader

from snnconvert.artifact import Artifact, load_artifact, new_manifest, save_artifact
from snnconvert.codings import Coding, ConversionInputs, build_config, coding_for, get_coding
from snnconvert.data import InputSpec, load_split, make_loader, materialize, needs_holdout
from snnconvert.data.classes import ClassCheck, known_class_names, validate_class_names
from snnconvert.device import resolve_device
from snnconvert.errors import SnnConvertError
from snnconvert.graph import PrepareConfig, prepare
from snnconvert.ingest import LoadedModel, load_model
from snnconvert.limits import check_simulation_memory, shorten, time_steps_of
from snnconvert.manifest_check import MAX_CLASSES
from snnconvert.quantize import (
    ClipStats,
    LayerQuantRecord,
    QuantizeConfig,
    integer_weights,
    layer_records,
    quantize_graph,
)
from snnconvert.simulate.network import SpikingNetwork

if TYPE_CHECKING:
    from snnconvert.evaluate import EvaluationReport
    from snnconvert.recipe import Recipe


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
    hint = "(or --resize-data to resize these anyway)"
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
    raise SnnConvertError(f"--data {shorten(data, 200)} has {have} images but {model} takes {want} input; give "
                          f"--data with the images the model was trained on {hint}")


def ingest_class_check(loaded: LoadedModel, allow_mismatch: bool = False) -> ClassCheck:
    """The classes data must have to calibrate ``loaded``: the names of the data its bundled weights
    were trained on (lenet5: the digits 0..9), else its output count; random weights: anything
    (a mismatch is a note)."""
    random = loaded.source.endswith("/random")
    names = None if random else known_class_names(loaded.default_data)
    outputs = loaded.num_classes if isinstance(loaded.num_classes, int) and loaded.num_classes > 0 else None
    if names is not None and len(names) != outputs:
        names = None
    return ClassCheck(loaded.name, tuple(names) if names else None, outputs, allow_mismatch or random)


def check_weights(module: nn.Module, source: str) -> None:
    """One-line error if a weight or buffer is NaN/inf (or huge), or a layer's weights are all zero
    (the model would answer the same class for every image: a damaged or empty checkpoint)."""
    from snnconvert.ingest.checkpoint import check_weight_values

    state = module.state_dict()
    check_weight_values(state, source)
    for key, value in state.items():
        if key.endswith("weight") and value.is_floating_point() and value.dim() >= 2 and value.numel() \
                and not bool(value.detach().any()):
            raise SnnConvertError(f"{shorten(source, 200)}: {shorten(key)} is all zeros, so the model gives every "
                                  "image the same answer; the weights are damaged or were never trained")


def data_for(loaded: LoadedModel, data: str | None, *, resize_data: bool = False) -> tuple[str, str | None]:
    """The data to calibrate ``loaded`` on (``data``, else the model's default data) and a note:
    checked against the model's input unless ``resize_data`` or the weights are random (then a
    mismatch is the note)."""
    spec = loaded.input_spec
    want = f"{spec.channels}x{spec.size[0]}x{spec.size[1]}"
    if data is None:
        if not loaded.default_data:
            raise SnnConvertError(f"{loaded.name} takes {want} images and has no default data; give --data "
                                  "(imagefolder:PATH, cifar10:PATH or imagenet:PATH)")
        return loaded.default_data, None
    random = loaded.source.endswith("/random")
    if resize_data or random:
        try:
            check_data_matches(loaded.name, spec, data)
        except SnnConvertError:
            return data, (f"calibration data {data} resized to the {want} input"
                          + (" (random weights)" if random else " (--resize-data)"))
        return data, None
    check_data_matches(loaded.name, spec, data)
    return data, None


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


def _as_loaded(model: str | LoadedModel | nn.Module, weights: str | None,
               input_spec: InputSpec | None, num_classes: int | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str):
        return load_model(model, weights, num_classes=num_classes)
    if isinstance(model, nn.Module):
        if input_spec is None:
            raise SnnConvertError("pass input_spec=InputSpec(...) when quantizing an nn.Module")
        classes = num_classes or int(model(torch.zeros(input_spec.example_shape(1))).shape[-1])
        return LoadedModel(model.eval(), type(model).__name__, "module", input_spec, classes)
    raise SnnConvertError(f"cannot quantize a {type(model).__name__}: give a model name or an nn.Module")


@torch.no_grad()
def top1(model: nn.Module, loader, *, dtype: torch.dtype = torch.float32) -> float:
    correct = total = 0
    for images, labels in loader:
        correct += int((model(images.to(dtype)).argmax(1) == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def quantize(
    model: str | LoadedModel | nn.Module,
    *,
    data: str | None = None,
    config: QuantizeConfig | None = None,
    weights: str | None = None,
    input_spec: InputSpec | None = None,
    num_classes: int | None = None,
    calib_split: float = 0.2,
    eval_limit: int | None = 1000,
    show_progress: bool = False,
    resize_data: bool = False,
    allow_class_mismatch: bool = False,
) -> QuantizedModel:
    """Prepare, calibrate and quantize ``model`` (post-training, then QAT if asked).

    Calibration (and QAT) use the calibration part of ``data`` (default: the data the model's
    bundled weights were trained on; a model without one needs ``data``); the float and
    quantized top-1 are then measured on up to ``eval_limit`` held-out images of the same data
    (never the calibration images). Data whose images do not match the model's input (channels,
    or at most half its size) is an error naming both, unless ``resize_data`` or the weights are
    random. The data's class folders must match the model's classes (the names of the data its
    bundled weights were trained on, else its output count; see ``snnconvert.data.classes``)
    unless ``allow_class_mismatch``; the class names used are stored with the model. Weights
    that are NaN/inf or a layer whose weights are all zero are refused. The model passed in is
    not modified.
    """
    config = config or QuantizeConfig()
    config.validate()
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or not 1 <= num_classes <= MAX_CLASSES):
        raise SnnConvertError(f"num_classes {shorten(num_classes, 30)} is not possible: give 1..{MAX_CLASSES:,}")
    if isinstance(model, (str, Path)) and str(model).strip().lower().endswith(".onnx"):
        from snnconvert.ingest.onnx_qdq import is_qdq_file

        if is_qdq_file(str(model).strip()):  # already quantized (QDQ): its own scales, no re-calibration
            if data is None:
                raise SnnConvertError(f"{model}: give --data (an ONNX model has no default data)")
            return quantized_from_onnx(str(model).strip(), data=data, eval_limit=eval_limit,
                                       show_progress=show_progress)
    loaded = _as_loaded(model, weights, input_spec, num_classes)
    check_weights(loaded.module, loaded.source)
    spec = loaded.input_spec
    data, data_note = data_for(loaded, data, resize_data=resize_data)
    float_gm = prepare(loaded.module, spec)  # the support check first: before any image is decoded
    classes = ingest_class_check(loaded, allow_class_mismatch)
    calib = load_split(data, "calib", spec, limit=config.calib_limit, seed=config.seed, calib_split=calib_split,
                       classes=classes)
    if len(calib) == 0:
        raise SnnConvertError(f"no calibration images in {data}")
    calib = materialize(calib, progress=show_progress)
    calib_loader = make_loader(calib, config.batch_size)
    train_loader = None
    source_gm = float_gm
    if config.qat_epochs > 0:
        train = materialize(load_split(data, "train", spec, seed=config.seed, calib_split=calib_split,
                                       classes=classes), progress=show_progress)
        train_loader = make_loader(train, config.batch_size, shuffle=True, seed=config.seed)
        source_gm = prepare(loaded.module, spec, PrepareConfig(fuse_batchnorm=False))
    result = quantize_graph(source_gm, calib_loader, config, example_shape=spec.example_shape(2),
                            train_loader=train_loader, show_progress=show_progress)
    record = CalibrationRecord(data, config.calib_limit, config.seed, calib_split, len(calib),
                               calib.description, calib.fingerprint())
    quantized = QuantizedModel(
        float_model=float_gm, model=result.model,
        info=ModelInfo(loaded.name, loaded.source, spec, loaded.num_classes, loaded.default_data,
                       list(loaded.notes) + ([data_note] if data_note else []),
                       list(classes.names) if classes.names else
                       calib.class_names if len(calib.class_names) == loaded.num_classes else None),
        config=config, calibration=record, layers=layer_records(result.model),
        clip_stats=result.clip_stats, qat_history=result.qat_history,
    )
    if eval_limit != 0:
        held_out = eval_split(quantized, data, limit=eval_limit, allow_class_mismatch=allow_class_mismatch)
        loader = make_loader(materialize(held_out, progress=show_progress), 250)
        quantized.accuracy = AccuracyPair(top1(float_gm, loader), top1(result.model, loader),
                                          len(held_out), held_out.description)
    return quantized


def quantized_from_onnx(path: str | Path, *, data: str = "digits", eval_limit: int | None = 1000,
                        show_progress: bool = False) -> QuantizedModel:
    """A QDQ-quantized ONNX model as a :class:`QuantizedModel`, its scales and zero points taken
    as they are (see :mod:`snnconvert.ingest.onnx_qdq`). ``data`` is recorded as the model's data;
    with ``eval_limit`` > 0 the float and quantized top-1 are measured on that many of its images."""
    from snnconvert.ingest.onnx_qdq import import_qdq

    imported = import_qdq(path)
    config = QuantizeConfig(bits=imported.act_bits, weight_bits=imported.weight_bits, method="max", calib_limit=None)
    record = CalibrationRecord(data, None, 0, 0.2, 0,
                               f"the data {Path(path).name} was quantized with, outside snnconvert", "")
    q = QuantizedModel(float_model=imported.float_model, model=imported.model,
                       info=ModelInfo(imported.name, imported.source, imported.input_spec, imported.num_classes,
                                      None, imported.notes),
                       config=config, calibration=record, layers=layer_records(imported.model))
    if eval_limit != 0:
        held_out = eval_split(q, data, limit=eval_limit)
        loader = make_loader(materialize(held_out, progress=show_progress), 250)
        q.accuracy = AccuracyPair(top1(q.float_model, loader), top1(q.model, loader), len(held_out),
                                  held_out.description)
    return q


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


def _coding_of(coding: str | None, config: Any) -> Coding:
    if coding is None:
        if config is None:
            return get_coding("sws")
        return coding_for(config)
    return get_coding(coding)


def coding_config(coding: str | None = None, config: Any = None, **options: Any) -> Any:
    """A validated copy of a coding's config from ``config`` and/or keyword options (the coding
    is named, or found from the config's type). The caller's config is never changed."""
    return build_config(_coding_of(coding, config), config, **options)


def convert_with(inputs: ConversionInputs, coding: str, config: Any) -> SpikingNetwork:
    """Convert with a validated ``config`` from prepared inputs (the one conversion path that
    :func:`to_snn` and evaluation sweeps share)."""
    entry = get_coding(coding)
    if entry.needs_calibration(config) and inputs.calibration is None:
        raise SnnConvertError(f"coding {coding} with these options needs calibration data (the quantize step's --data)")
    snn = entry.convert(inputs, config)
    snn.info.setdefault("coding", coding)
    snn.info["config"] = _jsonable_config(config)
    return snn


def to_snn(quantized: QuantizedModel, coding: str | None = None, config: Any = None, *,
           show_progress: bool = False, device: str = "cpu", **options: Any) -> SpikingNetwork:
    """Convert a quantized model with ``coding`` (default ``sws``, or the coding whose config
    ``config`` is), with options as a config dataclass and/or keywords. Loads the calibration
    images only when the coding needs them for this config; its calibration passes (activation
    statistics, the ``--Ts auto`` search) run on ``device``. The SNN returned is on the CPU."""
    entry = _coding_of(coding, config)
    config = build_config(entry, config, **options)
    check_simulation_memory(quantized.model, torch.zeros(quantized.info.input_spec.example_shape(1)),
                            time_steps_of(config), what=f"the {entry.name} network")  # before any work
    inputs = conversion_inputs(quantized, need_calibration=entry.needs_calibration(config),
                               show_progress=show_progress, device=device)
    return convert_with(inputs, entry.name, config)


def _jsonable_config(config: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if not k.startswith("_")}


# ---------------------------------------------------------------------------- run


@dataclass
class StageEvent:
    """What :func:`run` reports to ``on_stage``: a stage starting (``result`` None) or done."""

    stage: str  # "quantize" | "convert" | "finetune" | "evaluate"
    index: int  # 1-based position among the stages this run executes
    total: int
    description: str
    result: Any = None
    path: Path | None = None

    @property
    def done(self) -> bool:
        return self.result is not None


@dataclass
class RunResult:
    """Everything one :func:`run` produced."""

    quantized: QuantizedModel
    quantized_path: Path | None
    snn: SpikingNetwork | None = None
    snn_path: Path | None = None
    report: EvaluationReport | None = None
    directory: Path | None = None
    report_path: Path | None = None  # the evaluation's JSON in ``directory``
    written: list[Path] = field(default_factory=list)  # every file and folder published, in order


STAGING_PREFIX = ".staging-"
"""A run writes into ``<run dir>/.staging-<pid>-<random>/`` and publishes at the end."""


def _staging_pid(path: Path) -> int | None:
    head = path.name[len(STAGING_PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def remove_stale_staging(directory: Path) -> None:
    """Remove staging folders of runs whose process no longer exists (a SIGKILLed run)."""
    import os
    import shutil

    for folder in directory.glob(f"{STAGING_PREFIX}*"):
        pid = _staging_pid(folder)
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def _publish(staging: Path, directory: Path, order: list[Path]) -> list[Path]:
    """Move ``order`` (paths in ``staging``) into ``directory`` without replacing anything there
    (a taken name gets ``-N``); all or nothing: on any failure what was moved is removed again."""
    import os
    import shutil

    published: list[Path] = []
    try:
        for item in order:
            target = directory / item.name
            n = 1
            while True:
                try:
                    if item.is_dir():
                        if target.exists():
                            raise FileExistsError(target)
                        os.rename(item, target)
                    else:
                        os.link(item, target)  # fails instead of replacing a file another process made
                        os.unlink(item)
                    break
                except FileExistsError:
                    target = directory / f"{item.stem}-{n}{item.suffix}"
                    n += 1
            published.append(target)
    except BaseException:
        for path in published:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise
    return published


def run(recipe: Recipe, *, on_stage: Callable[[StageEvent], None] | None = None, out: str | Path | None = None,
        save_artifacts: bool = True, show_progress: bool = False) -> RunResult:
    """The whole pipeline of a recipe: quantize -> to-snn -> finetune (if asked) -> evaluate.

    The single implementation behind ``snnconvert run`` and ``snnconvert demo``. Artifacts, the
    fine-tuning folder and the evaluation's JSON go to ``out`` (default: the recipe's ``out``, else
    ``./snnconvert-runs/<model>/``) unless ``save_artifacts`` is False: they are written into a
    hidden staging folder there and published together when every stage has succeeded, so a run
    that fails or is interrupted (Ctrl-C, SIGTERM) leaves no new file (a SIGKILLed run leaves its
    ``.staging-<pid>-*`` folder, removed by the next run into that directory). ``on_stage`` hears
    each stage start and finish (``path``: where the stage's artifact will be published).
    """
    import os
    import shutil
    import uuid

    from snnconvert.workspace import run_dir

    recipe.validate()
    stages = ["quantize"] + (["convert"] if recipe.convert else []) + \
        (["finetune"] if recipe.convert and recipe.finetune else []) + \
        (["evaluate"] if recipe.convert and recipe.evaluate else [])
    notify = on_stage or (lambda _event: None)

    def event(stage: str, description: str, result: Any = None, path: Path | None = None) -> StageEvent:
        return StageEvent(stage, stages.index(stage) + 1, len(stages), description, result, path)

    q_text = f"quantize {recipe.model} to {recipe.quantize.bits} bits on {recipe.data}"
    notify(event("quantize", q_text))
    q = quantize(recipe.model, data=recipe.data, config=recipe.quantize, weights=recipe.weights,
                 num_classes=recipe.num_classes, calib_split=recipe.calib_split, show_progress=show_progress)
    directory = run_dir(q.info.name, out or recipe.out) if save_artifacts else None
    if directory is None:
        return _run_stages(recipe, q, None, None, notify, event, q_text, show_progress)
    made = [p for p in (directory, *directory.parents) if not p.exists()]
    staging = directory / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            remove_stale_staging(directory)
            staging.mkdir()
        except OSError as exc:
            raise SnnConvertError(f"cannot write into the run directory {directory} ({exc.strerror or exc}); "
                                  "choose another --out") from None
        result = _run_stages(recipe, q, staging, directory, notify, event, q_text, show_progress)
        order = [p for p in (result.quantized_path, *result.written, result.report_path) if p is not None]
        published = _publish(staging, directory, order)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # folders this run created, innermost first, if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)  # only hidden markers can be left in it
    names = {old.name: new for old, new in zip(order, published, strict=True)}
    result.quantized_path = names.get(result.quantized_path.name) if result.quantized_path else None
    result.snn_path = names.get(result.snn_path.name) if result.snn_path else None
    result.report_path = names.get(result.report_path.name) if result.report_path else None
    result.written = published
    return result


def _run_stages(recipe: Recipe, q: QuantizedModel, staging: Path | None, directory: Path | None,
                notify: Callable[[StageEvent], None], event: Callable[..., StageEvent], q_text: str,
                show_progress: bool) -> RunResult:
    """The stages after quantization; artifacts are saved into ``staging`` (None: not saved) under
    the names they will have in ``directory``."""
    from snnconvert.evaluate import evaluate, save_evaluation
    from snnconvert.workspace import new_artifact_path

    def final(path: Path) -> Path:
        return directory / path.name if directory is not None else path

    q_path = save(new_artifact_path(staging, "quantized", f"{recipe.quantize.bits}bit"), q) if staging else None
    notify(event("quantize", q_text, q, final(q_path) if q_path else None))
    result = RunResult(q, q_path, directory=directory)
    if recipe.convert is None:
        return result
    convert = recipe.convert
    settings = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in convert.options.items())
    c_text = f"convert to an SNN with {convert.coding}" + (f" ({settings})" if settings else "")
    notify(event("convert", c_text))
    snn = to_snn(q, convert.coding, show_progress=show_progress, **convert.options)
    result.snn = snn
    if staging is not None:
        result.snn_path = save(new_artifact_path(staging, "snn", convert.coding), q, snn,
                               extra={"converted_from": str(final(q_path))})
        result.written.append(result.snn_path)
    notify(event("convert", c_text, snn, final(result.snn_path) if result.snn_path else None))
    if recipe.finetune is not None:
        from snnconvert.finetune import finetune

        section = recipe.finetune
        f_text = f"fine-tune for {section.config.epochs} epoch(s) on {section.data}"
        notify(event("finetune", f_text))
        out_dir = staging / f"finetune-{result.snn_path.stem}" if staging and result.snn_path else None
        tuned = finetune(q, snn, section.config, data=section.data, val_data=section.val_data, out_dir=out_dir,
                         show_progress=show_progress)
        snn = result.snn = tuned.snn
        if out_dir is not None and out_dir.exists():
            result.written.append(out_dir)
        if staging is not None:
            result.snn_path = save(new_artifact_path(staging, "snn", f"{convert.coding}-finetuned"), q, snn,
                                   extra={"finetuned_from": str(final(result.snn_path))})
            result.written.append(result.snn_path)
        notify(event("finetune", f_text, tuned, final(result.snn_path) if result.snn_path else None))
    if recipe.evaluate is not None:
        e_text = f"evaluate on {recipe.evaluate.data or 'the held-out part of ' + recipe.data}"
        notify(event("evaluate", e_text))
        result.report = evaluate(q, snn, recipe.evaluate, show_progress=show_progress)
        if result.snn_path is not None:
            result.report_path = save_evaluation(result.report, result.snn_path)
        notify(event("evaluate", e_text, result.report))
    return result


# ---------------------------------------------------------------------------- save / load


def quantized_manifest(q: QuantizedModel) -> dict[str, Any]:
    return {
        "model": q.info.as_dict(),
        "quantize": asdict(q.config),
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
        config = QuantizeConfig(**m["quantize"])
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
