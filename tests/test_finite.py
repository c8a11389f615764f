"""Finite or stop: NaN and infinite option values are refused (click status 2, and `problems()` for the Python API);
a non-finite loss stops training at the first step or at the next log line, naming the loss, the step and what to
try; a checkpoint is never written from non-finite weights and never rotates a finite one out; config JSON is
always valid JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import i2i.models.pix2pix
from helpers import tiny_config, tiny_cyclegan_config, write_unpaired
from i2i.cli.commands import main
from i2i.config import TrainConfig, non_finite
from i2i.training.finite import NonFiniteError
from i2i.training.state import RunError
from i2i.training.trainer import Trainer, train


@pytest.mark.parametrize(("option", "value"), [("--lambda-l1", "nan"), ("--lr", "inf"), ("--beta1", "nan"),
                                               ("--lambda-fm", "inf"), ("--save-minutes", "inf"),
                                               ("--dist-timeout", "nan"), ("--ema-decay", "nan")])
def test_non_finite_option_values_are_usage_errors(paired_root: Path, tmp_path: Path, option: str,
                                                   value: str) -> None:
    result = CliRunner().invoke(main, ["train", "pix2pix", "--data", str(paired_root), "--runs-dir",
                                       str(tmp_path / "runs"), option, value, "--max-steps", "1"])
    assert result.exit_code == 2 and option in result.output and "not a finite number" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["--lambda-cycle", "--lambda-identity"])
def test_cyclegan_weights_must_be_finite(tmp_path: Path, option: str) -> None:
    data = write_unpaired(tmp_path / "u")
    result = CliRunner().invoke(main, ["train", "cyclegan", "--data", str(data), option, "inf", "--dry-run"])
    assert result.exit_code == 2 and "not a finite number" in result.output


def test_the_python_api_refuses_non_finite_values_before_anything_is_written(paired_root: Path,
                                                                             tmp_path: Path) -> None:
    assert "lr must be a finite number, got inf" in TrainConfig(lr=math.inf).problems()
    cfg = tiny_config(paired_root, tmp_path / "runs")
    cfg.model_config.lambda_l1 = math.nan
    assert non_finite(cfg.model_config) == ["lambda_l1 must be a finite number, got nan"]
    with pytest.raises(RunError, match="lambda_l1 must be a finite number"):
        Trainer(cfg, progress=False)
    assert not (tmp_path / "runs").exists()


def nan_l1_from(call: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pix2Pix's L1 term becomes NaN from its `call`-th evaluation on (a run that diverges there)."""
    calls, real = [], F.l1_loss

    def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        out = real(a, b)
        return out * math.nan if len(calls) >= call else out

    monkeypatch.setattr(i2i.models.pix2pix.F, "l1_loss", l1)


def test_a_nan_loss_at_the_first_step_stops_with_the_loss_the_step_and_advice(paired_root: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    nan_l1_from(1, monkeypatch)
    cfg = tiny_config(paired_root, tmp_path / "runs", log_every=100, save_every=100)
    with pytest.raises(NonFiniteError) as info:
        train(cfg, progress=False)
    text = str(info.value)
    assert "G_l1=nan" in text and "at step 1" in text
    assert "--lr" in text and "fp32" in text and "--gan-loss" in text
    ckpt = tmp_path / "runs" / "tiny" / "ckpt"
    assert not ckpt.exists() or not any(ckpt.iterdir())


def test_a_run_that_diverges_later_stops_at_the_log_line_and_keeps_its_finite_checkpoint(
        paired_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nan_l1_from(3, monkeypatch)  # steps 1 and 2 are finite
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=8, save_every=2, keep_last=1)
    with pytest.raises(NonFiniteError, match=r"G_l1=nan.* at step 3"):
        train(cfg, progress=False)
    run = tmp_path / "runs" / "tiny"
    assert (run / "latest").read_text() == "step_000002"
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["step_000002"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]  # the NaN window is not logged
    json.loads((run / "config.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in config.json"))


def test_non_finite_weights_are_never_checkpointed_nor_rotate_a_finite_one_out(
        paired_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = Trainer.train_step

    def poisoned(self: Trainer, batch: dict) -> tuple:
        out = real_step(self, batch)
        if self.step == 2:  # during the 3rd step: a weight overflows, the logged losses not yet
            with torch.no_grad():
                next(self.model.networks()["D"].parameters()).view(-1)[0] = math.inf
        return out

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=8, save_every=1, keep_last=1, log_every=100)
    with pytest.raises(NonFiniteError, match=r"at step 3: the weights of D are not finite.*step_000002 is kept"):
        train(cfg, progress=False)
    run = tmp_path / "runs" / "tiny"
    assert (run / "latest").read_text() == "step_000002"
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["step_000002"]


def test_cyclegan_stops_at_a_non_finite_first_step_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import i2i.models.cyclegan

    real = i2i.models.cyclegan.F.l1_loss
    monkeypatch.setattr(i2i.models.cyclegan.F, "l1_loss", lambda a, b: real(a, b) * math.inf)
    cfg = tiny_cyclegan_config(write_unpaired(tmp_path / "u"), tmp_path / "runs", max_steps=2)
    with pytest.raises(NonFiniteError, match=r"at step 1"):
        train(cfg, progress=False)
