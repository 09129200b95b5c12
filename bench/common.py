"""Shared pieces of the benchmarks: paths to ../shared/data, result files, a run header."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from snnconvert.allocator import tune_allocator
from snnconvert.atomic import write_json_atomically

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SNNCONVERT_SHARED_DATA") or ROOT.parent / "shared" / "data")
RESULTS = ROOT / "bench" / "results"
CHECKPOINT = SHARED / "resnet20-cifar10.th"
TRAIN = f"imagefolder:{SHARED / 'cifar10' / 'train-subset'}"
TEST = f"imagefolder:{SHARED / 'cifar10' / 'test'}"


_PROCESS: dict[str, bool] = {}


def start_process() -> None:
    """What a benchmark process does first, as the command line does (benchmarks time what users
    get): keep freed tensor memory in glibc (:func:`snnconvert.tune_allocator`). Called by each
    script's ``__main__`` (and the harness), never at import."""
    _PROCESS["allocator_tuned"] = tune_allocator()


def require_shared_data() -> None:
    if not CHECKPOINT.is_file():
        sys.exit(f"benchmark data not found under {SHARED} (set SNNCONVERT_SHARED_DATA)")


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "allocator_tuned": _PROCESS.get("allocator_tuned", False),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>`` atomically."""
    return write_json_atomically(RESULTS / name, data)
