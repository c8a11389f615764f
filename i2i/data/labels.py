"""Semantic label maps as one-hot inputs (pix2pixHD's --label_nc): class ids from index or colour-coded images."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from i2i.data.io import ImageReadError, printable

log = logging.getLogger(__name__)

PIXELS_PER_IMAGE = 4096  # pixels sampled from each training label map when learning a palette


def class_ids(array: np.ndarray, label_nc: int, palette: np.ndarray | None, source: object = "the label map",
              ) -> np.ndarray:
    """An HxW[x1] index map (gray or palette indices) or an HxWx3 colour map -> HxW uint8/uint16 class ids.

    Colours go to the nearest palette colour (so JPEG noise around edges does not matter); an index map is
    taken as it is. Ids >= `label_nc` stay as they are: `one_hot` gives them no class (the usual "ignore" 255).
    """
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return array
    if palette is None:
        raise ImageReadError(f"{source} is a colour image, but the run has no class colours: give --label-colors, "
                             "or index labels (one class id per pixel, gray or palette PNG)")
    rgb = array[:, :, :3].astype(np.int32)
    if array.dtype == np.uint16:
        rgb = (rgb + 128) // 257
    return nearest_colour(rgb, palette)


def nearest_colour(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """HxWx3 colours -> HxW uint8 index of the nearest palette colour (squared RGB distance)."""
    flat = rgb.reshape(-1, 3).astype(np.int32)
    colours = palette.astype(np.int32)
    # |x - p|^2 = |x|^2 - 2 x.p + |p|^2, in chunks so a large map never needs an N x K x 3 array
    out = np.empty(len(flat), dtype=np.uint8)
    for start in range(0, len(flat), 1 << 18):
        chunk = flat[start : start + (1 << 18)]
        distance = (colours**2).sum(1)[None] - 2 * chunk @ colours.T
        out[start : start + len(chunk)] = distance.argmin(1)
    return out.reshape(rgb.shape[:2])


def one_hot(ids: np.ndarray, label_nc: int, source: object = "the label map") -> np.ndarray:
    """HxW class ids -> HxWxK float32 in {0, 1}; ids >= K get no class (all zero), with a warning naming them."""
    out = np.zeros((*ids.shape, label_nc), dtype=np.float32)
    valid = ids < label_nc
    if not valid.all():
        unknown = np.unique(ids[~valid])
        log.warning("%s: class id(s) %s are >= --label-nc %d and get no class (all-zero one-hot)", printable(source),
                    ", ".join(str(int(v)) for v in unknown[:8]), label_nc)
    rows, cols = np.nonzero(valid)
    out[rows, cols, ids[valid].astype(np.intp)] = 1.0
    return out


def read_palette(path: str | os.PathLike, label_nc: int) -> list[list[int]]:
    """A --label-colors file: one class per line as 'R G B' (or 'R,G,B'; '#' starts a comment), class id = line."""
    colours = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        try:
            rgb = [int(v) for v in text]
        except ValueError:
            raise ValueError(f"{path}, line {number}: {line.strip()!r} is not three numbers R G B") from None
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError(f"{path}, line {number}: {line.strip()!r} is not three numbers R G B in 0..255")
        colours.append(rgb)
    if len(colours) != label_nc:
        raise ValueError(f"{path} lists {len(colours)} colour(s) for --label-nc {label_nc}: one line per class")
    return colours


def learn_palette(maps: Iterable[np.ndarray], label_nc: int, seed: int = 0) -> list[list[int]]:
    """The `label_nc` class colours of colour-coded label maps (HxWx3 uint8), robust to JPEG noise.

    Pixels sampled from every map are counted by exact colour; the most frequent colour seeds the first class,
    then each next seed is the frequent colour farthest from those chosen (noise colours are rare, so they are
    never seeds), and a few k-means rounds weighted by the counts settle the centres. Sorted by brightness so
    the order does not depend on the maps' order.
    """
    rng = np.random.default_rng(seed)
    samples = []
    for rgb in maps:
        flat = rgb[:, :, :3].reshape(-1, 3)
        samples.append(flat[rng.integers(0, len(flat), size=min(PIXELS_PER_IMAGE, len(flat)))])
    if not samples:
        raise ValueError("no label maps to learn the class colours from")
    colours, counts = np.unique(np.concatenate(samples), axis=0, return_counts=True)
    if len(colours) < label_nc:
        raise ValueError(f"the training labels have {len(colours)} distinct colour(s), fewer than --label-nc "
                         f"{label_nc}")
    colours = colours.astype(np.float64)
    frequent = counts >= max(2, counts.sum() * 1e-4)  # rare colours are JPEG noise at edges, not classes
    candidates, weights = (colours[frequent], counts[frequent]) if frequent.sum() >= label_nc else (colours, counts)
    centres = [candidates[weights.argmax()]]
    for _ in range(1, label_nc):
        distance = np.min([((candidates - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(candidates[distance.argmax()])
    centre = np.array(centres)
    for _ in range(20):
        nearest = np.argmin(((colours[:, None] - centre[None]) ** 2).sum(2), axis=1)
        for k in range(label_nc):
            member = nearest == k
            if member.any():
                centre[k] = np.average(colours[member], axis=0, weights=counts[member])
    centre = np.clip(np.round(centre), 0, 255).astype(int)
    order = np.lexsort((centre[:, 2], centre[:, 1], centre[:, 0], centre.sum(1)))
    return centre[order].tolist()


def colour_map(label_nc: int) -> np.ndarray:
    """K distinct display colours (K x 3 uint8) for index labels that come with none: the PASCAL VOC bit pattern."""
    colours = np.zeros((label_nc, 3), dtype=np.uint8)
    for k in range(label_nc):
        value, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours[k] = (r, g, b)
    return colours
