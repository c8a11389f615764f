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


class StepSampler(Sampler):
    """The batches of one epoch for process `rank` of `world`: each step is this process's share of one
    global batch of `batch_size * world` consecutive positions of `EpochSampler`'s order.

    Process r takes positions [r*n//world, (r+1)*n//world) of a step's n positions, so the shares of all
    processes together are exactly the batch one process with `batch_size * world` would draw, in the
    same order and with the same augmentation seeds. When the epoch's last step has fewer positions
    than processes, a process without one repeats position r % n, so that every process has a batch at
    every step (they must stay in step). With `world == 1` this is plain batching.
    """

    def __init__(self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.order = EpochSampler(size, seed=seed, shuffle=shuffle)
        self.size, self.rank, self.world = size, rank, world
        self.global_batch = batch_size * world

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and how many of its positions (samples, not steps) were already drawn."""
        self.order.set_epoch(epoch, start)

    def __len__(self) -> int:
        return -(-len(self.order) // self.global_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        items = list(self.order)
        for first in range(0, len(items), self.global_batch):
            step = items[first:first + self.global_batch]
            n, r = len(step), self.rank
            yield step[r * n // self.world:(r + 1) * n // self.world] if n >= self.world else [step[r % n]]

    def step_size(self, position: int) -> int:
        """How many positions (over all processes) the step that starts at `position` draws."""
        return min(self.global_batch, self.size - position)


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
