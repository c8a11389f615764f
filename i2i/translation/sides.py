"""Side-by-side A|B inputs: take one half before translating (--side), or say when inputs look like pairs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import numpy as np

from i2i.data.io import image_size, is_image_file

SIDES = ("A", "B")
PAIR_RATIO = (1.9, 2.1)  # width / height of an A|B file whose halves are (about) square
SQUARE_PREPROCESS = ("resize_and_crop", "crop", "scale_width_and_crop")  # training inputs: square crops
X = TypeVar("X")


def half(x: X, side: str | None) -> X:
    """The left (A) or right (B) half of an HxW[xC] array or a [N]xCxHxW tensor, as training splits an A|B file
    (an odd width drops the middle column); `side=None`: `x` itself."""
    if side is None:
        return x
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    axis = 1 if isinstance(x, np.ndarray) else -1
    width = x.shape[axis]  # type: ignore[attr-defined]
    keep = slice(0, width // 2) if side == "A" else slice(width - width // 2, width)
    index = (slice(None), keep) if axis == 1 else (..., keep)
    return x[index]  # type: ignore[index]


def first_images(path: Path, limit: int = 3) -> list[Path]:
    """Up to `limit` image files of `path` (itself, or the first found walking it in sorted order)."""
    if path.is_file():
        return [path] if is_image_file(path) else []
    found: list[Path] = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in sorted(files) if not f.startswith(".") and is_image_file(Path(folder) / f)]
        if len(found) >= limit:
            break
    return found[:limit]


def looks_side_by_side(path: Path, preprocess: str) -> str | None:
    """A warning when the first images of `path` are about twice as wide as high (an A|B pair layout) and the
    model was trained on square inputs (its `preprocess` crops squares: the halves of such files), else None."""
    if preprocess not in SQUARE_PREPROCESS:
        return None
    peeked = [(image, image_size(image)) for image in first_images(path)]
    sizes = [(image, size) for image, size in peeked if size is not None]  # the translation names the others
    pairs = [(image, w, h) for image, (w, h) in sizes if h and PAIR_RATIO[0] <= w / h <= PAIR_RATIO[1]]
    if not sizes or len(pairs) < len(sizes):
        return None
    image, w, h = pairs[0]
    return (f"warning: {image} is {w}x{h}, twice as wide as high, like side-by-side A|B training pairs, and the "
            "model was trained on square inputs: the whole double-width image is translated; --side A translates "
            "the left half (A), --side B the right half (B)")
