"""The files of one run directory besides its checkpoints: config.json, metrics.jsonl, samples/, best.json.

    RUN/config.json       the run config (everything needed to rebuild the model and the data pipeline)
    RUN/metrics.jsonl     one JSON object per logged step or validation
    RUN/samples/*.png     sample grids
    RUN/best.json         which checkpoint ckpt/best holds
    RUN/timings.json      where the last training process's wall time went, by phase
    RUN/ckpt/, RUN/latest checkpoints (i2i/checkpoint.py)

Every file is replaced atomically except metrics.jsonl, which is appended to and, on resume, cut back
to the checkpoint's step (the killed run's last lines are dropped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from i2i.checkpoint import latest_checkpoint
from i2i.data.io import atomic_write_bytes, write_image


class RunDir:
    """One run directory; nothing is written until a method that writes is called."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_file = self.path / "config.json"
        self.metrics_file = self.path / "metrics.jsonl"

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.path)

    def saved_config(self) -> dict[str, Any] | None:
        return json.loads(self.config_file.read_text()) if self.config_file.is_file() else None

    def write_config(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.config_file, json.dumps(config, indent=2).encode())

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def cut_metrics(self, after_step: int) -> None:
        """Drop log lines written after `after_step` (all of them for -1)."""
        if self.metrics_file.is_file():
            lines = [ln for ln in self.metrics_file.read_text().splitlines()
                     if ln.strip() and json.loads(ln)["step"] <= after_step]
            atomic_write_bytes(self.metrics_file, "".join(ln + "\n" for ln in lines).encode())

    def write_samples(self, step: int, grid: np.ndarray) -> None:
        write_image(self.path / "samples" / f"step_{step:06d}.png", grid)

    def write_best(self, best: dict[str, Any]) -> None:
        atomic_write_bytes(self.path / "best.json", json.dumps(best).encode())

    def write_timings(self, seconds: dict[str, float]) -> None:
        """Where the last process's wall time went, by phase (see trainer.Trainer.fit)."""
        atomic_write_bytes(self.path / "timings.json", json.dumps({k: round(v, 4) for k, v in seconds.items()},
                                                                   indent=2).encode())
