"""Resumable, seeded sampling: each epoch's order and each sample's augmentation seed derive from (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler, default_collate


class EpochSampler(Sampler):
    """Yields `(index, sample_seed)` for one epoch, optionally starting part-way through it.

    The order is a permutation drawn from (seed, epoch), and each position gets its own seed for
    random augmentation, so a run resumed mid-epoch sees exactly the samples and crops it would have
    seen uninterrupted, whatever the number of DataLoader workers.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch to iterate and how many of its samples to skip (for resuming)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(self.size - self.start, 0)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        seeds = rng.integers(0, 2**31 - 1, size=self.size)
        for pos in range(self.start, self.size):
            yield int(order[pos]), int(seeds[pos])


@dataclass
class Skipped:
    """What a dataset returns for a sample it could not read (training goes on without it)."""

    path: str
    reason: str


def split_key(key: int | tuple[int, int]) -> tuple[int, int | None]:
    """Accept a plain index or the sampler's (index, seed)."""
    if isinstance(key, tuple):
        return key
    return int(key), None


def collate_skipping(samples: list) -> dict:
    """Stack readable samples; list the unreadable ones under "skipped" as Skipped records.

    Images of different sizes (possible before device-side augmentation resizes them) stay a list.
    """
    good = [s for s in samples if not isinstance(s, Skipped)]
    skipped = [s for s in samples if isinstance(s, Skipped)]
    batch = {}
    for key in good[0] if good else ():
        values = [s[key] for s in good]
        ragged = isinstance(values[0], torch.Tensor) and len({v.shape for v in values}) > 1
        batch[key] = values if ragged else default_collate(values)
    batch["skipped"] = skipped
    return batch


def batch_size_of(batch: dict) -> int:
    """Number of images in a collated batch (0 when every sample was skipped)."""
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return value.shape[0]
    return 0
