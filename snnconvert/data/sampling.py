"""Seeded, class-stratified sampling and partitioning of a labelled pool."""

from __future__ import annotations

import numpy as np

# Distinct streams so that the calib/eval partition and a ``limit`` sample never share draws.
STREAM_PARTITION = 1
STREAM_LIMIT = 2
STREAM_ORDER = 3


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
    """A generator determined by ``seed`` and a stream number (any int seed is accepted)."""
    return np.random.default_rng([int(seed) % (1 << 64), stream])


def allocate(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``n`` items over classes of sizes ``counts`` proportionally (largest remainder).

    Exact integer arithmetic; ties between equal remainders are broken by ``rng``, so no class
    is systematically favoured. Every share is within 1 of ``n * count / total`` and never
    exceeds the class size.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if not 0 <= n <= total:
        raise ValueError(f"cannot allocate {n} of {total} items")
    if total == 0:
        return counts.copy()
    share = counts * n // total
    remainder = counts * n % total
    missing = n - int(share.sum())
    if missing:
        tiebreak = rng.permutation(len(counts))
        order = np.lexsort((tiebreak, -remainder))  # largest remainder first
        share[order[:missing]] += 1
    return share


def _pick(labels: np.ndarray, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    chosen = []
    for cls, k in enumerate(shares):
        if k:
            members = np.flatnonzero(labels == cls)
            chosen.append(rng.permutation(members)[:k])
    if not chosen:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded, class-stratified sample of ``n`` of ``labels``."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = seeded_rng(seed, STREAM_LIMIT)
    counts = np.bincount(labels, minlength=1) if len(labels) else np.zeros(1, np.int64)
    return _pick(labels, allocate(counts, min(n, len(labels)), rng), rng)


def stratified_partition(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into ``(part, rest)``: a seeded stratified ``fraction`` and its complement.

    ``part`` holds ``round(fraction * N)`` items (at least 1); both arrays are sorted and
    together cover ``range(N)`` exactly once.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_total = len(labels)
    n = min(n_total, max(1, round(fraction * n_total)))
    rng = seeded_rng(seed, STREAM_PARTITION)
    counts = np.bincount(labels, minlength=1)
    part = _pick(labels, allocate(counts, n, rng), rng)
    mask = np.ones(n_total, dtype=bool)
    mask[part] = False
    return part, np.flatnonzero(mask).astype(np.int64)


def interleaved_order(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)``: calibration data is served class-mixed."""
    return seeded_rng(seed, STREAM_ORDER).permutation(n).astype(np.int64)
