"""Paired day→night demo dataset cut from photos that ship inside scikit-image (no download needed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from i2i.data.io import write_image

# Night transform parameters (see night_from_day).
NIGHT_GAMMA = 1.6
NIGHT_GAIN = 0.45
NIGHT_CHANNEL_GAINS = (0.70, 0.85, 1.20)  # R, G, B: less red, more blue (moonlight)
VIGNETTE_STRENGTH = 0.4
NOISE_SIGMA = 2.0 / 255.0
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601

# Colour photos bundled in the scikit-image wheel (loaded from disk, never fetched).
# Val photos are whole photos that no train crop comes from.
_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skdata.astronaut,
    "coffee": skdata.coffee,
    "rocket": skdata.rocket,
    "motorcycle": lambda: skdata.stereo_motorcycle()[0],  # left view only; right is the same scene
    "chelsea": skdata.chelsea,
}
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle")
VAL_PHOTOS = ("chelsea",)
SCALES = (2.0, 3.0, 4.0)  # each photo is resized so its short side is scale * size before cropping

_NAME = re.compile(r"^\d{4}_[a-z]+\.png$")


def night_from_day(day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 uint8 day photo -> uint8 'night' version of the same shape.

    With x = day / 255, channels c = R, G, B, pixel row i and column j (H x W image):

        L = 0.299 x_R + 0.587 x_G + 0.114 x_B                   (ITU-R 601 luma)
        y_c = 0.45 * x_c * L ** 0.6 * g_c * v(i, j) + n,       g = (0.70, 0.85, 1.20)
        v(i, j) = 1 - 0.4 * (dy**2 + dx**2) / 2,   dy = (i - cy) / cy,   dx = (j - cx) / cx
        n ~ Normal(0, 2 / 255), independent per pixel and channel, drawn from `rng`
        night = round(255 * clip(y, 0, 1))

    with cy = (H - 1) / 2 and cx = (W - 1) / 2. That is: darkening, where the luma of
    0.45 * x * L ** 0.6 is 0.45 * L ** 1.6 (gamma 1.6 and gain 0.45 on the luminance, hue kept);
    a blue shift (red x0.70, green x0.85, blue x1.20: every pixel's blue/red ratio grows 1.71x);
    a radial vignette, 1 at the centre and 0.6 in the corners; faint sensor noise. Apart from the
    noise the mapping is deterministic, so a model can learn it.
    """
    if day.dtype != np.uint8 or day.ndim != 3 or day.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 array, got {day.dtype} {day.shape}")
    h, w = day.shape[:2]
    x = day.astype(np.float32) / 255.0
    luma = x @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    y = x * (NIGHT_GAIN * luma ** (NIGHT_GAMMA - 1.0))[:, :, None]
    y = y * np.asarray(NIGHT_CHANNEL_GAINS, dtype=np.float32)
    cy, cx = max((h - 1) / 2, 0.5), max((w - 1) / 2, 0.5)
    dy = (np.arange(h, dtype=np.float32)[:, None] - cy) / cy
    dx = (np.arange(w, dtype=np.float32)[None, :] - cx) / cx
    vignette = 1.0 - VIGNETTE_STRENGTH * (dy**2 + dx**2) / 2.0
    y = y * vignette[:, :, None]
    y = y + rng.normal(0.0, NOISE_SIGMA, size=y.shape).astype(np.float32)
    return np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)


def _load_photo(name: str) -> np.ndarray:
    photo = np.asarray(_PHOTOS[name]())
    if photo.ndim != 3 or photo.shape[2] < 3 or photo.dtype != np.uint8:
        raise ValueError(f"skimage photo {name!r} is not 8-bit colour: {photo.dtype} {photo.shape}")
    return np.ascontiguousarray(photo[:, :, :3])


def _pyramid(photo: np.ndarray, size: int) -> list[np.ndarray]:
    """The photo resized so its short side is scale * size, for each scale in SCALES."""
    h, w = photo.shape[:2]
    img = Image.fromarray(photo)
    out = []
    for scale in SCALES:
        f = scale * size / min(h, w)
        new = (max(size, round(w * f)), max(size, round(h * f)))
        out.append(np.asarray(img.resize(new, Image.Resampling.LANCZOS)))
    return out


def _crops(names: tuple[str, ...], count: int, size: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """`count` random size x size crops, taken round-robin from the named photos at random scales."""
    pyramids = {name: _pyramid(_load_photo(name), size) for name in names}
    out = []
    for k in range(count):
        name = names[k % len(names)]
        level = pyramids[name][int(rng.integers(len(SCALES)))]
        h, w = level.shape[:2]
        top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        out.append((name, np.ascontiguousarray(level[top : top + size, left : left + size])))
    return out


def build_day_night(dest: Path, size: int = 64, n_train: int = 48, n_val: int = 8, seed: int = 0) -> Path:
    """Write dest/train/A, dest/train/B, dest/val/A, dest/val/B PNGs (A=day, B=night, same stem). Returns dest.

    Train crops come from TRAIN_PHOTOS, val crops from VAL_PHOTOS (whole photos held out), each a
    random size x size crop of the photo resized to a short side of 2, 3 or 4 x size; B is
    night_from_day(A). Stems are "NNNN_<photo>". The output depends only on the arguments: train and
    val use separate random streams derived from `seed`, so the val set does not change with n_train.
    Files of an earlier build in these folders that this build does not write again are removed.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train and n_val must be >= 0, got {n_train}, {n_val}")
    dest = Path(dest)
    train_seq, val_seq = np.random.SeedSequence(seed).spawn(2)
    for split, names, count, seq in (
        ("train", TRAIN_PHOTOS, n_train, train_seq),
        ("val", VAL_PHOTOS, n_val, val_seq),
    ):
        rng = np.random.default_rng(seq)
        crops = _crops(names, count, size, rng) if count else []
        stems = [f"{k:04d}_{name}" for k, (name, _) in enumerate(crops)]
        for side in ("A", "B"):
            folder = dest / split / side
            folder.mkdir(parents=True, exist_ok=True)
            keep = {f"{stem}.png" for stem in stems}
            for old in folder.iterdir():
                if old.is_file() and _NAME.match(old.name) and old.name not in keep:
                    old.unlink()
        for stem, (_, day) in zip(stems, crops, strict=True):
            write_image(dest / split / "A" / f"{stem}.png", day)
            write_image(dest / split / "B" / f"{stem}.png", night_from_day(day, rng))
    return dest
