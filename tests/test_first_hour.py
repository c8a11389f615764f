"""A newcomer's first hour: step budgets decay, bad crops are refused early, resume accepts the same folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import tiny_config, write_pairs
from i2i.cli.commands import main
from i2i.config import TrainConfig
from i2i.training.trainer import train

TINY = ["--generator", "unet_64", "--ngf", "4", "--ndf", "4", "--load-size", "72", "--crop-size", "64",
        "--workers", "0", "--no-progress", "--log-every", "1", "--precision", "fp32"]


def test_a_step_budget_carries_its_own_schedule() -> None:
    assert TrainConfig(max_steps=40).schedule(steps_per_epoch=400) == (20, 20)  # half the budget decays
    assert TrainConfig(max_steps=40, decay_steps=10).schedule(400) == (30, 10)
    assert TrainConfig().schedule(400) == (40000, 40000)  # no budget: the epochs' schedule
    assert TrainConfig(max_steps=40, step_schedule=False).schedule(400) == (40000, 40000)  # runs from before it
    assert TrainConfig(max_steps=4, decay_steps=5).problems() and not TrainConfig(max_steps=4, decay_steps=4).problems()


def test_a_short_run_ends_below_half_its_learning_rate(tmp_path: Path) -> None:
    summary = train(tiny_config(write_pairs(tmp_path / "p"), tmp_path / "runs", max_steps=8, save_every=0,
                                decay_steps=None),
                    progress=False)
    lrs = [json.loads(line)["lr"] for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(2e-4) and lrs[-1] < 1e-4
    assert lrs == sorted(lrs, reverse=True)
    assert json.loads((summary.run_dir / "config.json").read_text())["train"]["step_schedule"] is True
    assert summary.epochs == pytest.approx(8 / 6)  # 6 pairs at batch 1: the completed epochs, not a 0-based index


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_a_crop_the_generator_cannot_take_is_refused_before_anything_is_written(tmp_path: Path,
                                                                                extra: list[str]) -> None:
    root = write_pairs(tmp_path / "p")
    runs = tmp_path / "runs"
    base = ["train", "pix2pix", "--data", str(root), "--runs-dir", str(runs), "--ngf", "4", "--ndf", "4",
            "--no-progress", "--load-size", "128", *extra]
    result = CliRunner().invoke(main, [*base, "--crop-size", "128"])
    assert result.exit_code == 1, result.output
    assert "--crop-size 128" in result.output and "--generator unet_256" in result.output
    assert not runs.exists()
    channels = CliRunner().invoke(main, [*base, "--crop-size", "64", "--generator", "unet_64",
                                         "--input-channels", "2"])
    assert channels.exit_code == 1 and "--input-channels/--output-channels" in channels.output
    assert not runs.exists()


def test_resume_accepts_the_same_folder_spelled_otherwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pairs(tmp_path / "pairs")
    monkeypatch.chdir(tmp_path)
    base = ["train", "pix2pix", "--runs-dir", "runs", "--name", "r", *TINY]
    first = CliRunner().invoke(main, [*base, "--data", "pairs", "--max-steps", "2"])
    assert first.exit_code == 0, first.output
    assert "data: 6 pairs" in first.output and "schedule: lr 0.0002 for 1 steps" in first.output
    again = CliRunner().invoke(main, [*base, "--data", str(tmp_path / "pairs"), "--max-steps", "3", "--resume"])
    assert again.exit_code == 0, again.output
    assert "done: 3 steps" in again.output and "resumed at step 2: 1 steps" in again.output
    other = CliRunner().invoke(main, [*base, "--data", os.fspath(tmp_path / "pairs"), "--max-steps", "4", "--resume",
                                      "--no-flip"])
    assert other.exit_code == 1
    assert "--flip (data.flip): the run has True, now False" in other.output
    assert "{" not in other.output  # the options, not two whole dicts
