"""Beyond RGB: multi-band TIFF and arrays, several input folders stacked into one, label maps as one-hot inputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from helpers import cli, shared_dataset
from i2i.config import DataConfig, RunConfig, TrainConfig, value_ranges
from i2i.data import make_dataset, with_palette
from i2i.data.io import ImageReadError, read_image, to_float, write_image
from i2i.data.labels import class_ids, learn_palette, one_hot, read_palette
from i2i.data.layout import DataError
from i2i.models import MODELS
from i2i.models.pix2pix import Pix2PixConfig
from i2i.nets import DiscriminatorConfig, GeneratorConfig
from i2i.training.trainer import train
from i2i.translation.translator import Translator

SIZE = 64
COLOURS = np.array([[0, 0, 170], [0, 85, 255], [170, 255, 85], [255, 85, 0], [170, 0, 0]], dtype=np.uint8)


def _config(root: Path, runs: Path, c_in: int, c_out: int, max_steps: int = 2, **data) -> RunConfig:
    """A tiny Pix2Pix run (unet_64, 4 base channels) with `c_in` -> `c_out` channels."""
    g = GeneratorConfig(name="unet_64", base_channels=4, in_channels=c_in, out_channels=c_out)
    d = DiscriminatorConfig(name="basic", in_channels=c_in + c_out, base_channels=4)
    return RunConfig(model="pix2pix", model_config=Pix2PixConfig(generator=g, discriminator=d),
                     data=DataConfig(root=str(root), load_size=72, crop_size=SIZE, **data),
                     train=TrainConfig(name="run", runs_dir=str(runs), max_steps=max_steps, decay_steps=0, log_every=1,
                                       sample_every=1, save_every=2, workers=0, deterministic=True, precision="fp32"))


def _train_and_resume(cfg: RunConfig) -> Path:
    """Train 2 steps, then resume to 4: returns the run directory."""
    first = train(cfg, progress=False)
    assert first.steps == 2
    longer = RunConfig(model=cfg.model, model_config=cfg.model_config, data=cfg.data,
                       train=TrainConfig(**{**cfg.train.__dict__, "max_steps": 4}))
    resumed = train(longer, resume=True, progress=False)
    assert resumed.steps == 4
    return resumed.run_dir


def _multiband(root: Path, n: int = 3, bands: int = 4) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        a = (rng.random((SIZE + 8, SIZE + 4, bands)) * 50000).astype(np.uint16)
        for side, array in (("A", a), ("B", 60000 - a)):
            (root / "train" / side).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / "train" / side / f"{i}.tif", array, photometric="minisblack", planarconfig="contig")


def test_a_four_band_16_bit_tiff_set_trains_resumes_and_translates_to_four_bands(tmp_path: Path) -> None:
    _multiband(tmp_path / "data")
    run = _train_and_resume(_config(tmp_path / "data", tmp_path / "runs", 4, 4))
    assert list((run / "samples").glob("*.png"))  # the sample grid shows the first three bands
    out = tmp_path / "out"
    result = cli("translate", run, tmp_path / "data" / "train" / "A", out)
    assert result.exit_code == 0, result.output
    source = read_image(tmp_path / "data" / "train" / "A" / "0.tif")
    translated = read_image(out / "0.tif")
    assert translated.shape == source.shape == (SIZE + 8, SIZE + 4, 4) and translated.dtype == np.uint16


def test_band_ranges_map_raw_values_and_come_back_in_them(tmp_path: Path) -> None:
    """Reflectance in 0..10000 stored as uint16: --a-range 0:10000 maps it to [-1, 1], and outputs return to it."""
    rng = np.random.default_rng(1)
    for i in range(2):
        a = (rng.random((SIZE, SIZE, 5)) * 10000).astype(np.uint16)
        for side in ("A", "B"):
            (tmp_path / "data" / "train" / side).mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "data" / "train" / side / f"{i}.npy", a)
    cfg = _config(tmp_path / "data", tmp_path / "runs", 5, 5, a_range="0:10000", b_range="0:10000", preprocess="none")
    sample = make_dataset(MODELS["pix2pix"](cfg.model_config).data_spec(), cfg.data, train=False)[0]
    raw = np.load(tmp_path / "data" / "train" / "A" / "0.npy")
    assert torch.allclose(sample["input"], torch.from_numpy(raw.transpose(2, 0, 1) / 5000.0 - 1).float(), atol=1e-5)
    train(cfg, progress=False)
    out = Translator.from_pretrained(tmp_path / "runs" / "run", precision="fp32")(raw)
    assert out.shape == raw.shape and out.dtype == np.uint16 and out.max() <= 10000
    result = cli("translate", tmp_path / "runs" / "run", tmp_path / "data" / "train" / "A", tmp_path / "out")
    assert result.exit_code == 0, result.output  # five bands: no image format holds them, so TIFF files
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["0.tif", "1.tif"]
    assert read_image(tmp_path / "out" / "0.tif").shape == raw.shape


def _rgb_depth(root: Path, n: int = 3, skip_depth: str | None = None) -> None:
    rng = np.random.default_rng(2)
    for folder in ("A", "A_depth", "B"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb = (rng.random((SIZE, SIZE + 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "A" / f"p{i}.png")
        if f"p{i}" != skip_depth:
            depth = (rng.random((SIZE, SIZE + 8)) * 60000).astype(np.uint16)
            Image.fromarray(depth).save(root / "A_depth" / f"p{i}.png")
        Image.fromarray(255 - rgb).save(root / "B" / f"p{i}.png")


def test_rgb_and_depth_folders_stack_into_four_channels_and_translate_from_the_same_folders(tmp_path: Path) -> None:
    _rgb_depth(tmp_path / "data" / "train")
    cfg = _config(tmp_path / "data", tmp_path / "runs", 4, 3, inputs="A,A_depth")
    as_stored = dataclasses.replace(cfg.data, preprocess="none")
    sample = make_dataset(MODELS["pix2pix"](cfg.model_config).data_spec(), as_stored, train=False)[0]
    depth = np.asarray(Image.open(tmp_path / "data" / "train" / "A_depth" / "p0.png")).astype(np.float64)
    rgb = np.asarray(Image.open(tmp_path / "data" / "train" / "A" / "p0.png")).astype(np.float64)
    assert sample["input"].shape == (4, SIZE, SIZE + 8)
    assert torch.allclose(sample["input"][3], torch.from_numpy(depth / 65535 * 2 - 1).float(), atol=1e-4)
    assert torch.allclose(sample["input"][0], torch.from_numpy(rgb[:, :, 0] / 255 * 2 - 1).float(), atol=1e-4)
    run = _train_and_resume(cfg)
    (tmp_path / "data" / "train" / "extra").mkdir()  # other folders under IN are left alone
    result = cli("translate", run, tmp_path / "data" / "train", tmp_path / "out")
    assert result.exit_code == 0, result.output
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == ["p0.png", "p1.png", "p2.png"]
    out = read_image(tmp_path / "out" / "p0.png")
    assert out.shape == (SIZE, SIZE + 8, 3) and out.dtype == np.uint8


def test_a_stem_without_its_depth_part_is_named(tmp_path: Path) -> None:
    _rgb_depth(tmp_path / "data" / "train", skip_depth="p1")
    cfg = _config(tmp_path / "data", tmp_path / "runs", 4, 3, inputs="A,A_depth")
    with pytest.raises(DataError, match=r"1 A image\(s\) have no partner .*A_depth.*p1\.png"):
        make_dataset(MODELS["pix2pix"](cfg.model_config).data_spec(), cfg.data)


def _index_labels(root: Path, n: int = 3) -> None:
    rng = np.random.default_rng(3)
    palette = [v for colour in COLOURS[:4] for v in colour]
    for folder in ("A", "B"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ids = np.repeat(np.repeat(rng.integers(0, 4, (9, 9)), 8, 0), 8, 1).astype(np.uint8)
        label = Image.fromarray(ids, mode="P")
        label.putpalette(palette + [0] * (768 - len(palette)))
        label.save(root / "A" / f"{i}.png")
        Image.fromarray(COLOURS[ids]).save(root / "B" / f"{i}.png")


def test_index_png_labels_train_one_hot_with_class_ids_never_interpolated(tmp_path: Path) -> None:
    _index_labels(tmp_path / "data" / "train")
    cfg = _config(tmp_path / "data", tmp_path / "runs", 4, 3, label_nc=4)
    assert with_palette(cfg.data, MODELS["pix2pix"](cfg.model_config).data_spec()).palette is None  # ids as they are
    dataset = make_dataset(MODELS["pix2pix"](cfg.model_config).data_spec(), cfg.data)  # resize 72 + random crop
    for seed in range(3):
        x = dataset[(0, seed)]["input"]
        assert set(x.unique().tolist()) <= {-1.0, 1.0} and bool(((x == 1).sum(0) == 1).all())
    run = _train_and_resume(cfg)
    ids = np.asarray(Image.open(tmp_path / "data" / "train" / "A" / "0.png"))
    out = Translator.from_pretrained(run, precision="fp32")(tmp_path / "data" / "train" / "A" / "0.png")
    assert out.shape == (72, 72, 3) and out.dtype == np.uint8
    assert np.array_equal(Translator.from_pretrained(run, precision="fp32")(ids), out)  # an id array works alike
    result = cli("translate", run, tmp_path / "data" / "train" / "A", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "out" / "0.png").shape == (72, 72, 3)


def test_colour_jpeg_labels_learn_their_palette_and_map_jpeg_noise_to_the_right_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    root = tmp_path / "data" / "train"
    root.mkdir(parents=True)
    truth = []
    for i in range(4):  # facades-style A|B files: the photo on the left, the colour-coded labels on the right
        ids = np.repeat(np.repeat(rng.integers(0, 5, (8, 8)), 8, 0), 8, 1)
        photo = (rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
        Image.fromarray(np.concatenate([photo, COLOURS[ids]], axis=1)).save(root / f"{i}.jpg", quality=80)
        truth.append(ids)
    cfg = _config(tmp_path / "data", tmp_path / "runs", 5, 3, label_nc=5)
    cfg.model_config.direction = "BtoA"
    data = with_palette(cfg.data, MODELS["pix2pix"](cfg.model_config).data_spec())
    learned = np.array(data.palette)
    order = [int(np.argmin(((learned - c) ** 2).sum(1))) for c in COLOURS.astype(int)]
    assert sorted(order) == list(range(5)) and np.abs(learned[order] - COLOURS).max() <= 24
    labels = np.asarray(Image.open(root / "0.jpg"))[:, SIZE:]
    found = class_ids(labels, 5, learned.astype(np.uint8))
    assert (np.array(order)[truth[0]] == found).mean() > 0.99
    cfg.data = data
    run = _train_and_resume(cfg)
    assert json.loads((run / "config.json").read_text())["data"]["palette"] == data.palette
    out = Translator.from_pretrained(run, precision="fp32")(labels)
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8


def test_label_helpers_read_palettes_and_refuse_what_they_cannot_use(tmp_path: Path) -> None:
    colours = tmp_path / "colours.txt"
    colours.write_text("# facade classes\n0 0 170\n0,85,255\n")
    assert read_palette(colours, 2) == [[0, 0, 170], [0, 85, 255]]
    with pytest.raises(ValueError, match="lists 2 colour"):
        read_palette(colours, 3)
    with pytest.raises(ImageReadError, match="no class colours"):
        class_ids(np.zeros((4, 4, 3), np.uint8), 3, None)
    hot = one_hot(np.array([[0, 2], [255, 1]], dtype=np.uint8), 3)
    assert hot.sum(2).tolist() == [[1, 1], [0, 1]]  # 255 (ignore) gets no class
    maps = [COLOURS[np.arange(5).repeat(20).reshape(10, 10)]]
    assert sorted(map(tuple, learn_palette(maps, 5))) == sorted(map(tuple, COLOURS.tolist()))


def test_multiband_files_and_arrays_read_back_as_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    six = (rng.random((10, 12, 6)) * 65535).astype(np.uint16)
    for name in ("x.tif", "x.npy"):
        write_image(tmp_path / name, six)
        assert np.array_equal(read_image(tmp_path / name), six)
    planes = rng.random((3, 10, 12)).astype(np.float32) * 100
    tifffile.imwrite(tmp_path / "planes.tif", planes, photometric="minisblack", planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "planes.tif"), planes.transpose(1, 2, 0))
    np.savez(tmp_path / "ct.npz", hu=(rng.random((10, 12)) * 4000 - 1024).astype(np.int16))
    ct = read_image(tmp_path / "ct.npz")
    assert ct.shape == (10, 12, 1) and ct.dtype == np.float32
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match=r"evil\.npy"):  # never unpickled
        read_image(tmp_path / "evil.npy")
    assert to_float(ct, 1, value_ranges("-1024:3071")).max() <= 1.0


def test_channel_options_take_any_count_and_label_nc_sets_the_input_channels(tmp_path: Path) -> None:
    _index_labels(tmp_path / "data" / "train")
    common = ["train", "pix2pix", "--data", tmp_path / "data", "--runs-dir", tmp_path / "runs", "--dry-run"]
    result = cli(*common, "--label-nc", "4")
    assert result.exit_code == 0, result.output
    assert '"in_channels": 4' in result.output
    clash = cli(*common, "--label-nc", "4", "--input-channels", "3")
    assert clash.exit_code == 2 and "--label-nc 4" in clash.output
    bad = cli(*common, "--a-range", "10:0")
    assert bad.exit_code == 2 and "a_range" in bad.output


def test_the_facades_colour_labels_train_one_hot_with_twelve_learned_colours(tmp_path: Path) -> None:
    """The real facades label maps (JPEG, colour-coded, on the right of each file): --label-nc 12, BtoA."""
    facades = shared_dataset("tiny_demo", "facades")
    cfg = _config(facades, tmp_path / "runs", 12, 3, label_nc=12)
    cfg.model_config.direction = "BtoA"
    run = _train_and_resume(cfg)
    palette = json.loads((run / "config.json").read_text())["data"]["palette"]
    assert len({tuple(c) for c in palette}) == 12
    labels = read_image(next((facades / "val").glob("*.jpg")))
    half = labels[:, labels.shape[1] // 2 :]
    ids = class_ids(half, 12, np.array(palette, dtype=np.uint8))
    assert len(np.unique(ids)) >= 4  # a facade has wall, windows, door, background at least
    out = Translator.from_pretrained(run, precision="fp32")(half)
    assert out.shape == half.shape and out.dtype == np.uint8
