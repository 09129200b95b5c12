"""Atomic file writes: a temporary file in the target's folder, renamed over the target.

A failed or interrupted write leaves the target as it was and no temporary file behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None], *, suffix: str = ".tmp") -> Path:
    """Create ``path`` (and its folder) with the bytes ``write(handle)`` produces, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_json_atomically(path: str | Path, data: Any) -> Path:
    """``data`` as indented JSON (values JSON cannot hold are written as strings)."""
    text = json.dumps(data, indent=2, default=str).encode()
    return write_atomically(path, lambda handle: handle.write(text))
