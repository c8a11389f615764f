"""The checkerboard figure: spectral energy at the 2- and 4-pixel periods that strided upsampling leaves."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from i2i.data.io import list_images, read_image

if TYPE_CHECKING:
    pass
from i2i.evaluation.paired import _unit_float

# -- checkerboard figure ---------------------------------------------------------------------------------------
#
# Stride-2 upsampling (transposed convolutions above all) stamps a pattern with a period of 2 px on its output,
# and one of 4 px when two such layers are stacked. Definition, per image:
# - luma Y in [0, 1] (ITU-R 601: 0.299 R + 0.587 G + 0.114 B; gray as is; alpha dropped; 8/16-bit mapped first);
# - the mean removed, times a separable periodic Hann window (0.5 - 0.5 cos(2 pi k / n)), so image borders add
#   no spurious edges;
# - P = |FFT2|^2 over all H x W bins (frequencies fftfreq(H) x fftfreq(W), in cycles per pixel);
# - the share of P in the 15 peaks (fy, fx) with fy, fx in {0, 1/4, -1/4, 1/2} other than (0, 0) -- periods
#   of 2 and 4 px along either axis and diagonally -- each counted with the 3 x 3 bins around its nearest bin
#   (the periodic Hann window spreads a tone that falls on a bin over exactly those), divided by the total of P.
# checkerboard_energy = the mean share over a set of images; checkerboard_score(outputs, targets) = the ratio
# of the outputs' energy to the real targets': 1.0 = as much as real photos have there, > 1 = checkerboard,
# < 1 = the outputs are blurrier than the photos at those scales. Images need H, W >= 8.

CHECKERBOARD_PERIODS = (2, 4)
_CHECKERBOARD_MIN_SIDE = 8


def _luma(image: np.ndarray, name: str) -> np.ndarray:
    x = _unit_float(image, name)
    if x.shape[2] in (2, 4):  # drop alpha
        x = x[:, :, :-1]
    return x[:, :, 0] if x.shape[2] == 1 else x @ np.array([0.299, 0.587, 0.114])


def _hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def _peak_bins(n: int) -> dict[float, np.ndarray]:
    """Per axis of length n: frequency -> the bin indices (nearest bin and its two neighbours, wrapped)."""
    freqs = {0.0} | {sign / p for p in CHECKERBOARD_PERIODS for sign in (1, -1)}  # +-1/2 coincide for even n
    return {f: (round(f * n) + np.arange(-1, 2)) % n for f in sorted(freqs)}


def checkerboard_share(image: np.ndarray) -> float:
    """The share of an image's (windowed, mean-free) luma power at the 2- and 4-px periods; 0 for a flat image.

    See the definition above `CHECKERBOARD_PERIODS`. `image`: HxW[xC] uint8 / uint16 / float in [0, 1].
    """
    y = _luma(image, "image")
    h, w = y.shape
    if min(h, w) < _CHECKERBOARD_MIN_SIDE:
        raise ValueError(f"the checkerboard figure needs images of at least {_CHECKERBOARD_MIN_SIDE} px a side, "
                         f"got {w}x{h}")
    if y.max() == y.min():
        return 0.0
    y = (y - y.mean()) * np.outer(_hann(h), _hann(w))
    power = np.abs(np.fft.fft2(y)) ** 2
    total = float(power.sum())
    mask = np.zeros((h, w), dtype=bool)
    rows, cols = _peak_bins(h), _peak_bins(w)
    for fy, ry in rows.items():
        for fx, cx in cols.items():
            if fy or fx:
                mask[np.ix_(ry, cx)] = True
    return float(power[mask].sum()) / total


def _image_list(images: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray],
                recursive: bool) -> list[Path | np.ndarray]:
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"not a folder: {folder}")
        items: list[Path | np.ndarray] = list(list_images(folder, recursive=recursive))
        if not items:
            raise ValueError(f"no images in {folder}")
        return items
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"an array of images must be N x H x W x C, got shape {images.shape}; "
                             "pass one image as a list of one")
        return list(images)
    return [x if isinstance(x, np.ndarray) else Path(x) for x in images]


def checkerboard_energy(images: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray], *,
                        recursive: bool = True) -> float:
    """The mean `checkerboard_share` of a folder's images (walked recursively), of image files, or of arrays."""
    items = _image_list(images, recursive)
    if not items:
        raise ValueError("no images to measure")
    return float(np.mean([checkerboard_share(x if isinstance(x, np.ndarray) else read_image(x)) for x in items]))


def checkerboard_score(outputs: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray],
                       targets: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray], *,
                       recursive: bool = True) -> float:
    """The outputs' checkerboard energy over the real targets' (folders, files or arrays; 1.0 = like the photos).

    The sets need not be paired or equally large; compare scores only across outputs scored against the same
    targets. Raises ValueError when every target is flat (no reference energy).
    """
    reference = checkerboard_energy(targets, recursive=recursive)
    if reference <= 0.0:
        raise ValueError("the target images have no spectral energy (all flat): no checkerboard reference")
    return checkerboard_energy(outputs, recursive=recursive) / reference
