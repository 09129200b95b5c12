"""Where the bundled weights live: the repository's top-level ``models/`` directory."""

from __future__ import annotations

import os
from pathlib import Path

import snnconvert
from snnconvert.errors import SnnConvertError
from snnconvert.models.registry import BundledArch

MODELS_DIR_ENV = "SNNCONVERT_MODELS_DIR"


def models_dir() -> Path:
    """The bundled weights directory (``$SNNCONVERT_MODELS_DIR`` overrides the default)."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(snnconvert.__file__).resolve().parents[1] / "models"


def bundled_weights_path(arch: BundledArch) -> Path | None:
    """Path of the bundled weights of ``arch`` (``None`` if it has none; may not exist)."""
    return models_dir() / arch.weights_file if arch.weights_file else None


def require_bundled_weights(arch: BundledArch) -> Path:
    """The existing bundled weights file of ``arch``, or a one-line error saying what to do."""
    path = bundled_weights_path(arch)
    if path is None:
        example = "../shared/data/resnet20-cifar10.th" if arch.name == "resnet20" else "FILE"
        raise SnnConvertError(
            f"{arch.name} has no bundled weights; pass a checkpoint with --weights FILE "
            f"(e.g. --weights {example}) or use --weights random"
        )
    if not path.is_file():
        how = arch.train_command or f"set ${MODELS_DIR_ENV} to the directory holding it"
        raise SnnConvertError(
            f"bundled weights {path} for {arch.name} are missing; run `{how}` from the "
            "repository root (or pass --weights FILE)"
        )
    return path
