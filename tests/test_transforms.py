"""Tests for i2i.data.transforms: paired-safe geometry for every preprocess mode, seeding, tensor conversion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from i2i.config import PREPROCESS_MODES, DataConfig
from i2i.data.tensors import to_image, to_tensor
from i2i.data.transforms import ScaleWidth, geometry, paired_transform, single_transform

LOAD, CROP = 48, 32
SEEDS = range(24)


def _cfg(mode: str, flip: bool = True) -> DataConfig:
    return DataConfig(preprocess=mode, load_size=LOAD, crop_size=CROP, flip=flip)


def _rgb(h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


# two pixel-aligned pairs with different channel counts: target = f(input) pixel-wise, f linear
def _three_to_one(x: np.ndarray) -> np.ndarray:
    return x[:, :, 1:2] * 0.5


def _one_to_three(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, 1.0 - x, 0.25 * x], axis=2)


PAIRINGS = {
    "rgb_to_gray": (lambda h, w, s: _rgb(h, w, s), _three_to_one),
    "gray_to_rgb": (lambda h, w, s: _rgb(h, w, s)[:, :, :1].copy(), _one_to_three),
}


def _expected_size(mode: str, h: int, w: int) -> tuple[int, int]:
    if mode == "scale_width":
        return max(round(LOAD * h / w), CROP), LOAD
    if mode == "none":
        return h, w
    return CROP, CROP


def _find_crop(big: np.ndarray, patch: np.ndarray) -> tuple[int, int, bool] | None:
    """Where `patch` (maybe mirrored) sits in `big`, as (top, left, flipped); None when nowhere."""
    ph, pw = patch.shape[:2]
    for flipped, p in ((False, patch), (True, patch[:, ::-1])):
        for i in range(big.shape[0] - ph + 1):
            for j in range(big.shape[1] - pw + 1):
                if np.allclose(big[i : i + ph, j : j + pw], p, atol=1e-5):
                    return i, j, flipped
    return None


# ---------------------------------------------------------------------------------------- paired alignment


@pytest.mark.parametrize("pairing", sorted(PAIRINGS))
@pytest.mark.parametrize("mode", PREPROCESS_MODES)
@pytest.mark.parametrize("hw", [(40, 60), (60, 40)])
def test_paired_transform_keeps_alignment(mode: str, pairing: str, hw: tuple[int, int]) -> None:
    make, f = PAIRINGS[pairing]
    t = paired_transform(_cfg(mode), train=True)
    seen = set()
    for seed in SEEDS:
        x = make(*hw, seed)
        y = f(x)
        t.set_random_seed(seed)
        out = t(image=x, target=y)
        a, b = out["image"], out["target"]
        assert a.shape == (*_expected_size(mode, *hw), x.shape[2]), (mode, seed)
        assert b.shape == (*_expected_size(mode, *hw), y.shape[2]), (mode, seed)
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(b, f(a), atol=1e-4, err_msg=f"{mode} seed {seed}: input and target misaligned")
        seen.add(a.tobytes())
    assert len(seen) > 1  # flips (and crops) really vary with the seed


def test_crop_mode_takes_random_crops_and_flips_of_the_input() -> None:
    x = _rgb(40, 60)
    t = paired_transform(_cfg("crop"), train=True)
    places = []
    for seed in SEEDS:
        t.set_random_seed(seed)
        out = t(image=x, target=_three_to_one(x))
        where = _find_crop(x, out["image"])
        assert where is not None, f"seed {seed}: output is not a crop of the input"
        places.append(where)
    assert len({(i, j) for i, j, _ in places}) > 5  # different seeds, different crops
    assert {flipped for *_, flipped in places} == {False, True}  # flip on: both happen


def test_crop_mode_pads_small_images() -> None:
    x = _rgb(24, 40)
    t = paired_transform(_cfg("crop"), train=True)
    for seed in range(5):
        t.set_random_seed(seed)
        out = t(image=x, target=_three_to_one(x))
        assert out["image"].shape == (CROP, CROP, 3)
        np.testing.assert_allclose(out["target"], _three_to_one(out["image"]), atol=1e-6)


def test_resize_and_crop_is_a_crop_of_the_resized_input() -> None:
    x = _rgb(40, 60)
    resized = cv2.resize(x, (LOAD, LOAD), interpolation=cv2.INTER_CUBIC)
    t = paired_transform(_cfg("resize_and_crop"), train=True)
    for seed in range(4):
        t.set_random_seed(seed)
        assert _find_crop(resized, t(image=x, target=_three_to_one(x))["image"]) is not None


def test_scale_width_keeps_aspect_but_respects_min_height() -> None:
    t = ScaleWidth(LOAD, min_height=CROP)
    assert t.apply(_rgb(40, 60)).shape == (32, 48, 3)  # 40 * 48 / 60 = 32
    assert t.apply(_rgb(60, 40)).shape == (72, 48, 3)  # taller keeps its aspect
    assert t.apply(_rgb(20, 80)).shape == (32, 48, 3)  # would be 12 high: clamped to crop size
    gray = _rgb(20, 80)[:, :, :1]
    assert t.apply(gray).shape == (32, 48, 1)  # the channel axis survives cv2.resize
    same = _rgb(32, 48)
    assert t.apply(same) is same  # already the right size: untouched


# ---------------------------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("mode", ["resize_and_crop", "crop", "scale_width_and_crop"])
def test_seeded_calls_are_reproducible(mode: str) -> None:
    x = _rgb(40, 60)
    y = _three_to_one(x)
    t1, t2 = paired_transform(_cfg(mode)), paired_transform(_cfg(mode))
    for seed in (0, 7, 12345):
        t1.set_random_seed(seed)
        first = t1(image=x, target=y)
        t1(image=x, target=y)  # advance the state
        t1.set_random_seed(seed)
        again = t1(image=x, target=y)
        t2.set_random_seed(seed)
        other = t2(image=x, target=y)  # a separate pipeline (another DataLoader worker) agrees
        for out in (again, other):
            np.testing.assert_array_equal(out["image"], first["image"])
            np.testing.assert_array_equal(out["target"], first["target"])


def test_different_seeds_give_different_crops() -> None:
    x = _rgb(40, 60)
    t = paired_transform(_cfg("crop", flip=False))
    outs = []
    for seed in range(8):
        t.set_random_seed(seed)
        outs.append(t(image=x, target=_three_to_one(x))["image"].tobytes())
    assert len(set(outs)) >= 6


def test_flip_off_never_flips() -> None:
    x = _rgb(40, 60)
    t = paired_transform(_cfg("crop", flip=False))
    for seed in SEEDS:
        t.set_random_seed(seed)
        where = _find_crop(x, t(image=x, target=_three_to_one(x))["image"])
        assert where is not None and where[2] is False
    assert not any(type(s).__name__ == "HorizontalFlip" for s in geometry(_cfg("crop", flip=False), train=True))


# ------------------------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("mode", PREPROCESS_MODES)
def test_eval_is_deterministic_center_crop_without_flip(mode: str) -> None:
    x = _rgb(40, 60)
    y = _three_to_one(x)
    t = paired_transform(_cfg(mode), train=False)
    outs = []
    for seed in range(6):
        t.set_random_seed(seed)
        outs.append(t(image=x, target=y))
    for out in outs[1:]:
        np.testing.assert_array_equal(out["image"], outs[0]["image"])
        np.testing.assert_array_equal(out["target"], outs[0]["target"])
    a = outs[0]["image"]
    np.testing.assert_allclose(outs[0]["target"], _three_to_one(a), atol=1e-4)
    if mode == "crop":
        np.testing.assert_array_equal(a, x[4:36, 14:46])  # the centre, not mirrored
    elif mode == "resize_and_crop":
        resized = cv2.resize(x, (LOAD, LOAD), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(a, resized[8:40, 8:40], atol=1e-5)
    elif mode == "none":
        np.testing.assert_array_equal(a, x)
    assert not any(type(s).__name__.startswith("Random") or type(s).__name__ == "HorizontalFlip"
                   for s in geometry(_cfg(mode), train=False))


def test_single_transform() -> None:
    x = _rgb(40, 60)[:, :, :1].copy()
    t = single_transform(_cfg("resize_and_crop"), train=True)
    t.set_random_seed(3)
    out = t(image=x)["image"]
    assert out.shape == (CROP, CROP, 1)
    t.set_random_seed(3)
    np.testing.assert_array_equal(t(image=x)["image"], out)
    ev = single_transform(_cfg("crop"), train=False)
    np.testing.assert_array_equal(ev(image=x)["image"], x[4:36, 14:46])


def test_unknown_preprocess_lists_choices() -> None:
    with pytest.raises(ValueError) as err:
        paired_transform(_cfg("zoom"))
    assert "zoom" in str(err.value) and all(m in str(err.value) for m in PREPROCESS_MODES)


# ------------------------------------------------------------------------------------- tensor conversion


def test_to_tensor_layout_and_range() -> None:
    x = np.zeros((2, 3, 3), np.float32)
    x[..., 0], x[..., 1], x[..., 2] = 0.0, 0.5, 1.0
    x[0, 0] = [-0.2, 1.3, 0.25]  # bicubic overshoot is clipped
    t = to_tensor(x)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert t[0, 1, 1] == -1.0 and t[1, 1, 1] == 0.0 and t[2, 1, 1] == 1.0
    assert t[0, 0, 0] == -1.0 and t[1, 0, 0] == 1.0 and t[2, 0, 0] == -0.5
    assert t.min() >= -1.0 and t.max() <= 1.0


def test_to_tensor_leaves_rgb_input_alone() -> None:
    x = np.full((4, 4, 3), 0.25, np.float32)
    to_tensor(x)
    assert (x == 0.25).all()


def test_to_tensor_leaves_gray_input_alone() -> None:
    x = np.full((4, 4, 1), 0.25, np.float32)
    to_tensor(x)
    assert (x == 0.25).all()


def test_uint8_round_trip() -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    rgb = np.concatenate([levels, levels[::-1], levels.transpose(1, 0, 2)], axis=2)
    for img in (levels, rgb):
        back = to_image(to_tensor(img.astype(np.float32) / 255.0))
        assert back.dtype == np.uint8 and back.shape == img.shape
        np.testing.assert_array_equal(back, img)


def test_uint16_round_trip() -> None:
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1)
    back = to_image(to_tensor(levels.astype(np.float32) / 65535.0), dtype=np.uint16)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, levels)


def test_to_image_clips_and_rounds() -> None:
    t = torch.tensor([[[-3.0, -1.0, 0.0, 1.0, 2.5]]])
    np.testing.assert_array_equal(to_image(t)[0, :, 0], [0, 0, 128, 255, 255])  # 127.5 -> 128 (half to even)
    np.testing.assert_array_equal(to_image(t, np.uint16)[0, :, 0], [0, 0, 32768, 65535, 65535])
    assert to_image(t.to(torch.bfloat16).requires_grad_(True)).dtype == np.uint8
