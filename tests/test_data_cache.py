"""The disk cache of decoded image folders (issue 24, item 4): the same tensors as decoding, a
new key whenever a file changes, and a damaged entry is never trusted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from snnconvert.data import InputSpec, load_split, materialize
from snnconvert.data import cache as disk

SPEC = InputSpec(3, (8, 8), None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two class folders of 12 random 8x8 PNGs; the cache in tmp_path/cache, used from 4 images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for c in ("0", "1"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i:02d}.png")
    monkeypatch.setenv(disk.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(disk, "MIN_CACHED_IMAGES", 4)
    return root


def _images(root: Path, cache: bool = True) -> torch.Tensor:
    split = load_split(f"imagefolder:{root}", "train", SPEC, seed=0)
    return materialize(split, cache=cache).dataset.images


def _entries(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("*.npy"))


def test_a_cached_run_gives_the_same_tensors(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = _images(folder, cache=False)
    assert _entries(tmp_path) == []
    first = _images(folder)
    assert len(_entries(tmp_path)) == 1 and torch.equal(first, decoded) and first.dtype == torch.uint8

    from snnconvert.data import datasets

    def no_decoding(self, index):  # noqa: ANN001, ANN202 - only pixels(0) (the shape) may be read
        if index != 0:
            raise AssertionError("decoded although cached")
        return real(self, index)

    real = datasets.FileImageDataset.pixels
    monkeypatch.setattr(datasets.FileImageDataset, "pixels", no_decoding)
    assert torch.equal(_images(folder), decoded)


def test_a_changed_file_makes_a_new_entry(folder: Path, tmp_path: Path) -> None:
    before = _images(folder)
    target = folder / "1" / "05.png"
    Image.fromarray(np.full((8, 8, 3), 7, dtype=np.uint8)).save(target)
    os.utime(target, ns=(1, 1))  # even with an old time stamp: the size or inode differs
    after = _images(folder)
    assert len(_entries(tmp_path)) == 2
    changed = [i for i in range(len(after)) if not torch.equal(after[i], before[i])]
    assert len(changed) == 1 and int(after[changed[0]].float().mean()) == 7


def test_a_damaged_entry_is_decoded_again(folder: Path, tmp_path: Path) -> None:
    expected = _images(folder)
    (entry,) = _entries(tmp_path)
    entry.write_bytes(entry.read_bytes()[:-10])  # truncated
    assert torch.equal(_images(folder), expected)
    np.save(entry, np.zeros((3, 3), dtype=np.uint8))  # another shape under the same key
    assert torch.equal(_images(folder), expected)


def test_the_cache_can_be_switched_off(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(disk.CACHE_ENV, "off")
    assert disk.cache_dir() is None
    _images(folder)
    assert not (tmp_path / "cache").exists()


def test_small_lists_are_not_cached(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk, "MIN_CACHED_IMAGES", 10_000)
    _images(folder)
    assert _entries(tmp_path) == []
