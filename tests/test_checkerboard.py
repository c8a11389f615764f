"""The checkerboard figure: spectral energy at the 2- and 4-pixel periods, relative to real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.evaluation.checkerboard import checkerboard_energy, checkerboard_score, checkerboard_share
from i2i.nets import GeneratorConfig, build_generator
from i2i.nets.layers import per_image_norm


def _natural(seed: int, size: int = 64) -> np.ndarray:
    """A photo-like RGB image: 1/f^2 ("pink") power spectrum plus a smooth gradient, uint8."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    f[0, 0] = 1.0
    planes = []
    for _ in range(3):
        spectrum = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / f
        plane = np.real(np.fft.ifft2(spectrum))
        planes.append((plane - plane.mean()) / plane.std())
    ramp = np.linspace(0, 1, size)[None, :, None]
    img = 0.5 + 0.12 * np.stack(planes, axis=-1) + 0.2 * (ramp - 0.5)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _checkerboard(size: int, period: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy // (period // 2) + xx // (period // 2)) % 2, 1.0, -1.0)[:, :, None]


def _with_pattern(img: np.ndarray, amplitude: float, period: int = 2) -> np.ndarray:
    return np.clip(img + amplitude * _checkerboard(img.shape[0], period), 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("period", [2, 4])
def test_an_added_checkerboard_scores_clearly_above_natural_images(period: int) -> None:
    photos = [_natural(seed) for seed in range(4)]
    patterned = [_with_pattern(p, 4.0, period) for p in photos]  # +-4 of 255: hard to see, easy to measure
    assert checkerboard_score(patterned, photos) > 3.0
    assert checkerboard_score(photos, photos) == pytest.approx(1.0)
    # an unrelated 3-px pattern is not what is measured
    assert checkerboard_score([_with_pattern(p, 4.0, 6) for p in photos], photos) < 1.5


def test_blur_scores_below_one() -> None:
    photos = [_natural(seed) for seed in range(4)]
    from PIL import ImageFilter

    blurred = [np.asarray(Image.fromarray(p).filter(ImageFilter.GaussianBlur(1.5))) for p in photos]
    assert checkerboard_score(blurred, photos) < 0.5


def test_share_definition_on_pure_tones() -> None:
    side = 32
    yy, xx = np.mgrid[:side, :side].astype(float)
    assert checkerboard_share(0.5 + 0.3 * np.cos(np.pi * xx)) == pytest.approx(1.0)  # period 2: all there
    assert checkerboard_share(0.5 + 0.3 * np.cos(np.pi * (xx + yy) / 2)) == pytest.approx(1.0)  # diagonal, 4 px
    assert checkerboard_share(0.5 + 0.3 * np.cos(2 * np.pi * xx / 8)) < 1e-3  # period 8: none
    assert checkerboard_share(np.full((side, side, 3), 0.4)) == 0.0  # flat: no energy anywhere
    gray, rgb = _natural(0)[:, :, :1], np.repeat(_natural(0)[:, :, :1], 3, axis=2)
    assert checkerboard_share(gray) == pytest.approx(checkerboard_share(rgb))
    assert checkerboard_share(gray.astype(np.uint16) * 257) == pytest.approx(checkerboard_share(gray))
    with pytest.raises(ValueError, match="8 px"):
        checkerboard_share(np.zeros((6, 20), np.uint8))


def test_folders_files_and_arrays_agree(tmp_path: Path) -> None:
    photos = [_natural(seed) for seed in range(3)]
    outs = [_with_pattern(p, 2.0) for p in photos]
    for name, images in (("targets", photos), ("outputs/sub", outs)):
        (tmp_path / name).mkdir(parents=True)
        for i, img in enumerate(images):
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
    by_folder = checkerboard_score(tmp_path / "outputs", tmp_path / "targets")
    assert by_folder == pytest.approx(checkerboard_score(outs, photos))
    assert checkerboard_energy(sorted((tmp_path / "targets").glob("*.png"))) == pytest.approx(
        checkerboard_energy(np.stack(photos)))
    with pytest.raises(FileNotFoundError, match="missing"):
        checkerboard_score(tmp_path / "missing", tmp_path / "targets")
    with pytest.raises(ValueError, match="N x H x W x C"):
        checkerboard_energy(photos[0])  # one image is not a set of images
    with pytest.raises(ValueError, match="flat"):
        checkerboard_score(outs, [np.full((16, 16, 3), 9, np.uint8)])


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_fresh_deconv_unet_shows_more_checkerboard_than_resize_conv() -> None:
    """Measured, not assumed: untrained unet_64s (4 base channels, per-image norm as at inference) on these
    photo-like inputs. Over seeds 0-4 the deconv U-Net's outputs held 15-54x the inputs' 2/4-px energy,
    resize-conv's 0.3-0.95x, pixel shuffle's 0.3-0.4x (on real facades with unet_256: ~100x vs ~0.3x)."""
    inputs = np.stack([_natural(seed) for seed in range(4)])
    x = torch.from_numpy(inputs).permute(0, 3, 1, 2).float() / 127.5 - 1

    def energy(upsample: str, seed: int) -> float:
        torch.manual_seed(seed)
        net = per_image_norm(build_generator(GeneratorConfig(name="unet_64", base_channels=4, upsample=upsample)))
        with torch.no_grad():
            y = net.eval()(x)
        return checkerboard_energy(list(((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)))

    for seed in range(2):
        deconv, resize = energy("deconv", seed), energy("resize", seed)
        assert deconv > 10 * resize, (seed, deconv, resize)
        assert deconv > 5 * checkerboard_energy(list(inputs))
