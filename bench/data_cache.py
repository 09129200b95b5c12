"""Decoding CIFAR-10 training images with and without the disk cache (issue 24, item 4).

Times the three ways a fine-tuning run gets its training images into memory, in one process:
decoding every JPEG (cache off), the first run with the cache (decode, then write the entry),
and a second run (read the entry). The cache lives in a temporary folder that is removed
afterwards. Writes bench/results/data_cache.{json,md} (bench/harness.py).

    python bench/data_cache.py [--data imagefolder:PATH] [--limit N]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from common import SHARED
from harness import BenchOptions, BenchResult, main

from snnconvert.data import InputSpec, load_split, materialize
from snnconvert.data import cache as disk


@dataclass
class Options(BenchOptions):
    data: str = field(default=f"imagefolder:{SHARED / 'cifar10' / 'train'}", metadata={"help": "training images"})
    limit: int | None = field(default=None, metadata={"help": "images (default: the whole training role)"})


def run(options: Options) -> BenchResult:
    spec = InputSpec(3, (32, 32), None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    split = load_split(options.data, "train", spec, seed=0, limit=options.limit, calib_split=1.0)  # the whole folder
    folder = tempfile.mkdtemp(prefix="snnconvert-cache-bench-")
    rows = []
    previous = os.environ.get(disk.CACHE_ENV)
    try:
        os.environ[disk.CACHE_ENV] = folder  # the benchmark's own cache, for this run only
        for label, cache in (("decode every file, first pass of this process (cache off)", False),
                             ("decode every file (cache off)", False), ("first run: decode + write the cache", True),
                             ("later runs: read the cache", True)):
            start = time.perf_counter()
            images = materialize(split, cache=cache).dataset.images
            seconds = time.perf_counter() - start
            rows.append({"run": label, "images": len(images), "seconds": seconds,
                         "images_per_s": len(images) / seconds, "megabytes": images.numel() / 2**20})
            print(f"{label}: {len(images):,} images in {seconds:.2f} s ({len(images) / seconds:,.0f} img/s)",
                  flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if previous is None:
            os.environ.pop(disk.CACHE_ENV, None)
        else:
            os.environ[disk.CACHE_ENV] = previous
    data = {"data": options.data, "rows": rows, "speedup": rows[1]["seconds"] / rows[3]["seconds"]}
    lines = ["# Training images into memory, with and without the disk cache", "",
             f"`python bench/data_cache.py` on {options.data.split(':', 1)[1].replace(str(SHARED), '../shared/data')}"
             f" ({rows[0]['images']:,} images, {rows[0]['megabytes']:.0f} MB of uint8 pixels).", "",
             "| run | seconds | images/s |", "|---|---|---|"]
    lines += [f"| {r['run']} | {r['seconds']:.2f} | {r['images_per_s']:,.0f} |" for r in rows]
    lines += ["", f"Reading the cache is {data['speedup']:.1f}x faster than decoding files the OS already holds in "
              "memory (the second row; the first pass also reads some from disk). Training itself runs on "
              "the same in-memory tensors either way, so the cache shortens the start of every run, not its "
              "steps."]
    return BenchResult("data_cache", data, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Options, run, __doc__)
