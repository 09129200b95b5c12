"""Training and validation images of a fine-tuning run, kept apart from each other.

Training reads the ``train`` role of ``data``. On the calibration data it uses the
calibration's own seed and ``calib_split`` (so the quantize-time evaluation part stays unseen);
on another single-folder pool it takes ``config.train_split`` of it. Validation reads
``val_data`` (default: the evaluation part of the calibration data, ``pipeline.eval_split``);
when that is the training pool, it takes exactly the images training left out. Both are checked
against the model: the images' channels and size (other data than the calibration data), and
the class folders (``snnconvert.data.classes``; ``config.allow_class_mismatch`` lets them differ).

The data specs alone do not show overlap (``train-subset`` may hold copies of ``train``'s files),
so validation items are compared with the training items by what they read: the resolved real
path of a file (then the sha256 of its bytes, for copies), a CIFAR batch file and index, or a
digits index. Given validation data that shares images with the training data is refused; the
default validation data that does has those images taken out of training (with a note).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from rich.markup import escape
from torch import Tensor

from snnconvert.core import QuantizedModel, check_data_matches, eval_split
from snnconvert.data import DataSplit, load_split, materialize, needs_holdout, parse_data_spec, pool_key
from snnconvert.data.cifar import batch_folder
from snnconvert.data.datasets import TensorImageDataset
from snnconvert.errors import SnnConvertError
from snnconvert.finetune.config import FinetuneConfig
from snnconvert.limits import shorten
from snnconvert.options import opt


@dataclass
class TrainingData:
    split: DataSplit  # materialized
    seed: int
    share: float  # calib_split used to carve training images from a single pool
    notes: list[str] = field(default_factory=list)  # e.g. validation images taken out of training


def _refuse_test_folder(data: str) -> None:
    spec = parse_data_spec(data)
    if spec.kind in ("imagefolder", "imagenet") and Path(pool_key(spec, "train")).name.lower() == "test":
        raise SnnConvertError(f"refusing to train on {data}: it is a test folder (train on training images)")


def training_data(quantized: QuantizedModel, data: str, config: FinetuneConfig, *,
                  show_progress: bool = False) -> TrainingData:
    """The materialized training split of ``data`` (see module docstring)."""
    _refuse_test_folder(data)
    calib = quantized.calibration
    if data != calib.spec and not quantized.info.source.endswith("/random"):
        check_data_matches(quantized.info.name, quantized.info.input_spec, data, calibrated_on=calib.spec)
    on_calibration = pool_key(data, "train") == pool_key(calib.spec, "calib")
    seed, share = (calib.seed, calib.calib_split) if on_calibration else (config.seed, config.train_split)
    split = load_split(data, "train", quantized.info.input_spec, seed=seed, calib_split=share,
                       classes=quantized.info.class_check(config.allow_class_mismatch))
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
                           calib_split=train.share, holdout=True,
                           classes=quantized.info.class_check(config.allow_class_mismatch))
    else:
        split = eval_split(quantized, val_data, limit=config.val_limit,
                           allow_class_mismatch=config.allow_class_mismatch)
    shared = shared_items(split, train.split)
    if shared:
        example = escape(shorten(split.sample_ids[shared[0]]))
        if val_data is not None:
            raise SnnConvertError(
                f"validation data {escape(repr(shorten(val_data)))} shares {len(shared):,} of its {len(split):,} "
                f"images with the training data {escape(repr(shorten(data)))} (e.g. {example}): give "
                f"{opt('finetune', 'val_data')} "
                f"images outside the training data, or leave it out to validate on images taken out of training")
        train.split = _without(train.split, split)
        if len(train.split) == 0:
            raise SnnConvertError(
                f"every training image of {escape(repr(shorten(data)))} is also a validation image: give "
                f"{opt('finetune', 'val_data')} or "
                f"other training data")
        train.notes.append(
            f"the {len(shared):,} validation images of {escape(repr(shorten(target)))} that are also training images "
            f"(e.g. {example}) were taken out of training: {len(train.split):,} training images remain")
    return materialize(split, progress=show_progress)


def _locations(split: DataSplit) -> tuple[list[str], list[Path] | None]:
    """What each item reads, as comparable strings, and the files (None when items are not files)."""
    spec = split.spec
    if spec.kind in ("imagefolder", "imagenet", "events") and spec.path is not None:
        files = [spec.path / sid for sid in split.sample_ids]
        return [os.path.realpath(f) for f in files], files
    if spec.kind == "cifar10" and spec.path is not None:
        folder = os.path.realpath(batch_folder(spec.path))
        return [f"{folder}/{sid.split(':', 1)[1]}" for sid in split.sample_ids], None
    return list(split.sample_ids), None  # digits:<index into the bundled set>


def _digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def matches(split: DataSplit, other: DataSplit) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``: item ``i`` of ``split`` reads what item ``j`` of ``other`` reads (the same
    resolved file, a file with the same bytes, the same CIFAR batch index or digits index)."""
    where, files = _locations(split)
    other_where, other_files = _locations(other)
    index = {w: i for i, w in enumerate(where)}
    pairs = {(index[w], j) for j, w in enumerate(other_where) if w in index}
    if files is not None and other_files is not None:  # copies: same size, then same sha256
        by_size: dict[int, list[int]] = {}
        for i, f in enumerate(files):
            by_size.setdefault(os.path.getsize(f), []).append(i)
        digests: dict[str, list[int]] = {}
        for j, f in enumerate(other_files):
            candidates = by_size.get(os.path.getsize(f))
            if not candidates:
                continue
            if not digests:
                for i in (i for group in by_size.values() for i in group):
                    digests.setdefault(_digest(files[i]), []).append(i)
            pairs.update((i, j) for i in digests.get(_digest(f), ()))
    return sorted(pairs)


def shared_items(split: DataSplit, other: DataSplit) -> list[int]:
    """Indices of the items of ``split`` that ``other`` also holds (see :func:`matches`)."""
    return sorted({i for i, _ in matches(split, other)})


def _without(train: DataSplit, val: DataSplit) -> DataSplit:
    """``train`` without the items that are also items of ``val``."""
    drop = {j for _, j in matches(val, train)}
    keep = [k for k in range(len(train)) if k not in drop]
    dataset = train.dataset
    index = torch.tensor(keep, dtype=torch.long)
    if isinstance(dataset, TensorImageDataset):
        subset = TensorImageDataset(dataset.images[index], dataset.labels[index.numpy()], dataset.adapt)
    else:
        from torch.utils.data import Subset

        subset = Subset(dataset, keep)
    return replace(train, dataset=subset, sample_ids=[train.sample_ids[k] for k in keep],
                   description=f"{train.description}; {len(drop):,} validation images left out")


def stacked(split: DataSplit) -> tuple[Tensor, Tensor]:
    """All images and labels of a (materialized) split as two tensors."""
    items = [split.dataset[i] for i in range(len(split))]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])
