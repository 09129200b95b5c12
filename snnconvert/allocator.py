"""Keep freed tensor memory in the process (glibc), so large CPU tensors are not page-faulted in again.

PyTorch's CPU allocator hands every tensor to ``malloc``. With glibc's defaults a block above
the dynamic mmap threshold is mapped fresh on each allocation and returned on free, and the
top of the heap is trimmed: each new layer output then costs one page fault per 4 KiB page.
On the ResNet-20 evaluation that is about a million faults per 400 images, and 20-35 % of the
wall time of both the ANN and the SNN (``bench/sws_resnet20.py --speed-only`` prints the
fault counts). Raising the mmap threshold to 1 GiB and the trim threshold to 2 GiB lets freed
blocks be reused; the peak memory stays the same.

:func:`tune_allocator` is a process-wide setting. The ``snnconvert`` command and the
benchmarks call it; a notebook can. ``SNNCONVERT_MALLOC=default`` leaves glibc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1  # mallopt takes an int
OPT_OUT = "SNNCONVERT_MALLOC"


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds for this process (see the module docstring).

    Returns True when they are set; False where there is no glibc ``mallopt`` (macOS, Windows,
    musl) or ``SNNCONVERT_MALLOC=default`` is set. Calling it again is harmless."""
    if os.environ.get(OPT_OUT, "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
