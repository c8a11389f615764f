"""The files of one run directory besides its checkpoints: config.json, metrics.jsonl, samples/, best.json.

    RUN/config.json       the run config (everything needed to rebuild the model and the data pipeline)
    RUN/metrics.jsonl     one JSON object per logged step or validation
    RUN/samples/*.png     sample grids
    RUN/best.json         which checkpoint ckpt/best holds
    RUN/timings.json      where the last training process's wall time went, by phase
    RUN/ckpt/, RUN/latest checkpoints (i2i/checkpoint/weights.py)
    RUN/.lock             held (flock) by the process training in the run, which it names; the kernel
                          releases it when that process ends, however it ends

Every file is replaced atomically except metrics.jsonl, which is appended to and, on resume, cut back
to the checkpoint's step (the killed run's last lines are dropped).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

import numpy as np

from i2i.checkpoint.weights import latest_checkpoint
from i2i.data.io import atomic_write_bytes, write_image


class RunBusyError(RuntimeError):
    """Another process is training in this run directory now."""


class RunDir:
    """One run directory; nothing is written until a method that writes is called."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_file = self.path / "config.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self.lock_file = self.path / ".lock"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock for the block, or raise RunBusyError at once naming the process that holds it.

        An OS file lock (flock) on RUN/.lock: it belongs to the open file, so the kernel drops it when the
        process ends, even by kill -9, and a stale lock cannot exist. The file stays (it names the last holder).
        """
        if fcntl is None:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._busy() from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)  # releases the lock

    def check_unlocked(self) -> None:
        """Raise RunBusyError when another process holds the run's lock now (writes nothing)."""
        if fcntl is None:
            return
        try:
            fd = os.open(self.lock_file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no lock file (a new run), or none we can open: lock() will tell
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._busy() from None
        finally:
            os.close(fd)

    def _busy(self) -> RunBusyError:
        try:
            holder = f"process {int(self.lock_file.read_text().split()[0])}"
        except (OSError, ValueError, IndexError):
            holder = "another process"
        return RunBusyError(f"{self.path} is in use: {holder} is training in it now. Wait for it to finish (or "
                            "stop it), or train under another --name")

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.path)

    def saved_config(self) -> dict[str, Any] | None:
        if not self.config_file.is_file():
            return None
        try:
            return json.loads(self.config_file.read_text(errors="replace"))
        except ValueError as err:
            raise ValueError(f"{self.config_file} is damaged ({err}); restore it, or start a new run under "
                             "another --name") from None

    def write_config(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        # allow_nan=False: Infinity and NaN are not JSON (the options are checked finite, so this never fires)
        atomic_write_bytes(self.config_file, json.dumps(config, indent=2, allow_nan=False).encode())

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def cut_metrics(self, after_step: int) -> None:
        """Drop log lines written after `after_step` (all of them for -1), and a line torn by a kill."""
        if self.metrics_file.is_file():
            lines = [ln for ln in self.metrics_file.read_text(errors="replace").splitlines()
                     if _step(ln) is not None and _step(ln) <= after_step]
            atomic_write_bytes(self.metrics_file, "".join(ln + "\n" for ln in lines).encode())

    def write_samples(self, step: int, grid: np.ndarray) -> None:
        write_image(self.path / "samples" / f"step_{step:06d}.png", grid)

    def write_best(self, best: dict[str, Any]) -> None:
        atomic_write_bytes(self.path / "best.json", json.dumps(best).encode())

    def data_changes(self, root: str | Path, files: list[Path]) -> str | None:
        """Record the training files (RUN/data_files.json: their names relative to `root` and a sha256 of the list)
        and say what changed since the record a previous process left, if anything (None: the same, or none)."""
        names = sorted(os.path.relpath(f, root) for f in files)
        digest = hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()
        record = self.path / "data_files.json"
        try:
            before = json.loads(record.read_text(errors="replace"))
        except (OSError, ValueError):
            before = None
        atomic_write_bytes(record, json.dumps({"root": str(root), "count": len(names), "sha256": digest,
                                               "files": names}, ensure_ascii=False).encode("utf-8", "surrogateescape"))
        if not isinstance(before, dict) or before.get("sha256") == digest:
            return None
        old = set(before.get("files") or [])
        added, removed = sorted(set(names) - old), sorted(old - set(names))

        def listed(paths: list[str]) -> str:
            return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")

        parts = ([f"{len(added)} added ({listed(added)})"] if added else []) + (
            [f"{len(removed)} removed ({listed(removed)})"] if removed else [])
        return (f"the training data changed since this run last trained: {'; '.join(parts) or 'the same names'} "
                f"({before.get('count')} -> {len(names)} files); the data order and the epoch length follow the "
                "files as they are now")

    def write_timings(self, seconds: dict[str, float], speed: str | None = None) -> None:
        """Where the last process's wall time went, by phase (see trainer.Trainer.fit), and what the automatic
        speed choice picked and why (`speed`, see training/speed.py)."""
        record: dict[str, float | str] = {k: round(v, 4) for k, v in seconds.items()}
        if speed:
            record["speed"] = speed
        atomic_write_bytes(self.path / "timings.json", json.dumps(record, indent=2).encode())

def _step(line: str) -> int | None:
    """The step of one metrics.jsonl line, or None for a line that is not a whole record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None
