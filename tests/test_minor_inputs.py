"""Small cases from the second reliability probe: A/B name mismatches list both sides, an MP4 named .jpg is a video,
a requires_grad tensor translates without a torch warning, and a summary with videos counts files, not images."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from helpers import write_pairs
from i2i.data.checks import check_tensor
from i2i.data.layout import DataError, match_pairs
from i2i.translation.folders import is_video_file
from i2i.translation.tree import DirSummary, scan_tree


def test_a_b_name_mismatches_list_both_sides(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "p", n=3, layout="folders") / "train"
    (root / "A" / "001.png").rename(root / "A" / "001_renamed.png")
    with pytest.raises(DataError) as info:
        match_pairs(root / "A", root / "B")
    text = str(info.value)
    assert "001_renamed.png" in text and str(root / "B" / "001.png") in text
    assert "1 A image(s)" in text and "1 B image(s)" in text


def test_an_mp4_named_jpg_is_found_as_a_video(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from test_video import make_video

    make_video(tmp_path / "clip.mp4", n=4, audio=False).rename(tmp_path / "clip.jpg")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(20))  # a JPEG's first bytes
    scan = scan_tree(tmp_path)
    assert scan.videos == [tmp_path / "clip.jpg"] and scan.images == [tmp_path / "photo.jpg"]
    assert is_video_file(tmp_path / "clip.jpg") and not is_video_file(tmp_path / "photo.jpg")


def test_a_requires_grad_tensor_is_checked_without_a_torch_warning() -> None:
    t = torch.zeros(3, 8, 8, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_tensor(t, 3, (-1, 1)) == (-1, 1)


def test_a_summary_with_videos_counts_files_per_second() -> None:
    images = DirSummary(translated=4, seconds=2.0)
    assert images.line().endswith("(2.00 images/s)")
    videos = DirSummary(translated=1, seconds=2.0, videos=["out.mp4: 30 frames ..."])
    assert videos.line().endswith("(0.50 files/s)") and "images/s" not in videos.line()
