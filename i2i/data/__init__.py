"""The data layer's entry point: what a model consumes (`DataSpec`) and the one factory that builds it.

Importing this package is cheap: the datasets, and albumentations behind them, load when a dataset is made.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from i2i.config import DIRECTIONS, DataConfig, value_ranges

if TYPE_CHECKING:
    import numpy as np
    from torch.utils.data import Dataset

log = logging.getLogger(__name__)

DATA_KINDS = ("paired", "unpaired")


@dataclass(frozen=True)
class DataSpec:
    """What a model trains on: `kind` picks the dataset, `channels` are (input, target) or (A, B) channel
    counts, and `direction` says which side of a paired sample is the input."""

    kind: str
    channels: tuple[int, int] = (3, 3)
    direction: str = "AtoB"

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"unknown data kind {self.kind!r}; choose from {', '.join(DATA_KINDS)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}; choose from {', '.join(DIRECTIONS)}")


def make_dataset(spec: DataSpec, data: DataConfig, split: str = "train", train: bool = True) -> Dataset:
    """The dataset `spec` asks for, with `data`'s preprocessing (random crops and flips only when `train`).

    paired: PairedDataset yielding {"input", "target"}; unpaired: UnpairedDataset yielding {"A", "B"}.
    """
    if spec.kind == "paired":
        from i2i.data.paired import PairedDataset
        from i2i.data.transforms import paired_transform

        return PairedDataset(data.root, split=split, layout=data.layout, direction=spec.direction,
                             in_channels=spec.channels[0], out_channels=spec.channels[1],
                             transform=paired_transform(data, train), strict=data.strict,
                             inputs=tuple(data.inputs.split(",")), a_ranges=value_ranges(data.a_range),
                             b_ranges=value_ranges(data.b_range), label_nc=data.label_nc, palette=data.palette)
    from i2i.data.transforms import single_transform
    from i2i.data.unpaired import UnpairedDataset

    return UnpairedDataset(data.root, split=split, a_channels=spec.channels[0], b_channels=spec.channels[1],
                           transform=single_transform(data, train), serial=data.serial, strict=data.strict,
                           ranges={"A": value_ranges(data.a_range), "B": value_ranges(data.b_range)})


def with_palette(data: DataConfig, spec: DataSpec) -> DataConfig:
    """`data` with the class colours of its label maps filled in: from --label-colors, or learned from the training
    labels when they are colour-coded; unchanged without --label-nc, with a palette already, or for index labels."""
    if not data.label_nc or data.palette is not None:
        return data
    from i2i.data.io import ImageReadError
    from i2i.data.labels import learn_palette, read_palette
    from i2i.data.paired import PairedDataset

    if data.label_colors:
        return dataclasses.replace(data, palette=read_palette(data.label_colors, data.label_nc))
    dataset = PairedDataset(data.root, layout=data.layout, direction=spec.direction, in_channels=data.label_nc,
                            inputs=tuple(data.inputs.split(",")), label_nc=data.label_nc)

    def maps() -> Iterator[np.ndarray]:
        for index in range(len(dataset)):
            try:
                yield dataset.raw_labels(index)
            except ImageReadError:
                continue  # reported when training reads it

    first = next(maps(), None)
    if first is None or first.ndim == 2 or first.shape[2] == 1:
        return data  # class ids as they are
    palette = learn_palette((m for m in maps() if m.ndim == 3 and m.shape[2] >= 3), data.label_nc)
    log.info("class colours learned from %d training label maps: %s", len(dataset),
             " ".join("#{:02x}{:02x}{:02x}".format(*c) for c in palette))
    return dataclasses.replace(data, palette=palette)
