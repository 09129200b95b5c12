"""Training and validation images of a fine-tuning run, kept apart from each other.

Training reads the ``train`` role of ``data``. On the calibration data it uses the
calibration's own seed and ``calib_split`` (so the quantize-time evaluation part stays unseen);
on another single-folder pool it takes ``config.train_split`` of it. Validation reads
``val_data`` (default: the evaluation part of the calibration data, ``pipeline.eval_split``);
when that is the training pool, it takes exactly the images training left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from snnconvert.data import DataSplit, load_split, materialize, needs_holdout, parse_data_spec, pool_key
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.pipeline import QuantizedModel, eval_split


@dataclass
class TrainingData:
    split: DataSplit  # materialized
    seed: int
    share: float  # calib_split used to carve training images from a single pool


def _refuse_test_folder(data: str) -> None:
    spec = parse_data_spec(data)
    if spec.kind in ("imagefolder", "imagenet") and Path(pool_key(spec, "train")).name.lower() == "test":
        raise SnnConvertError(f"refusing to train on {data}: it is a test folder (train on training images)")


def training_data(quantized: QuantizedModel, data: str, config: FinetuneConfig, *,
                  show_progress: bool = False) -> TrainingData:
    """The materialized training split of ``data`` (see module docstring)."""
    _refuse_test_folder(data)
    calib = quantized.calibration
    on_calibration = pool_key(data, "train") == pool_key(calib.spec, "calib")
    seed, share = (calib.seed, calib.calib_split) if on_calibration else (config.seed, config.train_split)
    split = load_split(data, "train", quantized.info.input_spec, seed=seed, calib_split=share)
    if len(split) == 0:
        raise SnnConvertError(f"no training images in {data}")
    return TrainingData(materialize(split, progress=show_progress), seed, share)


def validation_data(quantized: QuantizedModel, data: str, val_data: str | None, train: TrainingData,
                    config: FinetuneConfig, *, show_progress: bool = False) -> DataSplit | None:
    """The materialized validation split, disjoint from training and calibration; None when
    ``config.val_limit == 0``."""
    if config.val_limit == 0:
        return None
    target = val_data or quantized.calibration.spec
    if needs_holdout(data, target):
        split = load_split(target, "eval", quantized.info.input_spec, limit=config.val_limit, seed=train.seed,
                           calib_split=train.share, holdout=True)
    else:
        split = eval_split(quantized, val_data, limit=config.val_limit)
    return materialize(split, progress=show_progress)


def stacked(split: DataSplit) -> tuple[Tensor, Tensor]:
    """All images and labels of a (materialized) split as two tensors."""
    items = [split.dataset[i] for i in range(len(split))]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])
