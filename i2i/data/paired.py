"""Paired images: side-by-side A|B files, or A/ and B/ folders matched by file stem."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from i2i.config import DIRECTIONS, LAYOUTS
from i2i.data.device_augment import GEOMETRY
from i2i.data.io import ImageReadError, list_images, read_image, to_float
from i2i.data.sampling import Skipped, split_key
from i2i.data.tensors import to_tensor


class DataError(ValueError):
    """The data folder cannot be used as given; the message names the paths involved."""


def split_folder(root: str | Path, split: str) -> Path:
    """`root/split` when it exists, otherwise `root` itself (a folder holding one split)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    return root / split if (root / split).is_dir() else root


def detect_layout(folder: Path) -> str:
    """'folders' when folder/A and folder/B exist, 'side_by_side' when the folder holds images."""
    if (folder / "A").is_dir() and (folder / "B").is_dir():
        return "folders"
    if list_images(folder):
        return "side_by_side"
    raise DataError(f"no paired images in {folder}: expected A|B image files, or A/ and B/ sub-folders "
                    "with matching file names")


def match_pairs(folder_a: Path, folder_b: Path) -> list[tuple[Path, Path]]:
    """Pair files of two folders by stem (recursively); every A needs its B and vice versa."""
    def by_stem(folder: Path) -> dict[str, Path]:
        stems: dict[str, Path] = {}
        for p in list_images(folder, recursive=True):
            stem = str(p.relative_to(folder).with_suffix(""))
            if stem in stems:
                raise DataError(f"two images share the name {stem!r}: {stems[stem]} and {p}; pairs are matched "
                                "by name, so keep one of them")
            stems[stem] = p
        return stems

    a, b = by_stem(folder_a), by_stem(folder_b)
    if not a:
        raise DataError(f"no images in {folder_a}")
    if not b:
        raise DataError(f"no images in {folder_b}")
    for name, mine, other, folder in (("A", a, b, folder_b), ("B", b, a, folder_a)):
        missing = sorted(set(mine) - set(other))
        if missing:
            listed = ", ".join(str(mine[s]) for s in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(f"{len(missing)} {name} image(s) have no partner with the same name in {folder}: "
                            f"{listed}{more}")
    return [(a[s], b[s]) for s in sorted(a)]


class PairedDataset(Dataset):
    """Yields {"input", "target", "path"}: two aligned images in [-1, 1] with identical augmentation.

    `direction` picks which side is the input: AtoB uses A (the left half / A folder) as input.
    Unreadable images come back as `Skipped` (counted by the trainer) unless `strict`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        layout: str = "auto",
        direction: str = "AtoB",
        in_channels: int = 3,
        out_channels: int = 3,
        transform: A.Compose | None = None,
        strict: bool = False,
    ) -> None:
        if layout not in LAYOUTS:
            raise DataError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
        if direction not in DIRECTIONS:
            raise DataError(f"unknown direction {direction!r}; choose from {', '.join(DIRECTIONS)}")
        self.folder = split_folder(root, split)
        self.layout = detect_layout(self.folder) if layout == "auto" else layout
        if self.layout == "folders":
            self.items: list[tuple[Path, ...]] = match_pairs(self.folder / "A", self.folder / "B")
        else:
            self.items = [(p,) for p in list_images(self.folder)]
            if not self.items:
                raise DataError(f"no images in {self.folder}")
        self.swap = direction == "BtoA"
        self.in_channels, self.out_channels = in_channels, out_channels
        self.transform, self.strict = transform, strict

    def __len__(self) -> int:
        return len(self.items)

    def read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The (A, B) arrays of one item, before direction, channel conversion or augmentation."""
        paths = self.items[index]
        if len(paths) == 2:
            a, b = read_image(paths[0]), read_image(paths[1])
            if a.shape[:2] != b.shape[:2]:
                raise ImageReadError(f"{paths[0]} and {paths[1]} differ in size: "
                                     f"{a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
            return a, b
        ab = read_image(paths[0])
        w = ab.shape[1]
        if w % 2:
            raise ImageReadError(f"side-by-side image {paths[0]} has odd width {w}: cannot split it into A|B halves")
        return ab[:, : w // 2], ab[:, w // 2 :]

    def __getitem__(self, key: int | tuple[int, int]) -> dict | Skipped:
        index, seed = split_key(key)
        path = str(self.items[index][0])
        try:
            a, b = self.read_pair(index)
        except ImageReadError as err:
            if self.strict:
                raise
            return Skipped(path, str(err))
        source, target = (b, a) if self.swap else (a, b)
        source, target = to_float(source, self.in_channels), to_float(target, self.out_channels)
        geometry = {}
        if self.transform is not None:
            if seed is not None:
                self.transform.set_random_seed(seed)
            out = self.transform(image=source, target=target)
            source, target = out["image"], out["target"]
            if "geometry" in out:  # applied later on the training device, the same for both images
                geometry = {GEOMETRY + k: torch.from_numpy(out["geometry"]) for k in ("input", "target")}
        return {"input": to_tensor(source), "target": to_tensor(target), "path": path, **geometry}
