"""Translation of files, arrays and folder trees: any size, any format, batch independence, tiles, resume."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from helpers import tiny_config, write_pairs
from i2i.cli.commands import main
from i2i.config import RunConfig
from i2i.data.io import read_image, write_image
from i2i.models import Pix2PixConfig
from i2i.nets import GeneratorConfig
from i2i.nets.resnet import ResnetGenerator
from i2i.training.trainer import train
from i2i.translation.made_by import RECORD
from i2i.translation.translator import Translator, blend_window, tile_starts


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("translate")
    return train(tiny_config(write_pairs(tmp / "pairs"), tmp / "runs", max_steps=2), progress=False).run_dir


@pytest.fixture
def translator(run_dir: Path) -> Translator:
    return Translator.from_pretrained(run_dir)


def photo(h: int, w: int, channels: int = 3, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    small = np.random.default_rng(seed).random((max(h // 16, 2), max(w // 16, 2), channels))
    big = torch.nn.functional.interpolate(torch.from_numpy(small).permute(2, 0, 1)[None], size=(h, w),
                                          mode="bilinear")[0].permute(1, 2, 0).numpy()
    return (big * top).round().astype(dtype)


def test_api_returns_the_kind_it_was_given(translator: Translator, tmp_path: Path) -> None:
    rgb = photo(257, 311)
    out = translator(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert translator(photo(64, 64, dtype=np.uint16)).dtype == np.uint16
    floats = translator(rgb.astype(np.float32) / 255)
    assert floats.dtype == np.float32 and floats.min() >= 0 and floats.max() <= 1
    pil = translator(Image.fromarray(rgb))
    assert isinstance(pil, Image.Image) and pil.size == (311, 257)
    t = torch.rand(3, 40, 50) * 2 - 1
    assert translator(t).shape == (3, 40, 50) and translator(t).min() >= -1
    t01 = translator(torch.rand(2, 3, 40, 50), tensor_range=(0, 1))
    assert t01.shape == (2, 3, 40, 50) and t01.min() >= 0 and t01.max() <= 1
    torch.testing.assert_close(translator(t01 * 2 - 1), translator(t01, tensor_range=(0, 1)) * 2 - 1,
                               atol=1e-5, rtol=1e-5)
    write_image(tmp_path / "in.png", rgb)
    from_path = translator(tmp_path / "in.png")
    np.testing.assert_array_equal(from_path, out)
    assert [o.shape for o in translator([rgb, photo(70, 90)])] == [rgb.shape, (70, 90, 3)]


def test_formats_keep_channels_alpha_and_depth(translator: Translator) -> None:
    gray = translator(photo(50, 60, channels=1)[:, :, 0])
    assert gray.shape == (50, 60)
    rgba = photo(50, 60, channels=4)
    out = translator(rgba)
    assert out.shape == (50, 60, 4)
    np.testing.assert_array_equal(out[:, :, 3], rgba[:, :, 3])  # alpha carried over
    deep = translator(photo(50, 60, dtype=np.uint16))
    assert deep.dtype == np.uint16 and deep.max() > 255


def test_output_does_not_depend_on_the_batch(translator: Translator) -> None:
    images = [photo(64, 64, seed=i) for i in range(4)]
    alone = [translator.translate_arrays([img])[0] for img in images]
    together = translator.translate_arrays(images, batch_size=4)
    for a, b in zip(alone, together, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_dropout_is_off_unless_asked(run_dir: Path) -> None:
    image = photo(64, 64)
    plain = Translator.from_pretrained(run_dir)
    np.testing.assert_array_equal(plain(image), plain(image))
    stochastic = Translator.from_pretrained(run_dir, keep_dropout=True)
    assert any(not np.array_equal(stochastic(image), stochastic(image)) for _ in range(3))


def test_resize_mode_gives_the_input_size(run_dir: Path) -> None:
    out = Translator.from_pretrained(run_dir, size_mode="resize")(photo(100, 37))
    assert out.shape == (100, 37, 3)


def local_translator(**options) -> Translator:
    """A generator with a bounded receptive field (no normalisation), so tiles can match the whole image."""
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, n_blocks=6, base_channels=4, norm="none")
    cfg = GeneratorConfig(name="resnet_6blocks", base_channels=4, norm="none", dropout=False)
    return Translator(net, cfg, RunConfig("pix2pix", Pix2PixConfig()), "AtoB", torch.device("cpu"), **options)


def test_tiles_agree_with_the_whole_image_and_leave_no_seam() -> None:
    x = torch.rand(1, 3, 400, 300) * 2 - 1
    whole = local_translator().translate_tensor(x)
    tiled_translator = local_translator(tile=128, tile_overlap=64)
    assert tiled_translator.needs_tiling(400, 300)
    tiled = tiled_translator.translate_tensor(x)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 0.03  # < 4 grey levels anywhere
    # no seam: where tiles meet, the error is no larger than inside the tiles
    err = (tiled - whole).abs().mean(dim=(0, 1))
    seams = [s + 128 for s in tile_starts(400, 128, 64)[:-1]]
    assert max(err[s - 1 : s + 1].mean() for s in seams) < 3 * err.mean() + 1e-3


def test_tile_geometry() -> None:
    assert tile_starts(100, 128, 32) == [0]
    starts = tile_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in itertools.pairwise(starts))
    w = blend_window(256, 64)
    assert w[128] == 1 and 0 < w[0] < 0.01 and torch.allclose(w, w.flip(0))


def make_tree(root: Path) -> list[Path]:
    files = [root / "a.jpg", root / "sub dir" / "ünï côde.png", root / "sub dir" / "deeper" / "gray.png",
             root / "deep16.png", root / "rgba.png"]
    write_image(files[0], photo(120, 90))
    write_image(files[1], photo(257, 311))
    write_image(files[2], photo(64, 64, channels=1))
    write_image(files[3], photo(64, 80, dtype=np.uint16))
    write_image(files[4], photo(48, 48, channels=4))
    return files


def test_translate_dir_mirrors_the_tree(translator: Translator, tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    files = make_tree(src)
    before = {f: f.read_bytes() for f in files}
    summary = translator.translate_dir(src, dst, progress=False)
    assert summary.translated == 5 and summary.failed == [] and summary.skipped == 0
    for f in files:
        out = dst / f.relative_to(src)
        a, b = read_image(f), read_image(out)
        assert b.shape == a.shape and b.dtype == a.dtype, f
        assert f.read_bytes() == before[f]  # inputs untouched
    assert not any(p.name.startswith(".") for p in dst.rglob("*") if p != dst / RECORD)  # no temp files left
    assert (dst / RECORD).is_file()  # which checkpoint made the folder


def test_exif_rotated_jpeg_comes_out_upright(translator: Translator, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    (tmp_path / "in").mkdir()
    Image.fromarray(photo(40, 80)).save(tmp_path / "in" / "r.jpg", exif=exif)
    translator.translate_dir(tmp_path / "in", tmp_path / "out", fmt="png", progress=False)
    assert read_image(tmp_path / "out" / "r.png").shape == (80, 40, 3)


def test_resume_skips_finished_files(translator: Translator, tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    make_tree(src)
    translator.translate_dir(src, dst, progress=False)
    done = dst / "a.jpg"
    stamp = done.stat().st_mtime_ns
    (dst / "rgba.png").unlink()  # as if the run had been killed before this one
    again = translator.translate_dir(src, dst, progress=False)
    assert (again.translated, again.skipped) == (1, 4)
    assert done.stat().st_mtime_ns == stamp
    forced = translator.translate_dir(src, dst, overwrite=True, progress=False)
    assert forced.translated == 5


def test_corrupt_files_are_reported_and_the_rest_translated(translator: Translator, tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    make_tree(src)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = read_image(src / "a.jpg")
    (src / "truncated.jpg").write_bytes((src / "a.jpg").read_bytes()[:300])
    summary = translator.translate_dir(src, dst, progress=False)
    assert summary.translated == 5 and len(summary.failed) == 2
    assert any("broken.png" in f for f in summary.failed) and any("truncated.jpg" in f for f in summary.failed)
    assert not (dst / "broken.png").exists() and read_image(dst / "a.jpg").shape == good.shape


def test_output_inside_input_is_refused(translator: Translator, tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_tree(src)
    with pytest.raises(ValueError, match="inside the input"):
        translator.translate_dir(src, src / "out", progress=False)
    allowed = translator.translate_dir(src, src / "out", allow_inside_input=True, progress=False)
    assert allowed.translated == 5
    again = translator.translate_dir(src, src / "out", allow_inside_input=True, progress=False)
    assert again.translated == 0 and again.skipped == 5  # its own outputs are not inputs
    with pytest.raises(ValueError, match="overwrite the input"):
        translator.translate_file(src / "a.jpg", src / "a.jpg", overwrite=True)


def test_cli_translate(run_dir: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    make_tree(src)
    (src / "broken.jpg").write_bytes(b"nope")
    args = ["translate", str(run_dir), str(src), str(dst), "--no-progress", "--format", "png"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output  # some inputs failed: the others are translated, the status says so
    assert "translated 5" in result.output and "failed 1" in result.output and "broken.jpg" in result.output
    assert (dst / "a.png").exists() and (dst / "sub dir" / "ünï côde.png").exists()
    strict = CliRunner().invoke(main, [*args, "--strict", "--overwrite"])
    assert strict.exit_code == 3 and "broken.jpg" in strict.output
    single = CliRunner().invoke(main, ["translate", str(run_dir), str(src / "a.jpg"), str(tmp_path / "one.png")])
    assert single.exit_code == 0 and read_image(tmp_path / "one.png").shape == (120, 90, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = CliRunner().invoke(main, ["translate", str(run_dir), str(empty), str(tmp_path / "o2")])
    assert nothing.exit_code != 0 and "nothing" in nothing.output
    bad = CliRunner().invoke(main, [*args, "--format", "gif"])
    assert bad.exit_code == 2 and "png" in bad.output


def test_bf16_translation_is_close_to_fp32(run_dir: Path) -> None:
    image = photo(64, 64)
    fp32 = Translator.from_pretrained(run_dir)(image).astype(int)
    bf16 = Translator.from_pretrained(run_dir, precision="bf16")(image).astype(int)
    assert np.abs(fp32 - bf16).mean() < 3
