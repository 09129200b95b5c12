"""Run directories: where each stage writes its artifact and where the next stage finds it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from snnconvert.artifact import SUFFIX
from snnconvert.atomic import MAX_NAME_TRIES, remove_stale_temporaries, reserve_name
from snnconvert.errors import SnnConvertError
from snnconvert.options import opt

DEFAULT_ROOT = Path("snnconvert-runs")
STAGES = ("quantized", "snn")


def run_dir(model_name: str, out: str | Path | None = None, root: Path = DEFAULT_ROOT) -> Path:
    """``out`` if given, else ``./snnconvert-runs/<model>/``."""
    if out is not None:
        return Path(out)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name) or "model"
    return root / safe


MAX_TAG_CHARS = 80


def new_artifact_path(directory: Path, stage: str, tag: str) -> Path:
    """A fresh, sortable file name such as ``snn-sws-Tc8-Ts2-20261122-101500.snnc``, reserved
    atomically for this process (see :func:`snnconvert.atomic.reserve_name`): processes saving
    at the same instant get different names (``...-1.snnc``, ``...-2.snnc``)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)[:MAX_TAG_CHARS]
    base = f"{stage}-{tag}-{stamp}" if tag else f"{stage}-{stamp}"
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        what = "is a file" if directory.is_file() else f"cannot be created ({exc.strerror or exc})"
        raise SnnConvertError(f"run directory {directory} {what}; pass a writable folder with {opt('run', 'out')}") \
            from None
    names = (directory / (f"{base}-{n}{SUFFIX}" if n else f"{base}{SUFFIX}") for n in range(MAX_NAME_TRIES))
    try:
        return reserve_name(names)
    except FileExistsError:
        raise SnnConvertError(f"no free artifact name in {directory}; remove old artifacts") from None
    except OSError as exc:
        raise SnnConvertError(f"cannot write into {directory} ({exc.strerror or exc}); pass a writable "
                              f"{opt('run', 'out')}") \
            from None


def latest_artifact(stages: tuple[str, ...], directory: str | Path | None = None,
                    root: Path = DEFAULT_ROOT) -> Path:
    """The newest artifact of one of ``stages`` in ``directory`` (or in any run under ``root``)."""
    places = [Path(directory)] if directory is not None else sorted(p for p in root.glob("*") if p.is_dir())
    for place in places:  # leftovers of killed writers (temporaries, name reservations) go first
        remove_stale_temporaries(place)
    found = [
        f for place in places if place.is_dir() for f in place.glob(f"*{SUFFIX}")
        if f.name.split("-", 1)[0] in stages and not f.name.startswith(".")
    ]
    if not found:
        where = directory or root
        wanted = " or ".join(stages)
        hint = "run `snnconvert quantize MODEL`" if "quantized" in stages else "run `snnconvert to-snn`"
        raise SnnConvertError(f"no {wanted} artifact in {where}/; {hint} first or pass {opt('load', 'input')} PATH")
    return max(found, key=lambda f: (f.stat().st_mtime, f.name))


def save_new_artifact(directory: str | Path, stage: str, tag: str, write: Callable[[Path], Path]) -> Path:
    """``write`` a new artifact under a fresh name in ``directory`` (:func:`new_artifact_path`);
    if the write fails, the folders this call created are removed again (nothing left behind)."""
    from snnconvert.atomic import _missing_folders, _remove_folders

    made = _missing_folders(Path(directory))
    try:
        return write(new_artifact_path(Path(directory), stage, tag))
    except BaseException:
        _remove_folders(made)
        raise
