"""The command line through click's CliRunner: help, validation, dry run, train, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from i2i.cli.commands import main

TINY = ["--generator", "unet_64", "--ngf", "4", "--ndf", "4", "--load-size", "72", "--crop-size", "64",
        "--workers", "0", "--no-progress", "--log-every", "1"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_shows_examples_and_choices() -> None:
    result = run("train", "pix2pix", "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and "i2i train pix2pix --data" in result.output
    assert "unet_256" in result.output and "--flip / --no-flip" in result.output


def test_invalid_choices_list_what_is_allowed(paired_root: Path) -> None:
    result = CliRunner().invoke(main, ["train", "pix2pix", "--data", str(paired_root), "--generator", "unet_512"])
    assert result.exit_code == 2
    assert "unet_512" in result.output and "unet_256" in result.output and "resnet_9blocks" in result.output
    result = CliRunner().invoke(main, ["train", "pix2pix", "--data", str(paired_root), "--batch-size", "0"])
    assert result.exit_code == 2 and "x>=1" in result.output
    result = CliRunner().invoke(main, ["train", "pix2pix", "--data", "/no/such/folder"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = CliRunner().invoke(main, ["train", "cyclegan", "--data", str(paired_root), "--augment-on", "gpu"])
    assert result.exit_code == 2 and "'cpu', 'device'" in result.output


def test_dry_run_prints_the_resolved_config_and_writes_nothing(paired_root: Path, tmp_path: Path) -> None:
    result = run("train", "pix2pix", "--data", str(paired_root), "--runs-dir", str(tmp_path / "runs"),
                 "--direction", "BtoA", "--no-flip", "--gan-loss", "lsgan", "--augment-on", "device", "--dry-run")
    assert result.exit_code == 0
    cfg = json.loads(result.output)
    assert cfg["model_config"]["direction"] == "BtoA" and cfg["model_config"]["gan_loss"] == "lsgan"
    assert cfg["data"]["flip"] is False and cfg["train"]["name"] == "pairs_pix2pix"
    assert cfg["data"]["augment_on"] == "device"
    assert cfg["model_config"]["discriminator"]["in_channels"] == 6
    assert not (tmp_path / "runs").exists()


def test_train_then_resume_from_the_command_line(paired_root: Path, tmp_path: Path) -> None:
    base = ["train", "pix2pix", "--data", str(paired_root), "--runs-dir", str(tmp_path / "runs"), "--name", "r",
            *TINY]
    first = run(*base, "--max-steps", "3")
    assert first.exit_code == 0, first.output
    assert "done: 3 steps" in first.output
    again = CliRunner().invoke(main, [*base, "--max-steps", "5"])
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = run(*base, "--max-steps", "5", "--resume")
    assert resumed.exit_code == 0 and "done: 5 steps" in resumed.output
    assert (tmp_path / "runs" / "r" / "latest").read_text() == "step_000005"


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "i2i", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "demo" in out.stdout
