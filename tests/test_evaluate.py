"""`i2i eval`, validation during training with a best checkpoint, and `i2i report` on real runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import shared_dataset, tiny_config, tiny_cyclegan_config, write_pairs, write_unpaired
from i2i.cli.commands import main
from i2i.data.layout import resolve_split
from i2i.evaluation.evaluate import evaluate_run
from i2i.evaluation.fid import distribution_metrics_unavailable
from i2i.training.state import RunError
from i2i.training.trainer import Trainer, train
from i2i.translation.made_by import RECORD

needs_fid = pytest.mark.skipif(distribution_metrics_unavailable() is not None,
                               reason=f"FID weights not installed: {distribution_metrics_unavailable()}")


def paired_with_val(root: Path) -> Path:
    write_pairs(root, n=6)
    write_pairs(root / "tmp", n=4, seed=1)
    (root / "tmp" / "train").rename(root / "val")
    (root / "tmp").rmdir()
    return root


def test_resolve_split_falls_back_and_names_paths(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    assert resolve_split(tmp_path, "val", unpaired=False) == "test"
    with pytest.raises(FileNotFoundError, match="trainA"):
        resolve_split(tmp_path, "train", unpaired=True)


def test_validation_logs_metrics_and_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    root = paired_with_val(tmp_path / "pairs")
    cfg = tiny_config(root, tmp_path / "runs", max_steps=6, val_every=2, val_size=3, save_every=0)
    summary = train(cfg, progress=False)
    records = [json.loads(x) for x in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_psnr" in r]
    assert [r["step"] for r in val] == [2, 4, 6]
    assert all({"val_l1", "val_ssim"} <= set(r) for r in val)
    best = json.loads((summary.run_dir / "best.json").read_text())
    assert best["metric"] == "val_psnr" and best["value"] == max(r["val_psnr"] for r in val)
    assert best["step"] == next(r["step"] for r in val if r["val_psnr"] == best["value"])
    assert (summary.run_dir / "ckpt" / "best" / "G.safetensors").is_file()
    assert (summary.run_dir / "latest").read_text() == "step_000006"  # best never becomes "latest"
    html = (summary.run_dir / "report.html").read_text()
    assert "val_psnr" in html
    for src in re.findall(r'src="([^"]+)"', html):
        assert (summary.run_dir / src).is_file(), src


def test_validation_errors_are_clear(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "pairs")  # no val/ or test/
    with pytest.raises(FileNotFoundError, match="no val split"):
        Trainer(tiny_config(root, tmp_path / "runs", val_every=2), progress=False)
    unpaired = write_unpaired(tmp_path / "u")
    (unpaired / "testA").mkdir()
    with pytest.raises(RunError, match="--val-fid"):
        Trainer(tiny_cyclegan_config(unpaired, tmp_path / "runs", val_every=2), progress=False)
    root = paired_with_val(tmp_path / "p2")
    with pytest.raises(RunError, match="best-metric"):
        train(tiny_config(root, tmp_path / "runs", max_steps=2, val_every=2, best_metric="val_nonsense"),
              progress=False)


def test_evaluate_run_beats_nothing_and_writes_scores(tmp_path: Path) -> None:
    root = paired_with_val(tmp_path / "pairs")
    run = train(tiny_config(root, tmp_path / "runs", max_steps=2), progress=False).run_dir
    result = evaluate_run(run, root, split="val", fid=False, work_dir=tmp_path / "work")
    assert result["n"] == 4 and result["split"] == "val"
    assert {"psnr", "ssim", "ms_ssim"} <= set(result["model"]) and "psnr" in result["identity"]
    assert len([p for p in (tmp_path / "work" / "outputs").iterdir() if p.name != RECORD]) == 4
    out = CliRunner().invoke(main, ["eval", str(run), "--data", str(root), "--no-fid"])
    assert out.exit_code == 0, out.output
    assert "identity" in out.output and json.loads((run / "eval_val.json").read_text())["n"] == 4
    folders = CliRunner().invoke(main, ["eval", "--outputs", str(tmp_path / "work" / "outputs"),
                                        "--targets", str(tmp_path / "work" / "targets"), "--no-fid"])
    assert folders.exit_code == 0 and "psnr" in folders.output
    usage = CliRunner().invoke(main, ["eval", "--outputs", str(tmp_path)])
    assert usage.exit_code == 2 and "--targets" in usage.output


def test_cyclegan_eval_keeps_one_scores_file_per_direction(tmp_path: Path) -> None:
    import shutil

    root = write_unpaired(tmp_path / "u")
    for domain in "AB":
        shutil.copytree(root / f"train{domain}", root / f"test{domain}")
    run = train(tiny_cyclegan_config(root, tmp_path / "runs", max_steps=1), progress=False).run_dir
    for direction in ("AtoB", "BtoA"):
        out = CliRunner().invoke(main, ["eval", str(run), "--data", str(root), "--split", "test", "--no-fid",
                                        "--direction", direction])
        assert out.exit_code == 0, out.output
    for direction, n in (("AtoB", 5), ("BtoA", 3)):  # 5 A images, 3 B images
        scores = json.loads((run / f"eval_test_{direction}.json").read_text())
        assert scores["direction"] == direction and scores["n"] == n
    assert not (run / "eval_test.json").exists()


@needs_fid
def test_eval_real_yosemite_model_vs_identity(tmp_path: Path) -> None:
    data = shared_dataset("tiny_demo", "summer2winter")
    run = train(tiny_cyclegan_config(data, tmp_path / "runs", max_steps=2), progress=False).run_dir
    result = evaluate_run(run, data, split="test", direction="AtoB")
    assert result["n"] == 4
    assert result["model"]["fid"] > 0 and result["identity"]["fid"] > 0
    assert result["model"]["fid"] != result["identity"]["fid"]


def test_report_command_rebuilds(tmp_path: Path) -> None:
    run = train(tiny_config(write_pairs(tmp_path / "p"), tmp_path / "runs", max_steps=2), progress=False).run_dir
    (run / "report.html").unlink()
    out = CliRunner().invoke(main, ["report", str(run)])
    assert out.exit_code == 0 and (run / "report.html").is_file()


def test_tensorboard_logging_or_a_clear_install_hint(paired_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=2, tensorboard=True)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(RunError, match="pip install tensorboard"):
            Trainer(cfg, progress=False)
        return
    summary = train(cfg, progress=False)
    assert any((summary.run_dir / "tensorboard").iterdir())


@needs_fid
def test_cyclegan_validation_scores_both_directions_by_fid(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path / "u")
    write_unpaired(tmp_path / "t", n_a=3, n_b=3, seed=2)
    for domain in ("A", "B"):
        (tmp_path / "t" / f"train{domain}").rename(root / f"test{domain}")
    cfg = tiny_cyclegan_config(root, tmp_path / "runs", max_steps=2, val_every=2, val_fid=True, val_size=3)
    summary = train(cfg, progress=False)
    val = [json.loads(x) for x in (summary.run_dir / "metrics.jsonl").read_text().splitlines() if "val_" in x]
    assert {"val_fid_AtoB", "val_fid_BtoA", "val_kid_AtoB", "val_kid_BtoA"} <= set(val[0])
    assert json.loads((summary.run_dir / "best.json").read_text())["metric"] == "val_fid_AtoB"
