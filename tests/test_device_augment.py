"""Tests for augmentation on the training device: paired-safe, reproducible, the CPU pipeline's geometry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import same_weights, tiny_config, write_pairs, write_unpaired
from i2i.config import DataConfig
from i2i.data.device_augment import GEOMETRY, DeviceAugment
from i2i.data.paired import PairedDataset
from i2i.data.sampling import collate_skipping
from i2i.data.transforms import paired_transform, single_transform
from i2i.data.unpaired import UnpairedDataset
from i2i.training.state import RunError
from i2i.training.trainer import to_device, train

CPU = torch.device("cpu")


def _ramp_pairs(root: Path, size: tuple[int, int] = (40, 48)) -> Path:
    """One A|B pair whose pixels encode their own coordinates (so crops and flips can be read back)."""
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w]
    a = np.stack([rows * 5 % 256, cols * 5 % 256, np.full_like(rows, 128)], axis=2).astype(np.uint8)
    (root / "train").mkdir(parents=True)
    Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(root / "train" / "ramp.png")
    return root


def _device_cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(root=str(root), augment_on="device", **kw)


def test_dataset_defers_geometry_and_shares_it_within_a_pair(tmp_path: Path) -> None:
    cfg = _device_cfg(write_pairs(tmp_path, n=2, size=32), load_size=40, crop_size=32)
    sample = PairedDataset(cfg.root, transform=paired_transform(cfg))[(0, 1234)]
    assert sample["input"].shape == (3, 32, 32)  # untouched: no resize on the CPU
    assert torch.equal(sample[GEOMETRY + "input"], sample[GEOMETRY + "target"])
    again = PairedDataset(cfg.root, transform=paired_transform(cfg))[(0, 1234)]
    assert torch.equal(sample[GEOMETRY + "input"], again[GEOMETRY + "input"])  # the seed decides (resume)


def test_crop_and_flip_follow_the_drawn_geometry(tmp_path: Path) -> None:
    cfg = _device_cfg(_ramp_pairs(tmp_path), preprocess="crop", crop_size=16)
    data = PairedDataset(cfg.root, transform=paired_transform(cfg))
    augment = DeviceAugment(cfg)
    flips = set()
    for seed in range(12):
        raw = collate_skipping([data[(0, seed)]])
        out = augment(raw, CPU)
        u_row, u_col, flip = raw[GEOMETRY + "input"][0].tolist()
        top, left = int(u_row * (40 - 16 + 1)), int(u_col * (48 - 16 + 1))
        want = raw["input"][0][:, top:top + 16, left:left + 16]
        want = want.flip(-1) if flip else want
        assert torch.equal(out["input"][0], want)
        assert torch.allclose(out["target"][0], -out["input"][0], atol=1e-6)  # B = 255 - A: same geometry
        flips.add(flip)
    assert flips == {0.0, 1.0}


def test_resize_matches_the_cpu_pipeline(tmp_path: Path) -> None:
    """With no random freedom (load = crop, no flip) both pipelines must give the same picture."""
    root = write_pairs(tmp_path, n=1, size=32)
    cpu_cfg = DataConfig(root=str(root), load_size=48, crop_size=48, flip=False)
    cpu = PairedDataset(root, transform=paired_transform(cpu_cfg))[(0, 7)]["input"]
    dev_cfg = dataclasses.replace(cpu_cfg, augment_on="device")
    raw = collate_skipping([PairedDataset(root, transform=paired_transform(dev_cfg))[(0, 7)]])
    dev = DeviceAugment(dev_cfg)(raw, CPU)["input"][0]
    assert dev.shape == cpu.shape == (3, 48, 48)
    assert (dev - cpu).abs().mean() < 0.01 and (dev - cpu).abs().max() < 0.1  # cv2 vs torch bicubic


def test_images_of_different_sizes_batch_after_the_device_resize(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path, n_a=2, n_b=2, size=32)  # A is 32x32, B 40x36
    cfg = _device_cfg(root, load_size=40, crop_size=32)
    data = UnpairedDataset(root, transform=single_transform(cfg), serial=True)
    raw = collate_skipping([data[(0, 1)], data[(1, 2)]])
    assert raw["A"].shape == (2, 3, 32, 32) and raw["B"].shape == (2, 3, 40, 36)
    a_geometry, b_geometry = raw[GEOMETRY + "A"], raw[GEOMETRY + "B"]
    assert not torch.equal(a_geometry, b_geometry)  # unpaired: each image its own geometry
    mixed = collate_skipping([data[(0, 1)], {**data[(1, 2)], "A": torch.zeros(3, 20, 24)}])
    assert isinstance(mixed["A"], list)
    out = DeviceAugment(cfg)(mixed, CPU)
    assert out["A"].shape == out["B"].shape == (2, 3, 32, 32)
    with pytest.raises(RunError, match="different sizes"):
        to_device(mixed, CPU)


def test_training_with_device_augmentation_resumes_exactly(tmp_path: Path) -> None:
    root, runs = write_pairs(tmp_path / "pairs", n=4, size=32), tmp_path / "runs"

    def config(name: str, steps: int):
        cfg = tiny_config(root, runs, name=name, max_steps=steps)
        cfg.data.augment_on = "device"
        return cfg

    straight = train(config("straight", 6), progress=False)
    train(config("split", 2), progress=False)
    resumed = train(config("split", 6), resume=True, progress=False)
    assert same_weights(straight.checkpoint, resumed.checkpoint)
    assert json.loads((runs / "split" / "config.json").read_text())["data"]["augment_on"] == "device"
