"""Messages go through `logging.getLogger("i2i")`: the library prints nothing itself, the `i2i` command prints
them (start-up lines and notes at INFO, warnings, errors), `--quiet` and `--verbose` set the level."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from i2i.checkpoint.weights import latest_checkpoint
from i2i.cli.commands import main

TINY = ["--generator", "unet_64", "--ngf", "4", "--ndf", "4", "--load-size", "72", "--crop-size", "64",
        "--workers", "0", "--no-progress", "--max-steps", "2"]


def test_a_library_warning_is_a_log_record_a_program_can_silence(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                  capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    (run / "ckpt").mkdir(parents=True)
    (run / "latest").write_text("../elsewhere")  # outside the run's ckpt/: ignored, with a warning
    with caplog.at_level(logging.WARNING, logger="i2i"):
        assert latest_checkpoint(run) is None
    [record] = [r for r in caplog.records if "ignoring" in r.getMessage()]
    assert record.name.startswith("i2i.") and record.levelno == logging.WARNING
    assert capsys.readouterr().err == ""  # no print of its own: the record went to logging alone
    (run / "latest").write_text("../again")
    logging.getLogger("i2i").setLevel(logging.ERROR)  # what a service does to silence i2i's warnings
    try:
        with caplog.at_level(logging.NOTSET):
            caplog.clear()
            latest_checkpoint(run)
        assert not [r for r in caplog.records if "ignoring" in r.getMessage()]
    finally:
        logging.getLogger("i2i").setLevel(logging.NOTSET)


def train(*group: str, data: Path, runs: Path, name: str, options: tuple[str, ...] = ()):
    return CliRunner().invoke(main, [*group, "train", "pix2pix", "--data", str(data), "--runs-dir", str(runs),
                                     "--name", name, *TINY, *options], catch_exceptions=False)


def test_the_command_prints_start_up_lines_and_quiet_keeps_only_the_summary(paired_root: Path,
                                                                             tmp_path: Path) -> None:
    logger = logging.getLogger("i2i")
    before = (list(logger.handlers), logger.level, logger.propagate)
    plain = train(data=paired_root, runs=tmp_path, name="plain")
    assert plain.exit_code == 0, plain.output
    assert "data: " in plain.output and "run: " in plain.output and "done: 2 steps" in plain.output
    quiet = train("--quiet", data=paired_root, runs=tmp_path, name="quiet")
    assert quiet.exit_code == 0, quiet.output
    assert "done: 2 steps" in quiet.output and "data: " not in quiet.output and "run: " not in quiet.output
    resumed = train("--quiet", data=paired_root, runs=tmp_path, name="plain", options=("--resume",))
    assert "note: " not in resumed.output
    assert (list(logger.handlers), logger.level, logger.propagate) == before  # the command undid its handler


def test_verbose_prints_each_speed_candidates_timing(paired_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_AUTOTUNE", "fresh")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = train("--verbose", "--quiet", data=paired_root, runs=tmp_path, name="both")
    assert result.exit_code == 2 and "--quiet and --verbose" in result.output
    result = train("--verbose", data=paired_root, runs=tmp_path, name="verbose", options=("--precision", "fp32"))
    assert result.exit_code == 0, result.output
    timed = [line for line in result.output.splitlines() if line.startswith("speed: {")]
    assert timed and all("s per step" in line for line in timed)
