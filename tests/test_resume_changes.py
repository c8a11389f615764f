"""--resume with changed options applies them and says so (--lr, betas, --batch-size) or refuses them naming the
option (--seed); what config.json records is what trained. The run records its training files and a resume says
which were added or removed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import write_pairs
from i2i.checkpoint.weights import latest_checkpoint, load_state
from i2i.cli.commands import main

TINY = ["--generator", "unet_64", "--ngf", "4", "--ndf", "4", "--load-size", "72", "--crop-size", "64", "--workers",
        "0", "--no-progress", "--log-every", "1", "--precision", "fp32", "--sample-every", "0", "--save-every", "2"]


def train_cli(data: Path, runs: Path, *more: str):
    # --decay-steps 0: the --lr given until the budget's end
    return CliRunner().invoke(main, ["train", "pix2pix", "--data", str(data), "--runs-dir", str(runs), "--name", "r",
                                     "--decay-steps", "0", *TINY, *more])


@pytest.fixture
def started(tmp_path: Path) -> tuple[Path, Path]:
    data = write_pairs(tmp_path / "pairs", n=4)
    runs = tmp_path / "runs"
    first = train_cli(data, runs, "--max-steps", "2")
    assert first.exit_code == 0, first.output
    return data, runs


def test_a_changed_lr_is_applied_and_said(started: tuple[Path, Path]) -> None:
    data, runs = started
    result = train_cli(data, runs, "--max-steps", "4", "--lr", "0.001", "--beta1", "0.6", "--resume")
    assert result.exit_code == 0, result.output
    assert "--lr 0.001 applied (the run had 0.0002)" in result.output and "--beta1 0.6 applied" in result.output
    groups = [g for o in load_state(latest_checkpoint(runs / "r"))["optimizers"].values() for g in o["param_groups"]]
    assert all(g["initial_lr"] == pytest.approx(1e-3) and g["betas"][0] == 0.6 for g in groups)
    # trained, not only recorded: the rate logged after resumed step 3 (the budget's last step decays it to 0)
    logged = {r["step"]: r["lr"] for r in map(json.loads, (runs / "r" / "metrics.jsonl").read_text().splitlines())
              if "lr" in r}
    assert logged[3] == pytest.approx(1e-3) and logged[1] == pytest.approx(2e-4)
    assert json.loads((runs / "r" / "config.json").read_text())["train"]["lr"] == 0.001


def test_a_changed_batch_size_is_applied_and_said(started: tuple[Path, Path]) -> None:
    data, runs = started
    result = train_cli(data, runs, "--max-steps", "3", "--batch-size", "2", "--resume")
    assert result.exit_code == 0 and "--batch-size 2 applied (the run had 1)" in result.output, result.output
    assert load_state(latest_checkpoint(runs / "r"))["epoch_position"] == 4  # 2 images, then one batch of 2


def test_a_changed_seed_is_refused_naming_the_option(started: tuple[Path, Path]) -> None:
    data, runs = started
    before = (runs / "r" / "config.json").read_text()
    result = train_cli(data, runs, "--max-steps", "4", "--seed", "3", "--resume")
    assert result.exit_code == 1 and "--seed 3 differs from the run's 0" in result.output
    assert "resume with --seed 0" in result.output
    assert (runs / "r" / "config.json").read_text() == before and (runs / "r" / "latest").read_text() == "step_000002"


def test_a_resume_says_which_training_files_were_added_or_removed(started: tuple[Path, Path]) -> None:
    data, runs = started
    record = json.loads((runs / "r" / "data_files.json").read_text())
    assert record["count"] == 4 and len(record["sha256"]) == 64
    train_dir = data / "train"
    first, *_ = sorted(train_dir.iterdir())
    shutil.copy(first, train_dir / "new_one.png")
    first.unlink()
    result = train_cli(data, runs, "--max-steps", "3", "--resume")
    assert result.exit_code == 0, result.output
    assert "the training data changed" in result.output
    assert "1 added (train/new_one.png)" in result.output and f"1 removed (train/{first.name})" in result.output
    same = train_cli(data, runs, "--max-steps", "4", "--resume")
    assert same.exit_code == 0 and "the training data changed" not in same.output
