"""Where a run's wall time went: named phases, summed, written beside the run (RUN/timings.json)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Timeline:
    """Seconds per phase of a run, in the order phases first ran. Host wall time: on a GPU a phase that
    launches work ends before the work does; the next synchronising phase (logging, checkpoints) pays for it."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter, **known: float | None) -> None:
        """`known`: phases timed before the timeline existed (e.g. startup=seconds); `clock`: seconds now."""
        self.clock = clock
        self.seconds: dict[str, float] = {name: value for name, value in known.items() if value is not None}
        self.start = clock()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - started

    def timed(self, items: Iterable[T], name: str, first: str | None = None) -> Iterator[T]:
        """Yield `items`, timing the wait for each under `name` (the first one under `first`, if given)."""
        iterator, waited = iter(items), False
        while True:
            with self.phase(first if first and not waited else name):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            waited = True
            yield item

    def report(self) -> dict[str, float]:
        """Each phase, "other" (time inside the timeline that no phase covered) and "total"."""
        inside = self.clock() - self.start
        before = self.seconds.get("startup", 0.0)
        measured = sum(self.seconds.values()) - before
        return {**self.seconds, "other": max(inside - measured, 0.0), "total": before + inside}

    def line(self) -> str:
        return ", ".join(f"{name.replace('_', ' ')} {value:.1f} s" for name, value in self.report().items())
