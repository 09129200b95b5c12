"""The allocator setting: freed tensor memory is reused instead of page-faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from snnconvert.allocator import tune_allocator

PROBE = """
import resource, sys, torch
from snnconvert.allocator import tune_allocator
tuned = tune_allocator()

def rounds(k):  # layer-sized tensors, 64 MiB the largest (glibc's dynamic mmap threshold stops at 32 MiB)
    for _ in range(k):
        for n in (16 * 2**20, 4 * 2**20, 8 * 2**20):
            x = torch.ones(n); y = torch.ones(n // 2); del x, y

rounds(10)  # the heap settles
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(5)
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(opt_out: bool) -> tuple[str, int]:
    env = {**os.environ, "SNNCONVERT_MALLOC": "default" if opt_out else ""}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_process_reuses_freed_tensors() -> None:
    # five rounds write 5 x 168 MiB (215,040 pages of 4 KiB); glibc's default maps the large ones
    # fresh each time (about 164,000 faults here), tuned they reuse the settled heap
    tuned, faults = _faults(opt_out=False)
    default, default_faults = _faults(opt_out=True)
    assert (tuned, default) == ("True", "False")
    assert default_faults > 100_000, default_faults  # glibc's default maps them fresh (the probe means something)
    assert faults < 1_000, faults


def test_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNNCONVERT_MALLOC", "default")
    assert tune_allocator() is False
