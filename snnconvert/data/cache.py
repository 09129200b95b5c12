"""A disk cache of decoded image folders, so that a second run (or a second command) on the same
images skips the JPEG/PNG decoding: 50,000 CIFAR-10 training images are 150 MB of uint8 pixels.

An entry holds the pixels of one list of files after one :class:`~snnconvert.data.transforms.ImageTransform`,
as a plain ``.npy`` array (read with ``allow_pickle=False``). Its key is a SHA-256 over the folder,
the transform, the Pillow version and every file's name, size, modification time and inode, so
a changed, added or removed file gives a new key and the old entry is never read again. Where
the cache lives: ``$SNNCONVERT_CACHE_DIR`` (``off`` disables it), else
``$XDG_CACHE_HOME/snnconvert/decoded``, else ``~/.cache/snnconvert/decoded``; deleting that
folder is always safe. The cache is best effort: a failed read or write only means decoding.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np

CACHE_ENV = "SNNCONVERT_CACHE_DIR"
CACHE_FORMAT = 1
MIN_CACHED_IMAGES = 1024
"""Smaller lists decode in about a second: not worth a file."""
MAX_CACHED_BYTES = 4 << 30
"""Largest entry written (4 GiB)."""


def cache_dir() -> Path | None:
    """Where decoded folders are kept, or None when the cache is off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "none") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "snnconvert" / "decoded"


def cache_key(root: Path, files: list[str], transform: object) -> str | None:
    """The key of ``files`` under ``root`` decoded by ``transform``; None if a file cannot be
    stat'ed (then the decoder reports it)."""
    import PIL

    digest = hashlib.sha256()
    digest.update(f"snnconvert-decoded-v{CACHE_FORMAT}\0{Path(root).resolve()}\0{transform!r}\0"
                  f"{PIL.__version__}\0{len(files)}\0".encode())
    for name in files:
        try:
            info = os.stat(Path(root) / name)
        except OSError:
            return None
        digest.update(f"{name}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}\n".encode())
    return digest.hexdigest()


def load_cached(directory: Path, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached uint8 array of ``shape`` under ``key``, or None (missing, damaged, other shape)."""
    path = Path(directory) / f"{key}.npy"
    expected = int(np.prod(shape))
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size < expected or info.st_size > expected + (1 << 16):
            return None
        stored = np.load(path, mmap_mode="r", allow_pickle=False)
        if stored.dtype != np.uint8 or tuple(stored.shape) != tuple(shape):
            return None
        return np.array(stored)  # into memory; the map is closed with ``stored``
    except (OSError, ValueError, EOFError):
        return None


def store(directory: Path, key: str, images: np.ndarray) -> Path | None:
    """Write ``images`` under ``key`` (atomically); None when it is too large or cannot be written."""
    from snnconvert.atomic import write_atomically
    from snnconvert.errors import SnnConvertError

    if images.dtype != np.uint8 or images.nbytes > MAX_CACHED_BYTES:
        return None
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        return write_atomically(Path(directory) / f"{key}.npy", lambda handle: np.save(handle, images,
                                                                                        allow_pickle=False))
    except (OSError, SnnConvertError):
        return None
