"""Batch order, owned by no framework: epoch e's permutation is a pure function of (seed, e).
Both implementations, and a resumed run, therefore see the same batches in the same order."""

from __future__ import annotations

import numpy as np


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """A permutation of range(n) for 1-based `epoch`, from numpy's PCG64 seeded by (seed, epoch)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    return rng.permutation(n).astype(np.int64)


def epoch_batches(seed: int, epoch: int, n: int, batch_size: int, last_batch: str = "keep") -> list[np.ndarray]:
    """Index arrays of the epoch's batches; with last_batch='drop' a final short batch is left out."""
    perm = epoch_permutation(seed, epoch, n)
    stop = n - n % batch_size if last_batch == "drop" else n
    return [perm[i : min(i + batch_size, stop)] for i in range(0, stop, batch_size)]


def steps_per_epoch(n: int, batch_size: int, last_batch: str = "keep") -> int:
    return n // batch_size if last_batch == "drop" else -(-n // batch_size)
