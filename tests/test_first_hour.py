"""A newcomer's first hour: step budgets decay, bad crops are refused early, resume accepts the same folder."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import cli, tiny_config, write_pairs
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


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny run with checkpoints at steps 2 and 4 (different weights), and a folder of inputs."""
    tmp = tmp_path_factory.mktemp("two")
    summary = train(tiny_config(write_pairs(tmp / "p", layout="folders"), tmp / "runs", max_steps=4, save_every=2),
                    progress=False)
    return summary.run_dir / "ckpt" / "step_000002", summary.run_dir, tmp / "p" / "train" / "A"


def test_an_output_folder_made_by_another_checkpoint_is_refused_unless_overwrite(
        two_checkpoints: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from i2i.translation.made_by import RECORD

    early, run, inputs = two_checkpoints
    out = tmp_path / "out"
    first = cli("translate", early, inputs, out, "--no-progress", "--precision", "fp32")
    assert first.exit_code == 0 and "translated 6, skipped 0" in first.output, first.output
    record = json.loads((out / RECORD).read_text())
    assert record["checkpoint"] == str(early.resolve()) and len(record["sha256"]) == 64
    assert record["weights"] == str((early / "G.safetensors").resolve())
    again = cli("translate", early, inputs, out, "--no-progress")  # the same checkpoint: resumes, skips
    assert again.exit_code == 0 and "translated 0, skipped 6 (already done)" in again.output, again.output
    made = {p.name: p.read_bytes() for p in out.glob("*.png")}
    other = cli("translate", run, inputs, out, "--no-progress")  # the run's latest: step 4, other weights
    assert other.exit_code == 1, other.output
    assert "made by another checkpoint" in other.output and "--overwrite" in other.output
    assert str(early.resolve()) in other.output and "step_000004" in other.output
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == made  # nothing was touched
    assert json.loads((out / RECORD).read_text()) == record
    replaced = cli("translate", run, inputs, out, "--no-progress", "--overwrite", "--precision", "fp32")
    assert replaced.exit_code == 0 and "translated 6, skipped 0" in replaced.output, replaced.output
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} != made
    assert json.loads((out / RECORD).read_text())["checkpoint"] == str(run.resolve())
    assert cli("translate", run, inputs, out, "--no-progress").exit_code == 0
    (out / RECORD).write_text("{not json")
    broken = cli("translate", run, inputs, out, "--no-progress")
    assert broken.exit_code == 1 and RECORD in broken.output


def test_side_translates_one_half_of_side_by_side_inputs_and_a_pair_layout_is_warned(
        two_checkpoints: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from PIL import Image

    _, run, inputs = two_checkpoints
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for a in sorted(inputs.glob("*.png"))[:2]:
        b = inputs.parent / "B" / a.name
        Image.fromarray(np.concatenate([np.asarray(Image.open(a)), np.asarray(Image.open(b))], axis=1)).save(
            pairs / a.name)
    whole = cli("translate", run, pairs, tmp_path / "whole", "--no-progress", "--precision", "fp32")
    assert whole.exit_code == 0 and "twice as wide as high" in whole.output and "--side A" in whole.output
    assert Image.open(tmp_path / "whole" / "000.png").size == (64, 32)
    plain = cli("translate", run, inputs, tmp_path / "plain", "--no-progress", "--precision", "fp32")
    assert plain.exit_code == 0 and "twice as wide" not in plain.output
    for side, source in (("A", inputs), ("B", inputs.parent / "B")):
        out = tmp_path / side
        result = cli("translate", run, pairs, out, "--side", side, "--no-progress", "--precision", "fp32")
        assert result.exit_code == 0 and "twice as wide" not in result.output, result.output
        alone = cli("translate", run, source / "000.png", tmp_path / f"{side}.png", "--precision", "fp32")
        assert alone.exit_code == 0, alone.output
        assert Image.open(out / "000.png").size == (32, 32)
        assert np.array_equal(np.asarray(Image.open(out / "000.png")), np.asarray(Image.open(tmp_path / f"{side}.png")))
    assert cli("translate", run, pairs, tmp_path / "x", "--side", "C").exit_code == 2


class _Page(HTMLParser):
    """The tables of a results page: each row's cells as text, and the image sources in order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
        elif tag == "img":
            self.images.append(values["src"] or "")
            self.rows[-1][-1] += "<img>"
        if tag in ("link", "script") or (values.get("href") or "").startswith("http"):
            self.links.append(tag)

    def handle_data(self, data: str) -> None:
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data.strip()


def test_eval_html_shows_input_output_target_of_every_image_with_the_scores(
        two_checkpoints: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from PIL import Image

    _, run, inputs = two_checkpoints
    data = write_pairs(tmp_path / "d", n=3, seed=5)
    (data / "train").rename(data / "val")
    page_dir = tmp_path / "page"
    result = cli("eval", run, "--data", data, "--split", "val", "--no-fid", "--html", page_dir,
                 "--json", tmp_path / "scores.json")
    assert result.exit_code == 0, result.output
    assert f"results page written to {page_dir / 'index.html'}" in result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    page = _Page()
    page.feed((page_dir / "index.html").read_text())
    assert not page.links  # offline: no stylesheet, script or web address
    score_rows = [r for r in page.rows if r and r[0] in ("model", "identity")]
    header = next(r for r in page.rows if r[:1] == [""])
    assert header[1:] == ["psnr", "ssim", "ms_ssim", "checkerboard"]
    assert [r[0] for r in score_rows] == ["model", "identity"]
    assert score_rows[0][1] == f"{scores['model']['psnr']:.4g}"
    assert score_rows[1][2] == f"{scores['identity']['ssim']:.4g}"
    columns = next(r for r in page.rows if r[:1] == ["image"])
    assert columns == ["image", "input", "output", "target", "psnr", "ssim", "ms_ssim"]
    images = [r for r in page.rows if r and r[0] in ("000", "001", "002")]
    assert [r[0] for r in images] == ["000", "001", "002"]
    assert all(r[1:4] == ["<img>"] * 3 and float(r[4]) > 0 for r in images)
    assert len(page.images) == 9 and all((page_dir / src).is_file() for src in page.images)
    first = [np.asarray(Image.open(page_dir / src)) for src in page.images[:3]]
    ab = np.asarray(Image.open(data / "val" / "000.png"))
    assert np.array_equal(first[0], ab[:, :32]) and np.array_equal(first[2], ab[:, 32:])  # input A, target B
    assert first[1].shape == first[0].shape and not np.array_equal(first[1], first[0])
    folders = cli("eval", "--outputs", inputs, "--targets", inputs.parent / "B", "--no-fid", "--html",
                  tmp_path / "two")
    assert folders.exit_code == 0, folders.output
    two = _Page()
    two.feed((tmp_path / "two" / "index.html").read_text())
    assert next(r for r in two.rows if r[:1] == ["image"])[:3] == ["image", "output", "target"]
    assert len(two.images) == 12
