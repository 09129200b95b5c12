"""A role's candidate items before partitioning and sampling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from snnconvert.data.specs import DataSpec
from snnconvert.errors import SnnConvertError

ROLES = ("calib", "train", "eval")


@dataclass
class Pool:
    """Every item one role may draw from.

    ``build(positions)`` makes the dataset of the chosen positions (in that order), reading their
    labels from ``labels`` when called (a relabelling updates that array in place). ``shared``
    means calibration and evaluation draw from this same pool, so they are kept apart by the
    seeded ``calib_split`` partition.
    """

    where: str
    ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    build: Callable[[np.ndarray], Dataset]
    shared: bool = False
    notes: list[str] = field(default_factory=list)


def require_dir(spec: DataSpec) -> Path:
    """The spec's folder, or a one-line error if it is missing or not a folder."""
    path = spec.path
    if path is None:
        raise SnnConvertError(f"data spec {spec.text!r} needs a path: write {spec.kind}:PATH")
    if not path.exists():
        raise SnnConvertError(f"data folder not found: {path} (from {spec.text!r}); check the path")
    if not path.is_dir():
        raise SnnConvertError(f"{path} is a file, not a folder (from {spec.text!r})")
    return path
