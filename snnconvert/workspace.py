"""Run directories: where each stage writes its artifact and where the next stage finds it."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from snnconvert.artifact import SUFFIX
from snnconvert.errors import SnnConvertError

DEFAULT_ROOT = Path("snnconvert-runs")
STAGES = ("quantized", "snn")


def run_dir(model_name: str, out: str | Path | None = None, root: Path = DEFAULT_ROOT) -> Path:
    """``out`` if given, else ``./snnconvert-runs/<model>/``."""
    if out is not None:
        return Path(out)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name) or "model"
    return root / safe


def new_artifact_path(directory: Path, stage: str, tag: str) -> Path:
    """A fresh, sortable file name such as ``snn-sws-Tc8-Ts2-20261122-101500.snnc``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)
    base = f"{stage}-{tag}-{stamp}" if tag else f"{stage}-{stamp}"
    path = directory / f"{base}{SUFFIX}"
    n = 1
    while path.exists():
        path = directory / f"{base}-{n}{SUFFIX}"
        n += 1
    return path


def latest_artifact(stages: tuple[str, ...], directory: str | Path | None = None,
                    root: Path = DEFAULT_ROOT) -> Path:
    """The newest artifact of one of ``stages`` in ``directory`` (or in any run under ``root``)."""
    places = [Path(directory)] if directory is not None else sorted(p for p in root.glob("*") if p.is_dir())
    found = [
        f for place in places if place.is_dir() for f in place.glob(f"*{SUFFIX}")
        if f.name.split("-", 1)[0] in stages and not f.name.startswith(".")
    ]
    if not found:
        where = directory or root
        wanted = " or ".join(stages)
        hint = "run `snnconvert quantize MODEL`" if "quantized" in stages else "run `snnconvert to-snn`"
        raise SnnConvertError(f"no {wanted} artifact in {where}/; {hint} first or pass --input PATH")
    return max(found, key=lambda f: (f.stat().st_mtime, f.name))
