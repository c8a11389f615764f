"""Paired images: side-by-side A|B files, or A/ and B/ folders matched by file stem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from i2i.config import DIRECTIONS, LAYOUTS
from i2i.data.device_augment import GEOMETRY
from i2i.data.io import ImageReadError, list_images, read_image, stack_parts, to_float
from i2i.data.labels import class_ids, one_hot
from i2i.data.layout import DataError, detect_layout, match_pairs, split_folder
from i2i.data.sampling import Skipped, split_key
from i2i.data.tensors import to_tensor


class PairedDataset(Dataset):
    """Yields {"input", "target", "path"}: two aligned images in [-1, 1] with identical augmentation.

    `direction` picks which side is the input: AtoB uses A (the left half / A folder) as input.
    Unreadable images come back as `Skipped` (counted by the trainer) unless `strict`.
    `inputs`: for A/ + B/ folders, the folders stacked into the A side, in order (e.g. ("A", "A_depth")).
    `a_ranges`/`b_ranges`: each side's raw value range per band (see io.to_float). `label_nc`: the input is a
    label map of that many classes, given as one-hot channels (colours mapped through `palette`).
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
        inputs: tuple[str, ...] = ("A",),
        a_ranges: list[tuple[float, float]] | None = None,
        b_ranges: list[tuple[float, float]] | None = None,
        label_nc: int = 0,
        palette: list[list[int]] | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise DataError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
        if direction not in DIRECTIONS:
            raise DataError(f"unknown direction {direction!r}; choose from {', '.join(DIRECTIONS)}")
        self.folder = split_folder(root, split)
        self.layout = detect_layout(self.folder) if layout == "auto" else layout
        self.inputs = tuple(inputs)
        if self.inputs != ("A",) and self.layout != "folders":
            raise DataError(f"--inputs {','.join(self.inputs)} stacks folders of the A/ + B/ layout, but "
                            f"{self.folder} holds side-by-side A|B files")
        if self.layout == "folders":
            self.items: list[tuple[Path, ...]] = match_pairs(*(self.folder / name for name in self.inputs),
                                                             self.folder / "B")
        else:
            self.items = [(p,) for p in list_images(self.folder)]
            if not self.items:
                raise DataError(f"no images in {self.folder}")
        self.swap = direction == "BtoA"
        self.in_channels, self.out_channels = in_channels, out_channels
        self.transform, self.strict = transform, strict
        self.ranges = {"A": a_ranges, "B": b_ranges}
        self.label_nc, self.palette = label_nc, None if palette is None else np.array(palette, dtype=np.uint8)
        self.label_side = ("B" if self.swap else "A") if label_nc else None
        if label_nc and in_channels != label_nc:
            raise DataError(f"--label-nc {label_nc} gives the generator {label_nc} one-hot input channels, but it "
                            f"takes {in_channels}")

    def __len__(self) -> int:
        return len(self.items)

    def file_list(self) -> list[Path]:
        """Every file the dataset reads, in its order (the run records their fingerprint)."""
        return [p for item in self.items for p in item]

    def read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The (A, B) arrays of one item, before direction, channel conversion or augmentation: as the files hold
        them, except that stacked inputs come as one float32 array in [0, 1] (each part scaled by its own range),
        and a label side as class ids (palette indices kept)."""
        paths = self.items[index]
        if len(paths) == 1:
            a, b = halves(paths[0])
            if self.label_side is not None:  # class ids from the half's colours (a side-by-side file is RGB)
                source = f"the {self.label_side} half of {paths[0]}"
                ids = class_ids(a if self.label_side == "A" else b, self.label_nc, self.palette, source)
                a, b = (ids, b) if self.label_side == "A" else (a, ids)
            return a, b
        parts, b = self.read_parts(index)
        a = parts[0] if len(parts) == 1 else stack_parts(list(parts), self.ranges["A"], source=paths[0])
        return a, b

    def read_parts(self, index: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """The A parts (one per --inputs folder, as the files hold them) and B of an A/ + B/ item."""
        *a_paths, b_path = self.items[index]
        parts = tuple(self._read(p, "A") for p in a_paths)
        b = self._read(b_path, "B")
        for p, part in zip(a_paths, parts, strict=True):
            if part.shape[:2] != b.shape[:2]:
                raise ImageReadError(f"{p} and {b_path} differ in size: "
                                     f"{part.shape[1]}x{part.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
        return parts, b

    def raw_labels(self, index: int) -> np.ndarray:
        """The label side of one item as the file holds it (palette indices kept, colours not yet mapped)."""
        paths = self.items[index]
        if len(paths) == 1:
            return halves(paths[0])[0 if self.label_side == "A" else 1]
        return read_image(paths[0] if self.label_side == "A" else paths[-1], indices=True)

    def _side_name(self, index: int, role: str) -> str:
        """The file (or half of one) that holds an item's input or target, for messages."""
        paths = self.items[index]
        side = ("B" if self.swap else "A") if role == "input" else ("A" if self.swap else "B")
        if len(paths) == 1:
            return f"the {side} half of {paths[0]}"
        if side == "B":
            return str(paths[-1])
        return str(paths[0]) if len(paths) == 2 else " + ".join(str(p) for p in paths[:-1])

    def _read(self, path: Path, side: str) -> np.ndarray:
        if side != self.label_side:
            return read_image(path)
        return class_ids(read_image(path, indices=True), self.label_nc, self.palette, path)

    def source_target(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The (input, target) arrays of one item as files hold them: direction applied, nothing converted."""
        a, b = self.read_pair(index)
        return (b, a) if self.swap else (a, b)

    def input_ranges(self) -> tuple[list[tuple[float, float]] | None, list[tuple[float, float]] | None]:
        """The (input, target) value ranges by band: direction applied; stacked inputs are already in [0, 1]."""
        a = [(0.0, 1.0)] if len(self.inputs) > 1 else self.ranges["A"]
        return (self.ranges["B"], a) if self.swap else (a, self.ranges["B"])

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
        source_range, target_range = self.input_ranges()
        try:
            target = to_float(target, self.out_channels, target_range, source=self._side_name(index, "target"))
            if self.label_nc:
                ids = source
            else:
                source = to_float(source, self.in_channels, source_range, source=self._side_name(index, "input"))
        except ImageReadError as err:
            if self.strict:
                raise
            return Skipped(path, str(err))
        geometry = {}
        if self.label_nc:  # class ids are resized as a mask (nearest), never interpolated
            if self.transform is not None:
                if seed is not None:
                    self.transform.set_random_seed(seed)
                out = self.transform(image=target, mask=ids)
                target, ids = out["image"], out["mask"]
            source = one_hot(ids, self.label_nc, source=path)
        elif self.transform is not None:
            if seed is not None:
                self.transform.set_random_seed(seed)
            out = self.transform(image=source, target=target)
            source, target = out["image"], out["target"]
            if "geometry" in out:  # applied later on the training device, the same for both images
                geometry = {GEOMETRY + k: torch.from_numpy(out["geometry"]) for k in ("input", "target")}
        return {"input": to_tensor(source), "target": to_tensor(target), "path": path, **geometry}


def halves(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The A and B halves of a side-by-side A|B file."""
    ab = read_image(path)
    w = ab.shape[1]
    if w % 2:
        raise ImageReadError(f"side-by-side image {path} has odd width {w}: cannot split it into A|B halves")
    return ab[:, : w // 2], ab[:, w // 2 :]
