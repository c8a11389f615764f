"""The embedded demo learns: after a short run its held-out night images beat the identity baseline."""

from __future__ import annotations

from pathlib import Path

from i2i.data.io import read_image
from i2i.demo import run_demo


def test_short_demo_beats_identity_and_writes_its_report(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", steps=150, progress=False)
    assert report.n_val == 8
    assert report.l1_model < 0.5 * report.l1_identity
    assert report.psnr_model > report.psnr_identity + 6
    grid = read_image(tmp_path / "demo" / "demo_grid.png")
    assert grid.shape == (8 * 64, 3 * 64, 3)
    text = (tmp_path / "demo" / "report.txt").read_text()
    assert "identity" in text and f"{report.l1_model:.2f}" in text


def test_demo_never_replaces_an_existing_run_unasked(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from i2i.cli.commands import main

    kept = tmp_path / "demo" / "run" / "mine.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--steps", "1"])
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert kept.read_text() == "keep me" and not (tmp_path / "demo" / "data").exists()
