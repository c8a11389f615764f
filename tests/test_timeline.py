"""Where a run's wall time goes: the timeline of phases, and what a training run records of it."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import tiny_config, write_pairs
from i2i.data import DataSpec, make_dataset
from i2i.data.stream import BatchStream
from i2i.runtime.timeline import Timeline
from i2i.training.trainer import train


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_phases_sum_their_own_time_and_other_is_what_no_phase_covered() -> None:
    clock = Clock()
    timeline = Timeline(clock=clock, startup=2.0)
    with timeline.phase("a"):
        clock.now += 3.0
    clock.now += 0.5  # outside any phase
    with timeline.phase("a"):
        clock.now += 1.0

    def slow(n: int):
        for i in range(n):
            clock.now += 0.25 if i == 0 else 0.125  # the first item takes longer to arrive
            yield i

    waits = []
    for item in timeline.timed(slow(3), "wait", first="first_wait"):
        waits.append(item)
        clock.now += 10.0  # the consumer's own time is not a wait
    report = timeline.report()
    assert waits == [0, 1, 2]
    assert report == {"startup": 2.0, "a": 4.0, "first_wait": 0.25, "wait": 0.25, "other": 30.5, "total": 37.0}
    assert timeline.line().startswith("startup 2.0 s, a 4.0 s, first wait 0.2 s")


def test_a_run_records_where_its_time_went(paired_root: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(paired_root, tmp_path / "runs", max_steps=3, val_every=0), progress=False,
                    startup_seconds=1.5)
    saved = json.loads((summary.run_dir / "timings.json").read_text())
    for phase in ("startup", "setup", "run_directory", "data_start", "first_step", "steps", "checkpoints",
                  "shutdown", "other", "total"):
        assert phase in saved, phase
    assert saved["startup"] == 1.5 and saved["checkpoints"] > 0 and saved["steps"] > 0
    assert summary.time_line().startswith("time: startup 1.5 s")


def test_workers_started_by_a_fork_server_give_the_same_batches(tmp_path: Path) -> None:
    from i2i.config import DataConfig

    root = write_pairs(tmp_path / "pairs", n=5)
    data = DataConfig(root=str(root), load_size=36, crop_size=32)

    def batches(**loader) -> list:
        stream = BatchStream(make_dataset(DataSpec("paired"), data), batch_size=2, seed=3, **loader)
        out = [b["input"] for b, _ in zip(stream, range(4), strict=False)]
        stream.close()
        return out

    inline, served = batches(), batches(workers=1, start_method="forkserver")
    assert len(inline) == 4 and all((a == b).all() for a, b in zip(inline, served, strict=True))
