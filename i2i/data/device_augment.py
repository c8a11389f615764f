"""Augmentation on the training device: the CPU only decodes, the GPU resizes, crops and flips.

Split in two so that geometry stays reproducible and paired-safe:

- `DeferredGeometry` runs in the dataset (CPU). It stands in for the albumentations pipeline, leaves
  the pixels alone and draws one geometry per call from the sample's seed: three uniform numbers
  (crop row, crop column, flip). A paired sample shares one geometry between input and target; a
  resumed run draws the same numbers, as the CPU pipeline does.
- `DeviceAugment` runs in the trainer: it moves each image to the device and applies its geometry
  there, with the same preprocess modes as the CPU pipeline (bicubic resizes, reflect padding).

Sample keys: an image under KEY gets its geometry under "geometry:KEY" (a 3-vector kept on the host,
so applying it needs no device-to-host reads).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from i2i.config import PREPROCESS_MODES, DataConfig

GEOMETRY = "geometry:"


def geometry_keys(batch: dict) -> list[str]:
    """The image keys of a sample or batch that carry a deferred geometry."""
    return [k[len(GEOMETRY):] for k in batch if k.startswith(GEOMETRY)]


class DeferredGeometry:
    """Dataset-side half: the albumentations call signature, pixels untouched, one geometry per call."""

    def __init__(self, cfg: DataConfig) -> None:
        if cfg.preprocess not in PREPROCESS_MODES:
            raise ValueError(f"unknown preprocess {cfg.preprocess!r}; choose from {', '.join(PREPROCESS_MODES)}")
        self.flip = cfg.flip
        self.rng = np.random.default_rng()

    def set_random_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, **images: np.ndarray) -> dict[str, np.ndarray]:
        u_row, u_col, u_flip = self.rng.random(3)
        flip = float(self.flip and u_flip < 0.5)
        return {**images, "geometry": np.array([u_row, u_col, flip], dtype=np.float32)}


class DeviceAugment:
    """Trainer-side half: `augment(batch, device)` -> the batch's tensors on `device`, geometry applied."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    def __call__(self, batch: dict, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for key in geometry_keys(batch):
            images, geometry = batch[key], batch[GEOMETRY + key].tolist()
            out[key] = torch.stack([
                self.apply(image.to(device, non_blocking=True), g) for image, g in zip(images, geometry, strict=True)
            ]).contiguous(memory_format=memory_format)
        for key, value in batch.items():  # anything else (e.g. plain tensors) moves as is
            if isinstance(value, torch.Tensor) and key not in out and not key.startswith(GEOMETRY):
                out[key] = value.to(device, non_blocking=True, memory_format=memory_format)
        return out

    def apply(self, x: torch.Tensor, geometry: list[float]) -> torch.Tensor:
        """One CxHxW image in [-1, 1] -> resized/padded, cropped, flipped as `cfg.preprocess` says."""
        cfg, (u_row, u_col, flip) = self.cfg, geometry
        crop = cfg.crop_size
        if cfg.preprocess == "resize_and_crop":
            x = self._resize(x, cfg.load_size, cfg.load_size)
        elif cfg.preprocess in ("scale_width", "scale_width_and_crop"):
            h, w = x.shape[-2:]
            x = self._resize(x, max(round(cfg.load_size * h / w), crop), cfg.load_size)
        elif cfg.preprocess == "crop":
            pad_h, pad_w = max(crop - x.shape[-2], 0), max(crop - x.shape[-1], 0)
            if pad_h or pad_w:  # like cv2.BORDER_REFLECT_101, split as evenly as albumentations does
                x = F.pad(x[None], (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2),
                          mode="reflect")[0]
        if cfg.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
            h, w = x.shape[-2:]
            top, left = min(int(u_row * (h - crop + 1)), h - crop), min(int(u_col * (w - crop + 1)), w - crop)
            x = x[:, top:top + crop, left:left + crop]
        if flip:
            x = x.flip(-1)
        return x.clamp(-1.0, 1.0)

    def _resize(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (height, width):
            return x
        return F.interpolate(x[None], size=(height, width), mode="bicubic", align_corners=False)[0]
