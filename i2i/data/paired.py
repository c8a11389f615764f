"""Paired images: side-by-side A|B files, or A/ and B/ folders matched by file stem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from i2i.config import DIRECTIONS, LAYOUTS
from i2i.data.device_augment import GEOMETRY
from i2i.data.io import ImageReadError, list_images, read_image, to_float
from i2i.data.layout import DataError, detect_layout, match_pairs, split_folder
from i2i.data.sampling import Skipped, split_key
from i2i.data.tensors import to_tensor


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
        transform: Callable[..., dict] | None = None,
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

    def file_list(self) -> list[Path]:
        """Every file the dataset reads, in its order (the run records their fingerprint)."""
        return [p for item in self.items for p in item]

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

    def source_target(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The (input, target) arrays of one item as files hold them: direction applied, nothing converted."""
        a, b = self.read_pair(index)
        return (b, a) if self.swap else (a, b)

    def name(self, index: int) -> str:
        """The item's file stem (the A file's, for A/ + B/ folders)."""
        return self.items[index][0].stem

    def __getitem__(self, key: int | tuple[int, int]) -> dict | Skipped:
        index, seed = split_key(key)
        path = str(self.items[index][0])
        try:
            source, target = self.source_target(index)
        except ImageReadError as err:
            if self.strict:
                raise
            return Skipped(path, str(err))
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
