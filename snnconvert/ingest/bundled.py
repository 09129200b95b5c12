"""Where the bundled weights live: package data in ``snnconvert.assets`` (or ``$SNNCONVERT_MODELS_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

from snnconvert.assets import asset_path, assets_dir
from snnconvert.errors import SnnConvertError
from snnconvert.models.registry import BundledArch
from snnconvert.options import opt

MODELS_DIR_ENV = "SNNCONVERT_MODELS_DIR"


def models_dir() -> Path:
    """The bundled weights directory (``$SNNCONVERT_MODELS_DIR`` overrides the default)."""
    override = _override_dir()
    return override if override is not None else assets_dir()


def _override_dir() -> Path | None:
    override = os.environ.get(MODELS_DIR_ENV)
    return Path(override).expanduser() if override else None


def bundled_weights_path(arch: BundledArch) -> Path | None:
    """Path of the bundled weights of ``arch`` (``None`` if it has none; may not exist)."""
    if not arch.weights_file:
        return None
    override = _override_dir()
    return override / arch.weights_file if override is not None else asset_path(arch.weights_file)


def require_bundled_weights(arch: BundledArch) -> Path:
    """The existing bundled weights file of ``arch``, or a one-line error saying what to do."""
    path = bundled_weights_path(arch)
    if path is None:
        example = "../shared/data/resnet20-cifar10.th" if arch.name == "resnet20" else "FILE"
        weights = opt("quantize", "weights", assign=True)
        raise SnnConvertError(
            f"{arch.name} has no bundled weights; pass a checkpoint with {weights}FILE "
            f"(e.g. {weights}{example}) or use {weights}random"
        )
    if not path.is_file():
        how = arch.train_command or f"set ${MODELS_DIR_ENV} to the directory holding it"
        raise SnnConvertError(
            f"bundled weights {path} for {arch.name} are missing; run `{how}` from the "
            f"repository root (or pass {opt('quantize', 'weights', assign=True)}FILE)"
        )
    return path
