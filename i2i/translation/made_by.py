"""Which checkpoint made an output folder: a small record in OUTPUT, checked before a translation adds to it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from i2i.data.io import atomic_write_bytes

RECORD = ".i2i-checkpoint.json"  # hidden: a later walk of OUTPUT ignores it as it ignores every hidden file


@dataclass(frozen=True)
class MadeBy:
    """The checkpoint (as given and resolved), the weights file used and its sha256, and the direction."""

    checkpoint: str
    weights: str
    sha256: str
    direction: str

    def describe(self) -> str:
        return f"{self.checkpoint} ({self.direction}, weights {self.weights}, sha256 {self.sha256[:12]})"


def read_record(folder: Path) -> MadeBy | None:
    """The record of `folder`, None when it has none; a record that cannot be read raises ValueError naming it."""
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        return MadeBy(**{k: str(v) for k, v in json.loads(path.read_text()).items() if k in MadeBy.__annotations__})
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"cannot read {path}, the record of which checkpoint made the outputs in {folder} ({err}); "
                         "remove it, or replace the outputs with --overwrite") from err


def check_record(folder: Path, made_by: MadeBy, overwrite: bool) -> None:
    """Raise ValueError when `folder` holds outputs of another checkpoint (their outputs would count as done),
    unless `overwrite` (every output is then made again by `made_by`). An unreadable record counts as another."""
    try:
        before = read_record(folder)
    except ValueError:
        if overwrite:
            return
        raise
    if before is None or before.sha256 == made_by.sha256 or overwrite:
        return
    raise ValueError(f"the output folder {folder} holds translations made by another checkpoint:\n"
                     f"  made by {before.describe()}\n  now     {made_by.describe()}\n"
                     "their outputs would be skipped as already done; choose another output folder, or replace "
                     f"them with --overwrite (overwrite=True); the record is {folder / RECORD}")


def write_record(folder: Path, made_by: MadeBy) -> None:
    """Record (atomically) that `made_by` makes the outputs of `folder`."""
    atomic_write_bytes(folder / RECORD, (json.dumps(asdict(made_by), indent=2) + "\n").encode())
