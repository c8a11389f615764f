"""Images as tensors: HxWxC float arrays in [0, 1] <-> CxHxW tensors in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """HxWxC float32 in [0, 1] -> CxHxW tensor in [-1, 1] (clipped: bicubic resizing overshoots)."""
    return torch.from_numpy(x.transpose(2, 0, 1).copy()).mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0)


def to_image(t: torch.Tensor, dtype: np.dtype = np.uint8) -> np.ndarray:
    """CxHxW tensor in [-1, 1] -> HxWxC uint8 (or uint16) array, rounded and clipped."""
    scale = 65535.0 if dtype == np.uint16 else 255.0
    x = (t.detach().float().cpu().clamp(-1, 1) + 1.0) * (scale / 2.0)
    return x.round().to(torch.int32).permute(1, 2, 0).numpy().astype(dtype)
