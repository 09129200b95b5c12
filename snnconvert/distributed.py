"""Data parallelism under ``torchrun`` (environment ``WORLD_SIZE > 1``): fine-tuning,
quantization-aware training and sharded evaluation.

The process group uses gloo on the CPU and nccl on CUDA. Data are sharded by
``DistributedSampler`` with ``drop_last=True``: the epoch's seeded permutation is cut to a
multiple of the world size W, rank r takes every W-th index from r on, and each rank runs
batches of ``batch_size // W`` images, so one optimizer step sees the same global batch of
``batch_size`` images as a single process (``batch_size`` must be divisible by W). Gradients
are averaged by ``DistributedDataParallel``; only rank 0 writes checkpoints, logs and artifacts.
QAT shards the batches of its (identically seeded) loader: rank r takes batches r, r + W, ...
Evaluation shards images the same way and all-gathers the logits in their original order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from snnconvert.errors import SnnConvertError


@dataclass
class DistContext:
    """Rank, world size and whether this module started the process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` as torchrun sets them (default: 1 process)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise SnnConvertError(f"bad torchrun environment: {exc}") from None
        return cls(rank, world, local)

    def init(self, device: torch.device) -> None:
        """Start the process group (gloo on CPU, nccl on CUDA) unless one is running."""
        if not self.enabled or dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=self.rank, world_size=self.world_size)
        self.owns_group = True

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over the ranks (float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def per_rank_batch(self, batch_size: int) -> int:
        if batch_size % self.world_size:
            raise SnnConvertError(
                f"batch_size {batch_size} is not divisible by the {self.world_size} processes of this run"
            )
        return batch_size // self.world_size


    def shard(self, count: int) -> range:
        """The indices ``rank, rank + W, ...`` of ``count`` items that this rank takes."""
        return range(self.rank, count, self.world_size)

    def gather_rows(self, local: torch.Tensor, count: int, device: torch.device) -> torch.Tensor:
        """Reassemble rows that each rank computed for its :meth:`shard` of ``count`` items, in
        the original order, on every rank (all-gather; rows padded to equal length)."""
        if not self.enabled:
            return local
        per_rank = (count + self.world_size - 1) // self.world_size
        padded = torch.zeros((per_rank, *local.shape[1:]), dtype=local.dtype, device=device)
        padded[: len(local)] = local.to(device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        out = torch.empty((count, *local.shape[1:]), dtype=local.dtype)
        for r, part in enumerate(parts):
            rows = len(range(r, count, self.world_size))
            out[r::self.world_size] = part[:rows].cpu()
        return out


@contextmanager
def process_group(device: str | torch.device = "auto") -> Iterator[DistContext]:
    """One process group for everything inside it (the stages of a pipeline run): started once
    when ``WORLD_SIZE > 1`` (gloo on the CPU, nccl on CUDA) and closed at the end. The stages'
    own :meth:`DistContext.init` finds it running, and their :meth:`DistContext.close` leaves it
    open (only the context that started a group ends it). Outside ``torchrun`` it does nothing."""
    ctx = DistContext.from_env()
    if ctx.enabled:
        from snnconvert.device import resolve_device

        resolved = resolve_device(device) if isinstance(device, str) else device
        if resolved.type == "cuda":
            resolved = torch.device("cuda", ctx.local_rank)
        ctx.init(resolved)
    try:
        yield ctx
    finally:
        ctx.close()


def reduce_values(values: list[float], op: str = "sum", device: torch.device | None = None) -> list[float]:
    """Element-wise ``sum`` / ``max`` / ``min`` of ``values`` over the ranks of the running process
    group (float64; on ``device``, which must suit the backend: CUDA for nccl); the values
    unchanged when no group of more than one process runs. Every rank must call it in the same
    order (a collective)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return list(values)
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=ops[op])
    return t.tolist()
