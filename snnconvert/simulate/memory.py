"""How much memory a simulation takes: one policy, three sizes derived from it.

The time-folded engine holds, at any moment, about :data:`ACTIVATION_COPIES` times the largest
layer's frames (its input, its output and a residual branch): ``frames x images x elements x
itemsize`` bytes each, where ``elements`` is the largest activation per image
(:func:`largest_activation`). From that estimate:

1. **Fit** (:func:`check_simulation_memory`, :func:`fit_simulation_batch`): a conversion or an
   evaluation whose estimate exceeds :data:`~snnconvert.limits.MEMORY_SHARE` of the available
   memory is refused with one line before any work, or runs with fewer images per batch.
2. **Batch** (:func:`snn_batch_size`): evaluation batches keep the largest layer's folded frames
   within :data:`BATCH_BYTES`, so the allocator reuses freed layer buffers instead of mapping
   fresh memory for every layer.
3. **Time chunks** (:func:`chunk_budget`): rate-type networks run a few steps at a time, the
   largest folded activation of a chunk within :data:`CHUNK_BYTES` on the CPU
   (:data:`DEVICE_CHUNK_BYTES` on accelerators); a chunk still writes at least
   :data:`WEIGHT_REUSE` times the bytes of the weights it reads. Then only one frame per image
   counts for the batch (2.), since the chunk holds the frames.
"""

from __future__ import annotations

from typing import Any

import torch

import snnconvert.limits as limits
from snnconvert.errors import SnnConvertError
from snnconvert.limits import MEMORY_SHARE, _gib, check_memory_estimate

ACTIVATION_COPIES = 3
"""Frames alive at once in the time-folded engine, in units of the largest layer's frames
(its input and output plus a residual branch)."""
BATCH_BYTES = 8 * 2**20
"""Bytes of the largest folded activation (images x frames x elements x itemsize) per SNN batch.
Small enough that the allocator reuses freed layer buffers instead of mapping (and page-faulting)
fresh memory for every layer, and that long rate-coded runs stay bounded in memory."""
CHUNK_BYTES = 32 * 2**20
"""Default target bytes (CPU) of the largest folded activation of one time chunk. Long runs
folded whole are memory-bound (ResNet-20 at T=256: 512 MiB per layer); 32 MiB chunks (16 steps of
ResNet-20 at batch 32) measured faster than 4 MiB ones at every T (``bench/compare_spikingjelly.py
--engine-table``, measured when the neuron loops still forced one CPU thread; they no longer do)."""
DEVICE_CHUNK_BYTES = 256 * 2**20
"""Default on accelerators (CUDA, MPS): large chunks keep their kernels busy; chunking there only
bounds memory."""
WEIGHT_REUSE = 4
"""A chunk's frames write at least this many times the bytes of the weights it reads (on the CPU,
a 44 MB ResNet-18 at 64x64 ran 5.3 ms per image-step in chunks of 16 frames, 3.9 in chunks of 256)."""


def largest_activation(model: Any, example: torch.Tensor) -> int:
    """Elements per image of the largest input or output of any leaf module of ``model`` in one
    forward pass of ``example`` (a model that cannot run it is left to fail later: an estimate)."""
    largest = int(example.numel())
    hooks = []

    def record(_module: Any, inputs: Any, output: Any) -> None:
        nonlocal largest
        for value in (*inputs, output):
            if isinstance(value, torch.Tensor):
                largest = max(largest, int(value.numel()))

    for module in model.modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(example)
    except Exception:  # noqa: BLE001 - an estimate only: a model that cannot run this example is checked later
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return largest // max(int(example.shape[0]), 1)


def check_simulation_memory(model: Any, example: torch.Tensor, steps: int, *, batch: int = 1, element_size: int = 8,
                            what: str = "the spiking network", available: int | None = None) -> int:
    """Refuse ``steps`` time steps whose frames would not fit in memory: ``steps`` x ``batch`` x the
    largest activation of ``model`` (one forward of ``example``) x ``element_size`` x
    :data:`ACTIVATION_COPIES`. Returns the estimate in bytes."""
    needed = steps * batch * largest_activation(model, example) * element_size * ACTIVATION_COPIES
    check_memory_estimate(needed, f"{what} with {steps} time steps", "use fewer time steps (or a smaller batch)",
                          available)
    return needed


def fit_simulation_batch(model: Any, example: torch.Tensor, steps: int, batch: int, *, element_size: int = 8,
                         what: str = "the spiking network", option: str = "--batch-size",
                         available: int | None = None) -> int:
    """The largest batch, at most ``batch``, whose :func:`check_simulation_memory` estimate fits in
    :data:`~snnconvert.limits.MEMORY_SHARE` of the available memory (``batch`` itself where memory
    cannot be read). When not even one image fits, a one-line error names ``option`` and the time steps."""
    per_image_bytes = max(steps * largest_activation(model, example) * element_size * ACTIVATION_COPIES, 1)
    available = limits.available_memory_bytes() if available is None else available  # (patchable in tests)
    if available is None:
        return batch
    fits = int(MEMORY_SHARE * available // per_image_bytes)
    if fits < 1:
        raise SnnConvertError(f"{what} with {steps} time steps needs about {_gib(per_image_bytes)} per image but "
                              f"{_gib(available)} is available: even {option} 1 does not fit; use fewer time steps "
                              "or a machine with more memory")
    return max(1, min(batch, fits))


def snn_batch_size(frames: int, batch_size: int, activation_elements: int, itemsize: int = 4,
                   *, chunked: bool = False) -> int:
    """Images per SNN batch: at most ``batch_size``, and the largest layer's ``frames`` folded
    frames within :data:`BATCH_BYTES`. A network that runs in time chunks (``chunked``) holds one
    chunk of frames at a time, sized by :func:`chunk_budget`, so only one frame per image counts."""
    per_image = (1 if chunked else max(1, int(frames))) * max(1, activation_elements) * itemsize
    return max(1, min(batch_size, BATCH_BYTES // per_image))


def chunk_budget(setting: int | None, device: torch.device) -> int:
    """Bytes per time chunk for ``SpikingNetwork.time_chunk_bytes`` = ``setting`` on ``device``:
    None picks the default for the device, 0 turns chunking off."""
    if setting is None:
        return CHUNK_BYTES if device.type == "cpu" else DEVICE_CHUNK_BYTES
    return max(0, int(setting))
