"""The training batches as one endless, resumable stream: it owns the epoch, the position in it and the skips."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from i2i.data.layout import DataError
from i2i.data.sampling import Skipped, StepSampler, batch_size_of, collate_skipping
from i2i.runtime.process import single_threaded_opencv

log = logging.getLogger(__name__)


def _worker_init(worker_id: int) -> None:
    single_threaded_opencv()  # DataLoader workers are i2i's own processes


class BatchStream:
    """Yields collated batches forever, epoch after epoch, in the seeded order of `EpochSampler`.

    `epoch` and `position` (samples of that epoch already drawn) say where the stream is; restoring
    them with `load_state_dict` continues with exactly the samples, and augmentation seeds, an
    uninterrupted run would have seen. Unreadable files are reported once each (`warn`, else a logged warning) and
    remembered in `skipped`; an epoch in which nothing could be read is an error, not a hang.

    Process `rank` of `world` (several processes training one run) gets its share of each global
    batch (`StepSampler`); `position` still counts the samples drawn by all processes, the same on
    every one, so a run resumes on any number of processes. The processes must stay in step: one whose
    whole share of a step is unreadable repeats its previous batch (the files are reported as usual).
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, seed: int, workers: int = 0, pin_memory: bool = False,
                 start_method: str | None = None, warn: Callable[[str], None] | None = None, rank: int = 0,
                 world: int = 1) -> None:
        """`start_method` starts the worker processes ("fork", "forkserver", "spawn"; None: the platform's);
        `rank` and `world` pick this process's slice of every global batch (several processes)."""
        self.size, self.batch_size, self.warn, self.world = len(dataset), batch_size, warn or log.warning, world
        self.sampler = StepSampler(self.size, batch_size, seed=seed, shuffle=True, rank=rank, world=world)
        self.loader: DataLoader | None = DataLoader(
            dataset, batch_sampler=self.sampler, collate_fn=collate_skipping,
            num_workers=workers, pin_memory=pin_memory, persistent_workers=workers > 0,
            worker_init_fn=_worker_init if workers else None,
            multiprocessing_context=start_method if workers else None,
            # its own generator: starting an iterator must not draw from the global RNG (resume would drift)
            generator=torch.Generator().manual_seed(seed),
        )
        self.epoch, self.position = 0, 0
        self.skipped: set[str] = set()

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.size / self.sampler.global_batch)

    def __iter__(self) -> Iterator[dict]:
        last = None
        while True:
            if self.position >= self.size:
                self.epoch, self.position = self.epoch + 1, 0
            self.sampler.set_epoch(self.epoch, start=self.position)
            whole_epoch, read = self.position == 0, False
            for batch in self.loader:
                self.position += self.sampler.step_size(self.position)
                self._report(batch["skipped"])
                if batch_size_of(batch):
                    read, last = True, batch
                    yield batch
                elif self.world > 1:  # keep in step with the other processes
                    if last is None:
                        raise DataError("this process's first batch has no readable image, and with several "
                                        "processes every step needs one on each: remove the unreadable files "
                                        "reported above (or find them all with --strict)")
                    yield last
            if whole_epoch and not read and self.world == 1:  # (several processes repeated or raised above)
                raise DataError("no readable images in the training data: every one was skipped")

    def close(self) -> None:
        """Stop the worker processes now, not at interpreter exit (where their shutdown may wait on timeouts).
        Close the generators iterating the stream first: they hold the loader's iterator."""
        self.loader = None  # the loader owns the persistent workers' iterator; its finaliser shuts them down

    def _report(self, skipped: list[Skipped]) -> None:
        for bad in skipped:
            if bad.path not in self.skipped:
                self.skipped.add(bad.path)
                self.warn(f"warning: skipping unreadable image ({bad.reason})")

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "epoch_position": self.position, "skipped": sorted(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Accepts checkpoints of every i2i version (older ones counted the position in batches)."""
        self.epoch = state["epoch"]
        self.position = state.get("epoch_position", state.get("position", 0) * self.batch_size)
        self.skipped = set(state["skipped"])
