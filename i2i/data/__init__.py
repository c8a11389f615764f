"""The data layer's entry point: what a model consumes (`DataSpec`) and the one factory that builds it.

Importing this package is cheap: the datasets, and albumentations behind them, load when a dataset is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from i2i.config import DIRECTIONS, DataConfig

if TYPE_CHECKING:
    from torch.utils.data import Dataset

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
                             transform=paired_transform(data, train), strict=data.strict)
    from i2i.data.transforms import single_transform
    from i2i.data.unpaired import UnpairedDataset

    return UnpairedDataset(data.root, split=split, a_channels=spec.channels[0], b_channels=spec.channels[1],
                           transform=single_transform(data, train), serial=data.serial, strict=data.strict)
