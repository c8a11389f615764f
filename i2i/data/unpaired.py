"""Unpaired images: ROOT/trainA/ and ROOT/trainB/ (or testA/, testB/), any counts, any sizes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from i2i.data.device_augment import GEOMETRY
from i2i.data.io import ImageReadError, list_images, read_image, to_float
from i2i.data.layout import DataError, domain_folder
from i2i.data.sampling import Skipped, split_key
from i2i.data.tensors import to_tensor


class UnpairedDataset(Dataset):
    """Yields {"A", "B", "path_A", "path_B"}; each image gets its own random geometry.

    An epoch is max(|A|, |B|) samples: item i takes A[i % |A|] and, unless `serial`, a B drawn at
    random from the sample's seed (so a resumed run draws the same Bs); with `serial`, B[i % |B|].
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        a_channels: int = 3,
        b_channels: int = 3,
        transform: Callable[..., dict] | None = None,
        serial: bool = False,
        strict: bool = False,
        ranges: dict[str, list[tuple[float, float]] | None] | None = None,
    ) -> None:
        self.files: dict[str, list[Path]] = {}
        for domain in ("A", "B"):
            folder = domain_folder(root, split, domain)
            self.files[domain] = list_images(folder, recursive=True)
            if not self.files[domain]:
                raise DataError(f"no images in {folder}")
        self.channels = {"A": a_channels, "B": b_channels}
        self.ranges = ranges or {"A": None, "B": None}  # each domain's raw value range per band (io.to_float)
        self.transform, self.serial, self.strict = transform, serial, strict

    def __len__(self) -> int:
        return max(len(self.files["A"]), len(self.files["B"]))

    def file_list(self) -> list[Path]:
        """Every file the dataset reads, A then B (the run records their fingerprint)."""
        return [*self.files["A"], *self.files["B"]]

    def _load(self, domain: str, index: int, seed: int) -> dict[str, torch.Tensor]:
        """{domain: image} plus, when the transform defers it to the device, {"geometry:" + domain: ...}."""
        path = self.files[domain][index]
        x = to_float(read_image(path), self.channels[domain], self.ranges[domain], source=path)
        if self.transform is None:
            return {domain: to_tensor(x)}
        self.transform.set_random_seed(seed)
        out = self.transform(image=x)
        loaded = {domain: to_tensor(out["image"])}
        if "geometry" in out:
            loaded[GEOMETRY + domain] = torch.from_numpy(out["geometry"])
        return loaded

    def __getitem__(self, key: int | tuple[int, int]) -> dict | Skipped:
        index, seed = split_key(key)
        seed_a, seed_b, pick = (int(v) for v in np.random.default_rng(seed).integers(0, 2**31 - 1, size=3))
        indices = {"A": index % len(self.files["A"]),
                   "B": index % len(self.files["B"]) if self.serial else pick % len(self.files["B"])}
        images = {}
        for domain, domain_seed in (("A", seed_a), ("B", seed_b)):
            try:
                images.update(self._load(domain, indices[domain], domain_seed))
            except ImageReadError as err:
                if self.strict:
                    raise
                return Skipped(str(self.files[domain][indices[domain]]), str(err))
        paths = {f"path_{d}": str(self.files[d][i]) for d, i in indices.items()}
        return {**images, **paths}
