"""``load_split``: the calibration, training or evaluation items of a data spec.

Calibration and evaluation never see the same images: naturally split data (digits, cifar10,
``imagefolder`` with ``train/`` + ``val/``/``test/``, ``imagenet`` with ``train/``) read
different files per role; a single shared pool is partitioned by a seeded, class-stratified
``calib_split`` fraction (calib/train) and its exact complement (eval with ``holdout=True``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from snnconvert.data.cifar import cifar10_pool
from snnconvert.data.classes import ClassCheck, match_classes
from snnconvert.data.datasets import TensorImageDataset
from snnconvert.data.folders import imagefolder_pool, imagenet_pool
from snnconvert.data.input_spec import InputSpec
from snnconvert.data.kinds import DATA_KINDS
from snnconvert.data.pool import ROLES, Pool
from snnconvert.data.sampling import interleaved_order, stratified_partition, stratified_sample
from snnconvert.data.specs import DataSpec, as_spec
from snnconvert.data.transforms import ImageTransform
from snnconvert.errors import SnnConvertError


@dataclass
class DataSplit:
    """The items of one role. calib/train items come in a seeded class-mixed order (so any
    prefix is representative); eval items keep the pool's order (class, then file)."""

    dataset: Dataset  # items (x float32 (C, H, W) in [0, 1], y int)
    sample_ids: list[str]
    class_names: list[str]
    spec: DataSpec
    role: str  # "calib" | "train" | "eval"
    description: str

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """First 16 hex digits of the sha256 of the newline-joined sample ids (in order)."""
        return hashlib.sha256("\n".join(self.sample_ids).encode("utf-8")).hexdigest()[:16]


def _digits_pool(role: str, input_spec: InputSpec) -> Pool:
    from snnconvert.data.digits import DIGITS_CLASSES, digits_arrays  # sklearn: import lazily

    part = "test" if role == "eval" else "train"
    x, y, ids = digits_arrays(part)
    target = (input_spec.channels, (int(input_spec.size[0]), int(input_spec.size[1])))
    adapt = None if target == (1, (8, 8)) else target
    labels = y.numpy().astype(np.int64)

    def build(positions: np.ndarray) -> TensorImageDataset:
        index = torch.from_numpy(positions)
        return TensorImageDataset(x[index], labels[positions], adapt)

    notes = []
    if adapt is not None:
        notes.append(f"8x8 gray adapted to {target[0]}x{target[1][0]}x{target[1][1]}")
    return Pool(
        f"digits {part}",
        [f"digits:{i}" for i in ids],
        labels,
        list(DIGITS_CLASSES),
        build,
        notes=notes,
    )


def _pool(spec: DataSpec, role: str, input_spec: InputSpec) -> Pool:
    kind = DATA_KINDS.get(spec.kind)
    return kind.call(kind.pool, spec, role, input_spec)


def digits_pool(spec: DataSpec, role: str, input_spec: InputSpec) -> Pool:
    """The ``digits`` kind's pool (scikit-learn's bundled 8x8 digits)."""
    return _digits_pool(role, input_spec)


def digits_pool_key(spec: DataSpec, role: str) -> str:
    return "digits:test" if role == "eval" else "digits:train"


def digits_classes() -> list[str]:
    return [str(i) for i in range(10)]  # data.digits.DIGITS_CLASSES, without importing scikit-learn


def imagefolder_kind_pool(spec: DataSpec, role: str, input_spec: InputSpec) -> Pool:
    return imagefolder_pool(spec, role, ImageTransform.from_input_spec(input_spec))


def imagenet_kind_pool(spec: DataSpec, role: str, input_spec: InputSpec) -> Pool:
    return imagenet_pool(spec, role, ImageTransform.from_input_spec(input_spec))


def cifar10_kind_pool(spec: DataSpec, role: str, input_spec: InputSpec) -> Pool:
    return cifar10_pool(spec, role, ImageTransform.from_input_spec(input_spec))


def _check_args(role: str, limit: int | None, calib_split: float) -> None:
    if role not in ROLES:
        raise SnnConvertError(f"unknown data role {role!r}; use one of {', '.join(ROLES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise SnnConvertError(f"limit must be a positive number of images, got {limit!r}")
    if not isinstance(calib_split, (int, float)) or not 0.0 < float(calib_split) <= 1.0:
        raise SnnConvertError(f"calib_split must be in (0, 1], got {calib_split!r}")


def load_split(
    spec: DataSpec | str,
    role: str,
    input_spec: InputSpec,
    *,
    limit: int | None = None,
    seed: int = 0,
    calib_split: float = 0.2,
    holdout: bool = False,
    classes: ClassCheck | None = None,
) -> DataSplit:
    """Load the ``role`` items of ``spec`` as raw pixels shaped by ``input_spec``.

    On a shared pool (single-pool ``imagefolder``, ``imagenet`` without ``train/``) calib/train
    take a seeded class-stratified ``calib_split`` fraction; eval takes all of it, or with
    ``holdout=True`` exactly the complement (use the same ``seed`` and ``calib_split`` as for
    calibration; ``needs_holdout`` says when). ``holdout`` is ignored on naturally split data.
    ``limit`` then draws a seeded, class-stratified sample (largest-remainder allocation).
    With ``classes`` the pool's class folders are checked against the model's classes and
    relabelled by name where they differ only in order (see ``snnconvert.data.classes``).
    """
    spec = as_spec(spec)
    _check_args(role, limit, calib_split)
    pool = _pool(spec, role, input_spec)
    positions = np.arange(len(pool.ids), dtype=np.int64)
    notes = list(pool.notes)
    if classes is not None:
        remap, pool.class_names, note = match_classes(pool.class_names, classes, pool.where)
        if remap is not None:
            pool.labels[:] = remap[pool.labels]  # in place: the pool's build reads this array
        if note:
            notes.append(note)
    if pool.shared:
        part, rest = stratified_partition(pool.labels, float(calib_split), seed)
        if role != "eval":
            positions = part
            notes.append(f"calib_split {calib_split:g} of {len(pool.ids):,}, seed {seed}")
        elif holdout:
            if len(rest) == 0:
                raise SnnConvertError(
                    f"nothing left to evaluate in {pool.where}: calib_split {calib_split:g} "
                    f"takes all {len(pool.ids):,} images; lower calib_split or give separate data"
                )
            positions = rest
            notes.append(f"held out from calib_split {calib_split:g}, seed {seed}")
    available = len(positions)
    if limit is not None and limit < available:
        positions = positions[stratified_sample(pool.labels[positions], limit, seed)]
        count = f"{len(positions):,} of {available:,} images (stratified, seed {seed})"
    elif limit is not None and limit > available:
        count = f"all {available:,} images (limit {limit:,} exceeds the pool)"
    else:
        count = f"{available:,} images"
    if role != "eval":
        positions = positions[interleaved_order(len(positions), seed)]
    description = f"{pool.where}: {count}" + "".join(f"; {n}" for n in notes)
    return DataSplit(
        dataset=pool.build(positions),
        sample_ids=[pool.ids[p] for p in positions],
        class_names=list(pool.class_names),
        spec=spec,
        role=role,
        description=description,
    )


def pool_key(spec: DataSpec | str, role: str) -> str:
    """A string naming the files ``role`` draws from (no files are read)."""
    spec = as_spec(spec)
    kind = DATA_KINDS.get(spec.kind)
    return kind.call(kind.pool_key, spec, role)


def needs_holdout(calib: DataSpec | str, eval_: DataSpec | str) -> bool:
    """True if calibrating on ``calib`` and evaluating on ``eval_`` would read the same pool,
    i.e. the eval ``load_split`` must pass ``holdout=True`` (with the same seed/calib_split)."""
    return pool_key(calib, "calib") == pool_key(eval_, "eval")
