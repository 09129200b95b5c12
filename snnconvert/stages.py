"""The quantize and convert stages: :func:`quantize` (ingest, prepare, calibrate, PTQ / QAT)
and :func:`to_snn` (a coding's conversion of a quantized model)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnconvert.codings import Coding, ConversionInputs, build_config, coding_for, get_coding
from snnconvert.codings.common import keep_dropout
from snnconvert.core import (
    AccuracyPair,
    CalibrationRecord,
    ModelInfo,
    QuantizedModel,
    check_data_matches,
    conversion_inputs,
    eval_split,
    top1,
)
from snnconvert.data import InputSpec, load_split, make_loader, materialize
from snnconvert.data.classes import ClassCheck, known_class_names
from snnconvert.errors import SnnConvertError
from snnconvert.graph import PrepareConfig, prepare
from snnconvert.ingest import LoadedModel, load_model
from snnconvert.limits import shorten, time_steps_of
from snnconvert.manifest_check import MAX_CLASSES
from snnconvert.options import opt
from snnconvert.quantize import (
    QuantizeConfig,
    layer_records,
    quantize_graph,
)
from snnconvert.simulate.memory import check_simulation_memory
from snnconvert.simulate.network import SpikingNetwork


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
            raise SnnConvertError(f"{loaded.name} takes {want} images and has no default data; give "
                                  f"{opt('quantize', 'data')} (imagefolder:PATH, cifar10:PATH or imagenet:PATH)")
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
    if isinstance(model, (str, Path)):
        from snnconvert.ingest.formats import format_for

        _, fmt = format_for(str(model))
        if fmt.prequantized is not None and fmt.prequantized(str(model)):  # its own scales: no re-calibration
            if data is None:
                raise SnnConvertError(f"{model}: give {opt('quantize', 'data')} (an ONNX model has no default data)")
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
    config = QuantizeConfig(bits=imported.act_bits, weight_bits=imported.weight_bits, clip_method="max",
                            calib_limit=None)
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
        raise SnnConvertError(f"coding {coding} with these options needs calibration data (the quantize step's "
                              f"{opt('quantize', 'data')})")
    snn = entry.convert(inputs, config)
    keep_dropout(snn.body, int(snn.info.get("frames", 1)))
    snn.eval()  # inference mode, as the quantized ANN is: dropout is off until a training loop turns it on
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
