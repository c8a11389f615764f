"""Where a run's wall time goes: the timeline of phases, and what a training run records of it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from helpers import tiny_config, write_pairs
from i2i.data import DataSpec, make_dataset
from i2i.data.stream import BatchStream
from i2i.timeline import Timeline
from i2i.trainer import train


def test_phases_add_up_and_other_is_what_no_phase_covered() -> None:
    timeline = Timeline(startup=2.0)
    with timeline.phase("a"):
        time.sleep(0.02)
    time.sleep(0.02)
    with timeline.phase("a"):
        time.sleep(0.01)
    waits = list(timeline.timed(iter([1, 2, 3]), "wait", first="first_wait"))
    report = timeline.report()
    assert waits == [1, 2, 3]
    assert 0.03 <= report["a"] < 0.2 and report["startup"] == 2.0
    assert 0.02 <= report["other"] < 0.2
    assert {"first_wait", "wait"} <= set(report)
    assert abs(report["total"] - (2.0 + sum(v for k, v in report.items() if k not in ("startup", "total")))) < 1e-6


def test_a_run_records_where_its_time_went(paired_root: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(paired_root, tmp_path / "runs", max_steps=3, val_every=0), progress=False,
                    startup_seconds=1.5)
    saved = json.loads((summary.run_dir / "timings.json").read_text())
    for phase in ("startup", "setup", "run_directory", "data_start", "first_step", "steps", "checkpoints",
                  "shutdown", "other", "total"):
        assert phase in saved, phase
    assert saved["startup"] == 1.5 and saved["checkpoints"] > 0
    assert saved["total"] >= sum(v for k, v in saved.items() if k != "total") - 1e-3
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
