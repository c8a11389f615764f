"""`--name` stays inside `--runs-dir`: `../escape`, an absolute path, `.` and `""` are usage errors (status 2) and
nothing is written; the Python API's `TrainConfig.problems()` says the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import write_pairs
from i2i.cli.commands import main
from i2i.config import TrainConfig


@pytest.mark.parametrize("name", ["../escape", "/tmp/i2i-absolute-run", ".", "", "a/../..", "  "])
def test_a_name_outside_the_runs_dir_is_a_usage_error(paired_root: Path, tmp_path: Path, name: str) -> None:
    runs = tmp_path / "area" / "runs"
    result = CliRunner().invoke(main, ["train", "pix2pix", "--data", str(paired_root), "--runs-dir", str(runs),
                                       "--name", name, "--max-steps", "1"])
    assert result.exit_code == 2 and "--name" in result.output, result.output
    assert not (tmp_path / "area").exists() and not Path("/tmp/i2i-absolute-run").exists()
    assert TrainConfig(name=name).problems()  # the Python API refuses it too


@pytest.mark.parametrize("name", ["facades", "group/facades", "a/../b"])
def test_a_name_inside_the_runs_dir_is_accepted(name: str, tmp_path: Path) -> None:
    assert TrainConfig(name=name).problems() == []
    data = write_pairs(tmp_path / "pairs", n=2)
    result = CliRunner().invoke(main, ["train", "pix2pix", "--data", str(data), "--runs-dir", str(tmp_path / "runs"),
                                       "--name", name, "--dry-run"])
    assert result.exit_code == 0, result.output
