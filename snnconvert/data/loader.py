"""Batching (``make_loader``) and one-pass decoding into memory (``materialize``)."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from snnconvert.data.datasets import ArrayImageDataset, ByteImageDataset, FileImageDataset, TensorImageDataset
from snnconvert.data.split import DataSplit
from snnconvert.errors import SnnConvertError

_CHUNK = 256  # images decoded per worker task
_PARALLEL_MIN = 2048  # below this, worker start-up costs more than it saves


def make_loader(
    split: DataSplit,
    batch_size: int = 128,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """Batches ``(x, y)`` of ``split`` in dataset order, or in a seeded shuffled order.

    With ``num_workers > 0`` an unreadable file surfaces as torch's multi-line worker error;
    use ``materialize`` first (or ``num_workers=0``) for the one-line ``SnnConvertError``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise SnnConvertError(f"batch size must be a positive int, got {batch_size!r}")
    if num_workers < 0:
        raise SnnConvertError(f"num_workers must be >= 0, got {num_workers!r}")
    generator = torch.Generator().manual_seed(int(seed) % (1 << 63)) if shuffle else None
    return DataLoader(
        split.dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        drop_last=False,
    )


class _Chunks(Dataset):
    """Chunk ``k`` of a byte dataset as one uint8 array, or the error message it raised."""

    def __init__(self, dataset: ByteImageDataset, chunk: int) -> None:
        self.dataset = dataset
        self.chunk = chunk

    def __len__(self) -> int:
        return (len(self.dataset) + self.chunk - 1) // self.chunk

    def __getitem__(self, k: int) -> tuple[np.ndarray | None, str | None]:
        stop = min(len(self.dataset), (k + 1) * self.chunk)
        try:
            return np.stack([self.dataset.pixels(i) for i in range(k * self.chunk, stop)]), None
        except SnnConvertError as exc:
            return None, str(exc)


def _keep(batch: tuple[np.ndarray | None, str | None]) -> tuple[np.ndarray | None, str | None]:
    return batch


def _memory_budget() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):
        return None


def _check_memory(n: int, shape: tuple[int, ...], itemsize: int) -> None:
    need = n * int(np.prod(shape)) * itemsize
    budget = _memory_budget()
    if budget is not None and need > budget:
        raise SnnConvertError(
            f"keeping {n:,} images of {'x'.join(map(str, shape))} in memory needs "
            f"{need / 2**30:.1f} GiB (over half the RAM); pass a smaller limit"
        )


class _Progress:
    """Decoding progress (a bar on a terminal, plain-text lines otherwise); closes itself when done."""

    def __init__(self, total: int, enabled: bool) -> None:
        from snnconvert.progress import Progress

        self.total = total
        self.bar: Progress | None = None
        if enabled and total > 0:
            self.bar = Progress("decoding images", total=total).__enter__()

    def update(self, done: int) -> None:
        if self.bar is None:
            return
        self.bar.update(done)
        if done >= self.total:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _worker_count() -> int:
    """Usable cores (at most 4); 1 inside daemon processes, which may not have children."""
    if multiprocessing.current_process().daemon:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores, 4)


def _decode_bytes(dataset: ByteImageDataset, progress: _Progress) -> np.ndarray:
    n = len(dataset)
    first = dataset.pixels(0)
    _check_memory(n, first.shape, 1)
    out = np.empty((n, *first.shape), dtype=np.uint8)
    workers = _worker_count()
    if workers > 1 and n >= _PARALLEL_MIN:
        chunks = DataLoader(
            _Chunks(dataset, _CHUNK), batch_size=None, num_workers=workers, collate_fn=_keep
        )
        for k, (pixels, error) in enumerate(chunks):
            if error is not None:
                raise SnnConvertError(error)
            out[k * _CHUNK : k * _CHUNK + len(pixels)] = pixels
            progress.update(k * _CHUNK + len(pixels))
    else:
        for i in range(n):
            out[i] = dataset.pixels(i)
            if i % _CHUNK == 0 or i == n - 1:
                progress.update(i + 1)
    return out


def _decode_files(dataset: ByteImageDataset, progress: _Progress, cache: bool) -> np.ndarray:
    """:func:`_decode_bytes`, through the disk cache of decoded folders (:mod:`snnconvert.data.cache`)
    for image files when ``cache`` and the list is large enough to be worth it."""
    from snnconvert.data import cache as disk

    directory = disk.cache_dir() if cache else None
    if directory is None or not isinstance(dataset, FileImageDataset) or len(dataset) < disk.MIN_CACHED_IMAGES:
        return _decode_bytes(dataset, progress)
    key = disk.cache_key(dataset.root, dataset.files, dataset.transform)
    if key is None:
        return _decode_bytes(dataset, progress)
    shape = (len(dataset), *dataset.pixels(0).shape)
    found = disk.load_cached(directory, key, shape)
    if found is not None:
        progress.update(len(dataset))
        return found
    images = _decode_bytes(dataset, progress)
    disk.store(directory, key, images)
    return images


def materialize(split: DataSplit, *, progress: bool = False, cache: bool = True) -> DataSplit:
    """Decode every item once into memory; returns a split with the same ids and items.

    File and array data are kept as uint8 (one byte per pixel value, divided by 255 on
    access); other data (digits) as float32. Large folders are decoded by worker processes,
    and with ``cache`` kept on disk for the next run (see :mod:`snnconvert.data.cache`).
    """
    dataset = split.dataset
    n = len(dataset)
    if n == 0 or (isinstance(dataset, TensorImageDataset) and dataset.adapt is None):
        return split
    bar = _Progress(n, progress)
    if isinstance(dataset, ArrayImageDataset) and dataset.transform is None:
        images = torch.from_numpy(np.array(dataset.images, dtype=np.uint8, copy=True))
        labels = dataset.labels
    elif isinstance(dataset, ByteImageDataset):
        images = torch.from_numpy(_decode_files(dataset, bar, cache))
        labels = dataset.labels
    else:
        x0, _ = dataset[0]
        _check_memory(n, tuple(x0.shape), 4)
        images = torch.empty((n, *x0.shape), dtype=torch.float32)
        labels = np.empty(n, dtype=np.int64)
        for i in range(n):
            images[i], labels[i] = dataset[i]
            if i % _CHUNK == 0 or i == n - 1:
                bar.update(i + 1)
    return replace(split, dataset=TensorImageDataset(images, labels))
