"""Paired-safe albumentations pipelines: one random geometry for every image of a sample."""

from __future__ import annotations

import cv2
import numpy as np

from i2i.config import PREPROCESS_MODES, DataConfig
from i2i.data.device_augment import DeferredGeometry
from i2i.runtime.process import import_offline

A = import_offline("albumentations")  # without its network version check


class ScaleWidth(A.DualTransform):
    """Resize so the width is `width`, keeping the aspect ratio, but never below `min_height` in height.

    Deterministic, so every image target of a sample gets the same size; a mask (class ids) is resized by
    nearest neighbour, never interpolated.
    """

    def __init__(self, width: int, min_height: int = 0, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.width, self.min_height = width, min_height

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        h, w = img.shape[:2]
        height = max(round(self.width * h / w), self.min_height)
        if (h, w) == (height, self.width):
            return img
        return _resized(img, self.width, height, cv2.INTER_CUBIC)

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        h, w = mask.shape[:2]
        height = max(round(self.width * h / w), self.min_height)
        return mask if (h, w) == (height, self.width) else _resized(mask, self.width, height, cv2.INTER_NEAREST)


def _resized(img: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    """cv2.resize that keeps a trailing channel axis of 1 and any channel count (OpenCV resizes at most 512)."""
    if img.ndim == 3 and img.shape[2] > 4:  # band by band: some OpenCV builds limit the channels per call
        return np.stack([cv2.resize(img[:, :, c], (width, height), interpolation=interpolation)
                         for c in range(img.shape[2])], axis=2)
    out = cv2.resize(img, (width, height), interpolation=interpolation)
    return out[:, :, None] if out.ndim == 2 and img.ndim == 3 else out


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


def paired_transform(cfg: DataConfig, train: bool = True) -> A.Compose | DeferredGeometry | InputOnly:
    """Apply with `t(image=input, target=target)`: both images get the same resize, crop and flip.

    With `cfg.augment_on == "device"` a training transform only draws the geometry (see device_augment).
    """
    shared = (DeferredGeometry(cfg) if train and cfg.augment_on == "device" else
              A.Compose(geometry(cfg, train), additional_targets={"target": "image"}, is_check_shapes=False))
    return InputOnly(shared, input_photometric()) if train and cfg.input_augment else shared


def input_photometric() -> A.Compose:
    """Colour jitter, a slight blur and sensor noise, for the input image of a pair alone (never the target): the
    generator learns to ignore how the input was shot (the reference's PR #1494). Off unless `input_augment`."""
    return A.Compose([
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8),
        A.GaussianBlur(sigma_limit=(0.1, 1.0), p=0.3),
        A.GaussNoise(std_range=(0.0, 0.03), p=0.3),
    ])


class InputOnly:
    """A paired transform followed by photometric steps on the input alone; one sample seed drives both."""

    def __init__(self, shared: A.Compose | DeferredGeometry, photometric: A.Compose) -> None:
        self.shared, self.photometric = shared, photometric

    def set_random_seed(self, seed: int) -> None:
        self.shared.set_random_seed(seed)
        self.photometric.set_random_seed(seed ^ 0x5EED)  # its own stream: the geometry draws stay as without it

    def __call__(self, image: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
        out = self.shared(image=image, target=target)
        return {**out, "image": np.clip(self.photometric(image=out["image"])["image"], 0.0, 1.0)}


def single_transform(cfg: DataConfig, train: bool = True) -> A.Compose | DeferredGeometry:
    """Apply with `t(image=x)`: one image's own random geometry (unpaired data)."""
    if train and cfg.augment_on == "device":
        return DeferredGeometry(cfg)
    return A.Compose(geometry(cfg, train))
