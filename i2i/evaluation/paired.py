"""Paired image metrics: PSNR, SSIM and MS-SSIM of same-named images, and JSON-safe scores."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from i2i.data.io import list_images, read_image, to_float

if TYPE_CHECKING:
    import torch


# Conventions (all functions below):
# - Images are HxWxC (or HxW) numpy arrays: uint8, uint16, or float in [0, 1]; every dtype is mapped to [0, 1]
#   first, so an 8-bit and a 16-bit version of the same picture compare as equal.
# - PSNR of identical images is math.inf (exact, never a made-up cap). Python's json module would write that as
#   the non-standard token `Infinity`; `json_safe()` turns every non-finite float into None (JSON null) instead.
# - SSIM: Wang et al. 2004 settings (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population covariance),
#   computed by scikit-image, averaged over channels.
# - MS-SSIM: Wang et al. 2003, five scales with the weights below, 2x2 average pooling between scales, negative
#   contrast-structure terms clamped to 0 (torchmetrics' normalize="relu"). Images whose shorter side is below
#   176 px (11 << 4) get fewer scales, with the first weights renormalised to sum to 1 (one scale equals SSIM).

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03

# -- paired metrics ------------------------------------------------------------------------------------------


def _unit_float(x: np.ndarray, name: str) -> np.ndarray:
    """An image as float64 in [0, 1] with a channel axis (uint8 / 255, uint16 / 65535, float checked)."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        out = x.astype(np.float64) / 255.0
    elif x.dtype == np.uint16:
        out = x.astype(np.float64) / 65535.0
    elif np.issubdtype(x.dtype, np.floating):
        out = x.astype(np.float64)
        if not np.isfinite(out).all():
            raise ValueError(f"{name} holds NaN or infinite values")
        if out.size and (out.min() < -1e-6 or out.max() > 1.0 + 1e-6):
            raise ValueError(f"{name}: float images must lie in [0, 1], got [{out.min():.4g}, {out.max():.4g}]; "
                             "pass uint8/uint16 arrays or divide by 255 / 65535")
        out = np.clip(out, 0.0, 1.0)
    else:
        raise TypeError(f"{name}: images must be uint8, uint16 or float in [0, 1], got {x.dtype}")
    if out.ndim == 2:
        out = out[:, :, None]
    if out.ndim != 3:
        raise ValueError(f"{name}: expected an HxW or HxWxC image, got shape {x.shape}")
    return out


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _unit_float(a, "first image"), _unit_float(b, "second image")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, peak = 1 after mapping both images to [0, 1].

    Identical images give math.inf (see `json_safe` for writing it to JSON).
    """
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), mean over pixels and channels.

    1.0 for identical images. Both sides must be at least 11 px.
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px, got {a.shape[1]}x{a.shape[0]}")
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                       sigma=_SSIM_SIGMA, use_sample_covariance=False, K1=_K1, K2=_K2))


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales (at most 5) fit: the coarsest scale must still hold an 11x11 window."""
    side, scales = min(height, width), 0
    while scales < len(MS_SSIM_WEIGHTS) and side >> scales >= SSIM_WINDOW:
        scales += 1
    return scales


def ms_ssim(a: np.ndarray, b: np.ndarray, scales: int | None = None) -> float:
    """Multi-scale SSIM (Wang et al. 2003), 1.0 for identical images.

    `scales=None` uses 5 scales when the shorter side is >= 176 px and as many as fit below that (weights of the
    scales used renormalised to sum to 1; at 1 scale it equals `ssim`). An explicit `scales` that does not fit,
    or an image under 11 px, raises ValueError.
    """
    import torch
    import torch.nn.functional as F

    a, b = _pair(a, b)
    fit = ms_ssim_scales(*a.shape[:2])
    if fit == 0:
        raise ValueError(f"MS-SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px, "
                         f"got {a.shape[1]}x{a.shape[0]}")
    if scales is None:
        scales = fit
    elif not 1 <= scales <= len(MS_SSIM_WEIGHTS):
        raise ValueError(f"scales must be 1..{len(MS_SSIM_WEIGHTS)}, got {scales}")
    elif scales > fit:
        raise ValueError(f"{scales} MS-SSIM scales need a shorter side of at least {SSIM_WINDOW << (scales - 1)} px, "
                         f"got {min(a.shape[:2])} px (at most {fit} scales fit)")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    weights = weights / weights.sum()

    x = torch.from_numpy(a).permute(2, 0, 1)[None]
    y = torch.from_numpy(b).permute(2, 0, 1)[None]
    channels = x.shape[1]
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)
    c1, c2 = _K1**2, _K2**2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)  # 'valid' filtering, as scikit-image's cropped SSIM

    values = []
    for scale in range(scales):
        if scale:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if scale < scales - 1:
            values.append(cs.mean())
        else:
            values.append((((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs).mean())
    return float(torch.prod(torch.stack(values).clamp(min=0.0) ** weights))


def json_safe(value: Any) -> Any:
    """A copy of nested dicts/lists/tuples in which every non-finite float (PSNR's inf, NaN) becomes None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def keyed_images(folder: Path, recursive: bool) -> dict[str, Path]:
    """Images under `folder` keyed by relative path without extension (a.png and a.jpg may not both exist)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    keyed: dict[str, Path] = {}
    for path in list_images(folder, recursive=recursive):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in keyed:
            raise ValueError(f"two images share the name {key!r} in {folder}: {keyed[key].name} and {path.name}")
        keyed[key] = path
    if not keyed:
        raise ValueError(f"no images in {folder}")
    return keyed


def _name_some(keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def paired_scores(outputs_dir: str | os.PathLike, targets_dir: str | os.PathLike, *, recursive: bool = True,
                  use_ms_ssim: bool = True) -> dict[str, Any]:
    """PSNR, SSIM (and MS-SSIM) of each output against the target with the same relative path and stem.

    Files are matched by relative path without extension (out/a/b.png <-> targets/a/b.jpg); any file without a
    partner raises ValueError naming it. Gray vs colour pairs are compared in colour (gray repeated, ITU-R 601
    otherwise as in `i2i.data.io.to_float`), alpha is ignored, 8- and 16-bit files are both mapped to [0, 1].
    Returns {"n", "mean": {metric: mean over images}, "psnr_infinite": count of identical pairs,
    "per_image": {key: {"output", "target", metric: value}}}. A mean PSNR is inf when any pair is identical;
    pass the result through `json_safe` before json.dump.
    """
    outputs_dir, targets_dir = Path(outputs_dir), Path(targets_dir)
    outputs, targets = keyed_images(outputs_dir, recursive), keyed_images(targets_dir, recursive)
    no_target = sorted(outputs.keys() - targets.keys())
    no_output = sorted(targets.keys() - outputs.keys())
    if no_target or no_output:
        problems = []
        if no_target:
            problems.append(f"{len(no_target)} output(s) in {outputs_dir} have no target: {_name_some(no_target)}")
        if no_output:
            problems.append(f"{len(no_output)} target(s) in {targets_dir} have no output: {_name_some(no_output)}")
        raise ValueError("unmatched files (matched by relative path without extension):\n  " + "\n  ".join(problems))

    per_image: dict[str, dict[str, Any]] = {}
    for key in sorted(outputs):
        out, tgt = read_image(outputs[key]), read_image(targets[key])
        if out.shape[:2] != tgt.shape[:2]:
            raise ValueError(f"{key}: output {outputs[key]} is {out.shape[1]}x{out.shape[0]} but target "
                             f"{targets[key]} is {tgt.shape[1]}x{tgt.shape[0]}")
        channels = 3 if max(out.shape[2], tgt.shape[2]) >= 3 else 1
        a, b = to_float(out, channels), to_float(tgt, channels)
        scores: dict[str, Any] = {"output": str(outputs[key]), "target": str(targets[key]),
                                  "psnr": psnr(a, b), "ssim": ssim(a, b)}
        if use_ms_ssim:
            scores["ms_ssim"] = ms_ssim(a, b)
        per_image[key] = scores
    names = ["psnr", "ssim"] + (["ms_ssim"] if use_ms_ssim else [])
    mean = {name: float(np.mean([s[name] for s in per_image.values()])) for name in names}
    infinite = sum(1 for s in per_image.values() if math.isinf(s["psnr"]))
    return {"n": len(per_image), "mean": mean, "psnr_infinite": infinite, "per_image": per_image}
