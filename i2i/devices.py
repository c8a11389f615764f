"""Devices and precisions: pick a device by name, map precision names to dtypes, autocast for them."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; asking for CUDA without one is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def autocast(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """Mixed precision for `dtype` on `device` (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
