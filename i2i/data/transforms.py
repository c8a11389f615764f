"""Paired-safe albumentations pipelines: one random geometry for every image of a sample."""

from __future__ import annotations

import cv2
import numpy as np

from i2i.config import PREPROCESS_MODES, DataConfig
from i2i.data.device_augment import DeferredGeometry
from i2i.process import import_offline

A = import_offline("albumentations")  # without its network version check


class ScaleWidth(A.ImageOnlyTransform):
    """Resize so the width is `width`, keeping the aspect ratio, but never below `min_height` in height.

    Deterministic, so every image target of a sample gets the same size.
    """

    def __init__(self, width: int, min_height: int = 0, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.width, self.min_height = width, min_height

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        h, w = img.shape[:2]
        height = max(round(self.width * h / w), self.min_height)
        if (h, w) == (height, self.width):
            return img
        out = cv2.resize(img, (self.width, height), interpolation=cv2.INTER_CUBIC)
        return out[:, :, None] if out.ndim == 2 else out


def geometry(cfg: DataConfig, train: bool) -> list[A.BasicTransform]:
    """The resize/crop/flip steps for `cfg.preprocess`; random crops and flips only when training."""
    if cfg.preprocess not in PREPROCESS_MODES:
        raise ValueError(f"unknown preprocess {cfg.preprocess!r}; choose from {', '.join(PREPROCESS_MODES)}")
    load, crop = cfg.load_size, cfg.crop_size
    crop_op = A.RandomCrop if train else A.CenterCrop
    steps: list[A.BasicTransform] = []
    if cfg.preprocess == "resize_and_crop":
        steps += [A.Resize(load, load, interpolation=cv2.INTER_CUBIC), crop_op(crop, crop)]
    elif cfg.preprocess == "crop":
        steps += [A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_REFLECT_101), crop_op(crop, crop)]
    elif cfg.preprocess == "scale_width":
        steps += [ScaleWidth(load, min_height=crop)]
    elif cfg.preprocess == "scale_width_and_crop":
        steps += [ScaleWidth(load, min_height=crop), crop_op(crop, crop)]
    if train and cfg.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return steps


def paired_transform(cfg: DataConfig, train: bool = True) -> A.Compose | DeferredGeometry:
    """Apply with `t(image=input, target=target)`: both images get the same resize, crop and flip.

    With `cfg.augment_on == "device"` a training transform only draws the geometry (see device_augment).
    """
    if train and cfg.augment_on == "device":
        return DeferredGeometry(cfg)
    return A.Compose(geometry(cfg, train), additional_targets={"target": "image"}, is_check_shapes=False)


def single_transform(cfg: DataConfig, train: bool = True) -> A.Compose | DeferredGeometry:
    """Apply with `t(image=x)`: one image's own random geometry (unpaired data)."""
    if train and cfg.augment_on == "device":
        return DeferredGeometry(cfg)
    return A.Compose(geometry(cfg, train))
