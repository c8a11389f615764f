"""Tests for i2i.data.demo_data: the day→night transform and the paired demo dataset on disk."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

from i2i.data import demo_data
from i2i.data.demo_data import build_day_night, night_from_day
from i2i.data.io import list_images, read_image

SPLITS = {"train": 48, "val": 8}


def _load_split(root: Path, split: str, side: str) -> dict[str, np.ndarray]:
    return {p.stem: read_image(p) for p in list_images(root / split / side)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("daynight")
    assert build_day_night(dest) == dest
    return dest


def _all_arrays(root: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(root).as_posix(): read_image(p) for p in list_images(root, recursive=True)}


# --------------------------------------------------------------------------------------- the dataset


def test_layout_and_counts(built: Path) -> None:
    assert sorted(p.name for p in built.iterdir()) == ["train", "val"]
    for split, count in SPLITS.items():
        assert sorted(p.name for p in (built / split).iterdir()) == ["A", "B"]
        for side in ("A", "B"):
            files = sorted((built / split / side).iterdir())
            assert len(files) == count
            assert all(p.suffix == ".png" for p in files)


def test_stems_match_and_images_are_rgb_crops(built: Path) -> None:
    for split in SPLITS:
        day, night = _load_split(built, split, "A"), _load_split(built, split, "B")
        assert day.keys() == night.keys()
        for arrays in (day, night):
            for arr in arrays.values():
                assert arr.dtype == np.uint8 and arr.shape == (64, 64, 3)


def test_night_is_darker_and_bluer(built: Path) -> None:
    for split in SPLITS:
        day, night = _load_split(built, split, "A"), _load_split(built, split, "B")
        for stem in day:
            a, b = day[stem].astype(np.float64), night[stem].astype(np.float64)
            assert b.mean() < 0.6 * a.mean(), stem
            ratio_a = a[..., 2].mean() / a[..., 0].mean()
            ratio_b = b[..., 2].mean() / b[..., 0].mean()
            assert ratio_b > ratio_a, stem


def test_val_is_disjoint_from_train(built: Path) -> None:
    train = _load_split(built, "train", "A")
    val = _load_split(built, "val", "A")
    train_photos = {stem.split("_", 1)[1] for stem in train}
    val_photos = {stem.split("_", 1)[1] for stem in val}
    assert train_photos.isdisjoint(val_photos)
    for v in val.values():
        assert not any(np.array_equal(v, t) for t in train.values())


def test_crops_are_varied(built: Path) -> None:
    train = list(_load_split(built, "train", "A").values())
    distinct = {arr.tobytes() for arr in train}
    assert len(distinct) == len(train)
    assert len({stem.split("_", 1)[1] for stem in _load_split(built, "train", "A")}) >= 3


def test_deterministic_for_same_seed(built: Path, tmp_path: Path) -> None:
    build_day_night(tmp_path)
    again, first = _all_arrays(tmp_path), _all_arrays(built)
    assert again.keys() == first.keys()
    for key, arr in first.items():
        np.testing.assert_array_equal(again[key], arr, err_msg=key)


def test_other_seed_gives_other_data(built: Path, tmp_path: Path) -> None:
    build_day_night(tmp_path, seed=1)
    other, first = _all_arrays(tmp_path), _all_arrays(built)
    assert other.keys() == first.keys()  # same layout and names
    for split in SPLITS:
        same = [k for k in first if k.startswith(f"{split}/A/") and np.array_equal(first[k], other[k])]
        assert not same


def test_custom_size_and_counts(tmp_path: Path) -> None:
    build_day_night(tmp_path, size=32, n_train=5, n_val=3, seed=7)
    for split, count in (("train", 5), ("val", 3)):
        for side in ("A", "B"):
            arrays = _load_split(tmp_path, split, side)
            assert len(arrays) == count
            assert all(a.shape == (32, 32, 3) for a in arrays.values())


def test_val_does_not_depend_on_n_train(tmp_path: Path) -> None:
    build_day_night(tmp_path / "a", size=32, n_train=3, n_val=4)
    build_day_night(tmp_path / "b", size=32, n_train=6, n_val=4)
    for side in ("A", "B"):
        va, vb = _load_split(tmp_path / "a", "val", side), _load_split(tmp_path / "b", "val", side)
        assert va.keys() == vb.keys()
        for stem in va:
            np.testing.assert_array_equal(va[stem], vb[stem])


def test_rebuild_with_fewer_images_removes_stale_ones(tmp_path: Path) -> None:
    build_day_night(tmp_path, size=16, n_train=6, n_val=4)
    (tmp_path / "train" / "A" / "mine.png").write_bytes(b"user file")
    build_day_night(tmp_path, size=16, n_train=2, n_val=1)
    assert len(list_images(tmp_path / "train" / "B")) == 2
    assert len(list_images(tmp_path / "val" / "A")) == 1
    assert len(list_images(tmp_path / "val" / "B")) == 1
    assert sorted(p.name for p in (tmp_path / "train" / "A").iterdir())[-1] == "mine.png"
    assert len(list_images(tmp_path / "train" / "A")) == 3


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_day_night(tmp_path, size=4)
    with pytest.raises(ValueError):
        build_day_night(tmp_path, n_train=-1)


def test_needs_no_network_and_is_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("demo data must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.perf_counter()
    build_day_night(tmp_path, seed=3)
    assert time.perf_counter() - start < 10.0  # budget is 3 s; generous here so slow CI is not flaky
    assert len(list_images(tmp_path / "train" / "A")) == 48


def test_photo_split_is_disjoint() -> None:
    assert set(demo_data.TRAIN_PHOTOS).isdisjoint(demo_data.VAL_PHOTOS)


# --------------------------------------------------------------------------------------- the transform


def _reference_night(day: np.ndarray) -> np.ndarray:
    """night_from_day without the noise, written out from its docstring, in float64."""
    x = day.astype(np.float64) / 255.0
    h, w = day.shape[:2]
    luma = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    y = 0.45 * x * luma[..., None] ** 0.6 * np.array([0.70, 0.85, 1.20])
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    v = 1 - 0.4 * (((ii - cy) / cy) ** 2 + ((jj - cx) / cx) ** 2) / 2
    return np.clip(y * v[..., None], 0.0, 1.0) * 255.0


def _day(seed: int = 0, shape: tuple[int, int] = (40, 56)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def test_transform_matches_documented_formula() -> None:
    day = _day()
    night = night_from_day(day, np.random.default_rng(0))
    assert night.dtype == np.uint8 and night.shape == day.shape
    diff = night.astype(np.float64) - _reference_night(day)
    assert abs(diff.mean()) < 0.3  # the noise has zero mean
    assert 1.5 < diff.std() < 2.6  # sigma = 2 (in 0..255 units), plus rounding
    assert np.abs(diff).max() < 12.0


def test_transform_noise_is_seeded_and_small() -> None:
    day = _day(1)
    a = night_from_day(day, np.random.default_rng(5))
    b = night_from_day(day, np.random.default_rng(5))
    c = night_from_day(day, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - c).mean() < 3.5


def test_transform_vignette_and_tint_on_flat_gray() -> None:
    gray = np.full((33, 33, 3), 200, np.uint8)
    night = night_from_day(gray, np.random.default_rng(0)).astype(np.float64)
    centre, corner = night[14:19, 14:19].mean(axis=(0, 1)), night[:3, :3].mean(axis=(0, 1))
    assert (corner < 0.7 * centre).all()  # corners are darkened to about 0.6
    assert centre[2] > centre[1] > centre[0]  # gray turns blue
    expected_centre = 0.45 * (200 / 255) ** 1.6 * np.array([0.70, 0.85, 1.20]) * 255
    np.testing.assert_allclose(centre, expected_centre, atol=1.5)


def test_transform_black_stays_black_ish() -> None:
    night = night_from_day(np.zeros((16, 16, 3), np.uint8), np.random.default_rng(0))
    assert night.mean() < 2.0  # only clipped noise


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
)
def test_transform_rejects_other_inputs(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        night_from_day(bad, np.random.default_rng(0))
