"""The shared trainer end to end on generated data: checkpoints, exact resume, logging, bad images, errors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import same_weights, tiny_config, write_pairs
from i2i.checkpoint.weights import latest_checkpoint, load_state
from i2i.training.setup import lr_factor
from i2i.training.state import RunError
from i2i.training.trainer import Trainer, train


def weights(ckpt: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / f"{name}.safetensors"))


def test_lr_schedule_is_constant_then_linear_to_zero() -> None:
    assert lr_factor(0, 10, 10) == 1.0
    assert lr_factor(9, 10, 10) == 1.0
    assert lr_factor(15, 10, 10) == pytest.approx(0.5)
    assert lr_factor(20, 10, 10) == 0.0
    assert lr_factor(25, 10, 0) == 0.0


def test_run_directory_contents(paired_root: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(paired_root, tmp_path / "runs", max_steps=5, keep_last=2), progress=False)
    run = tmp_path / "runs" / "tiny"
    assert summary.steps == 5 and summary.run_dir == run
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "pix2pix" and config["model_config"]["generator"]["name"] == "unet_64"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5]
    assert {"D", "G", "G_l1", "D_real", "D_fake", "lr", "images_per_s", "epoch"} <= set(lines[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    # saved at 2, 4 and the end (5); only the newest two are kept
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["step_000004", "step_000005"]
    assert latest_checkpoint(run).name == "step_000005"
    state = load_state(latest_checkpoint(run))  # weights_only load: plain data and tensors only
    assert state["step"] == 5 and set(state["optimizers"]) == {"G", "D"}


def test_resume_continues_exactly_like_an_uninterrupted_run(paired_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    straight = train(tiny_config(paired_root, runs, name="straight", max_steps=8), progress=False)
    train(tiny_config(paired_root, runs, name="split", max_steps=3), progress=False)  # "killed" after 3
    resumed = train(tiny_config(paired_root, runs, name="split", max_steps=8), resume=True, progress=False)
    assert resumed.steps == 8
    assert same_weights(straight.checkpoint, resumed.checkpoint)
    steps = [json.loads(line)["step"] for line in (runs / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_resume_from_a_mid_run_checkpoint_after_a_kill(paired_root: Path, tmp_path: Path) -> None:
    """A kill leaves a half-written temp folder and later log lines; resume ignores both."""
    runs = tmp_path / "runs"
    straight = train(tiny_config(paired_root, runs, name="straight", max_steps=6), progress=False)
    train(tiny_config(paired_root, runs, name="killed", max_steps=4, save_every=2), progress=False)
    run = runs / "killed"
    # simulate dying after step 4's checkpoint was written but before anything else: make step 2 latest
    (run / "latest").write_text("step_000002")
    (run / "ckpt" / ".tmp_step_000006_123").mkdir()
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 99}) + "\n")
    resumed = train(tiny_config(paired_root, runs, name="killed", max_steps=6), resume=True, progress=False)
    assert same_weights(straight.checkpoint, resumed.checkpoint)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_existing_run_is_never_overwritten(paired_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=2)
    first = train(cfg, progress=False)
    before = weights(first.checkpoint, "G")
    with pytest.raises(RunError, match="--resume"):
        Trainer(cfg, progress=False)
    after = weights(first.checkpoint, "G")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_resume_refuses_a_different_model(paired_root: Path, tmp_path: Path) -> None:
    train(tiny_config(paired_root, tmp_path / "runs", max_steps=2), progress=False)
    other = tiny_config(paired_root, tmp_path / "runs", max_steps=4)
    other.model_config.lambda_l1 = 10.0
    with pytest.raises(RunError, match="lambda_l1"):
        Trainer(other, resume=True, progress=False)



def test_unreadable_images_are_skipped_and_counted(tmp_path: Path, messages: Callable[[], str]) -> None:
    root = write_pairs(tmp_path / "pairs", n=4)
    bad = root / "train" / "bad.png"
    bad.write_bytes(b"not an image")
    summary = train(tiny_config(root, tmp_path / "runs", max_steps=10), progress=False)
    assert summary.steps == 10
    assert summary.skipped == 1  # one bad file, met in each of the 2-3 epochs, counted and warned once
    assert messages().count(str(bad)) == 1


def test_strict_mode_fails_on_an_unreadable_image(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "pairs", n=2)
    (root / "train" / "bad.png").write_bytes(b"not an image")
    cfg = tiny_config(root, tmp_path / "runs", max_steps=6)
    cfg.data.strict = True
    with pytest.raises(OSError, match=r"bad\.png"):
        train(cfg, progress=False)


def test_all_images_unreadable_is_an_error_not_a_hang(tmp_path: Path) -> None:
    folder = tmp_path / "pairs" / "train"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"garbage")
    with pytest.raises(RunError, match="no readable images"):
        train(tiny_config(tmp_path / "pairs", tmp_path / "runs", max_steps=5), progress=False)


def test_epoch_schedule_decays_to_zero(paired_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=None, epochs=1, decay_epochs=1, batch_size=3)
    summary = train(cfg, progress=False)
    assert summary.steps == 4  # 6 images / batch 3 = 2 steps per epoch, 2 epochs
    lrs = [json.loads(line)["lr"] for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lrs[:2] == [2e-4, 2e-4] and lrs[-1] == 0.0 and lrs[2] == pytest.approx(1e-4)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux")
def test_bf16_autocast_trains_with_finite_losses(paired_root: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(paired_root, tmp_path / "runs", max_steps=3, precision="bf16"), progress=False)
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.losses.values())
    assert weights(summary.checkpoint, "G")["stem.weight"].dtype == torch.float32


def test_folders_layout_trains_too(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "pairs", layout="folders")
    assert train(tiny_config(root, tmp_path / "runs", max_steps=2), progress=False).steps == 2


def test_resume_before_the_first_checkpoint_starts_over(paired_root: Path, tmp_path: Path,
                                                       messages: Callable[[], str]) -> None:
    """A run killed before its first checkpoint still finishes with --resume (from step 0)."""
    runs = tmp_path / "runs"
    straight = train(tiny_config(paired_root, runs, name="straight", max_steps=3, save_every=0), progress=False)
    killed = tiny_config(paired_root, runs, name="killed", max_steps=3, save_every=0)
    killed.run_dir.mkdir(parents=True)
    (killed.run_dir / "config.json").write_text(killed.to_json())  # what a run writes before step 1
    (killed.run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    resumed = train(killed, resume=True, progress=False)
    assert "no checkpoint yet" in messages()
    assert resumed.steps == 3 and same_weights(straight.checkpoint, resumed.checkpoint)
    steps = [json.loads(line)["step"] for line in (killed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_time_based_checkpoints(paired_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=3, save_every=0, save_minutes=1e-9, keep_last=5)
    summary = train(cfg, progress=False)
    assert sorted(p.name for p in (summary.run_dir / "ckpt").iterdir()) == ["step_000001", "step_000002",
                                                                          "step_000003"]
