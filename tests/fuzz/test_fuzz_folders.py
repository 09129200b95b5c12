"""Odd data folders (issue 29, class 3): symlink loops, FIFOs, empty or unreadable images and image
bombs, read the way ``evaluate`` and ``quantize`` read them. A clean error or a load, never a hang."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest
from fuzzing import DATA, LARGE, attempt, workdir

from snnconvert.data import load_split, materialize
from snnconvert.ingest.loader import load_model

SPEC = load_model("lenet5", "random").input_spec


def _png_bytes(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` pixels, with a tiny (truncated) body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")


def _image(path: Path, value: int = 10) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), value).save(path)


def _good(root: Path, classes: int = 2, per: int = 3) -> None:
    for c in range(classes):
        for i in range(per):
            _image(root / str(c) / f"{i}.png", c * 50 + i)


def _layout(name: str, root: Path) -> None:
    root.mkdir()
    if name == "empty folder":
        return
    _good(root)
    if name == "symlink loop to itself":
        (root / "0" / "loop").symlink_to(root / "0")
    elif name == "symlink loop to the root":
        (root / "1" / "up").symlink_to(root)
    elif name == "class folder is a link to itself":
        (root / "2").symlink_to(root / "2")
    elif name == "FIFO image":
        os.mkfifo(root / "0" / "pipe.png")
    elif name == "zero-byte image":
        (root / "0" / "empty.png").write_bytes(b"")
    elif name == "text as an image":
        (root / "1" / "x.png").write_text("not an image")
    elif name == "image bomb header":
        (root / "0" / "bomb.png").write_bytes(_png_bytes(100_000, 100_000))
    elif name == "image is a directory":
        (root / "0" / "dir.png").mkdir()
    elif name == "dangling image link":
        (root / "0" / "gone.png").symlink_to("/nonexistent.png")
    elif name == "image link to /dev/zero":
        (root / "0" / "zero.png").symlink_to("/dev/zero")
    elif name == "unicode and newline names":
        _image(root / "ç\nat" / "é\n.png")
        _image(root / "[red]x[/red]" / "a.png")
    elif name == "300-character class name":
        _image(root / ("c" * 250) / "a.png")
    elif name == "one class only":
        for path in (root / "1").iterdir():
            path.unlink()
        (root / "1").rmdir()
    elif name == "deep nesting":
        deep = root / "0"
        for _ in range(60):
            deep = deep / "d"
        _image(deep / "a.png")
    elif name == "hidden files only":
        for c in ("0", "1"):
            for path in (root / c).iterdir():
                path.rename(path.with_name("." + path.name))
    elif name == "train and val split, val empty":
        os.rename(root / "0", root / "tmp")
        (root / "train").mkdir()
        os.rename(root / "tmp", root / "train" / "0")
        (root / "val").mkdir()
    elif name == "many empty class folders":
        for i in range(2, 3000 if LARGE else 300):
            (root / f"k{i}").mkdir()
    elif name == "unreadable class folder":
        os.chmod(root / "1", 0)


LAYOUTS = ["empty folder", "symlink loop to itself", "symlink loop to the root", "class folder is a link to itself",
           "FIFO image", "zero-byte image", "text as an image", "image bomb header", "image is a directory",
           "dangling image link", "image link to /dev/zero", "unicode and newline names", "300-character class name",
           "one class only", "deep nesting", "hidden files only", "train and val split, val empty",
           "many empty class folders", "unreadable class folder", "plain"]


@pytest.mark.parametrize("role", ["eval", "calib"])
@pytest.mark.parametrize("name", LAYOUTS)
def test_odd_data_folders(name: str, role: str) -> None:
    with workdir() as folder:
        root = folder / "data"
        _layout(name, root)
        keep = tuple(os.path.relpath(os.path.join(r, n), folder) for r, ds, fs in os.walk(folder) for n in ds + fs)

        def load() -> None:
            split = load_split(f"imagefolder:{root}", role, SPEC, limit=16)
            materialize(split)

        attempt(load, folder, keep=keep, category=DATA, inputs=[] if name in ("FIFO image",) else [root])

