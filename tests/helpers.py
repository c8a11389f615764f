"""Test helpers: tiny generated datasets, tiny run configs, and the optional real data in ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2i.config import DataConfig, RunConfig, TrainConfig
from i2i.models.pix2pix import Pix2PixConfig
from i2i.nets import DiscriminatorConfig, GeneratorConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(*parts: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is missing (it lives in ../shared/data beside the repo)")
    return path


def write_pairs(root: Path, n: int = 6, size: int = 32, seed: int = 0, layout: str = "side_by_side") -> Path:
    """A paired dataset under root/train: A is a random smooth image, B is a deterministic recolouring of A."""
    rng = np.random.default_rng(seed)
    folder = root / "train"
    for i in range(n):
        small = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
        a = np.asarray(Image.fromarray(small).resize((size, size), Image.BILINEAR))
        b = (255 - a[:, :, ::-1]).copy()
        if layout == "side_by_side":
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate([a, b], axis=1)).save(folder / f"{i:03d}.png")
        else:
            (folder / "A").mkdir(parents=True, exist_ok=True)
            (folder / "B").mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(folder / "A" / f"{i:03d}.png")
            Image.fromarray(b).save(folder / "B" / f"{i:03d}.png")
    return root


def tiny_config(data_root: Path, runs_dir: Path, name: str = "tiny", max_steps: int = 4, **train) -> RunConfig:
    """A Pix2Pix run small enough for unit tests: unet_64 with 4 base channels on 32->64 px crops."""
    g = GeneratorConfig(name="unet_64", base_channels=4)
    d = DiscriminatorConfig(name="basic", in_channels=6, base_channels=4)
    # decay_steps=0: a constant LR, so a run "killed" at step k (a shorter budget) and resumed with a longer
    # one follows the uninterrupted run exactly (a budget's decay follows the budget)
    defaults = dict(name=name, runs_dir=str(runs_dir), max_steps=max_steps, log_every=1, sample_every=2,
                    save_every=2, workers=0, deterministic=True, precision="fp32", decay_steps=0)
    return RunConfig(
        model="pix2pix",
        model_config=Pix2PixConfig(generator=g, discriminator=d),
        data=DataConfig(root=str(data_root), load_size=72, crop_size=64),
        train=TrainConfig(**{**defaults, **train}),
    )


def same_weights(ckpt_a: Path, ckpt_b: Path, names: tuple[str, ...] = ("G", "D")) -> bool:
    """True when two checkpoint folders hold bit-identical weights for every named network."""
    import torch
    from safetensors.torch import load_file

    for name in names:
        a, b = load_file(str(ckpt_a / f"{name}.safetensors")), load_file(str(ckpt_b / f"{name}.safetensors"))
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            return False
    return True


def write_unpaired(root: Path, n_a: int = 5, n_b: int = 3, size: int = 32, seed: int = 0) -> Path:
    """An unpaired dataset: root/trainA (n_a images), root/trainB (n_b images, a different size)."""
    rng = np.random.default_rng(seed)
    for domain, n, shape in (("A", n_a, (size, size)), ("B", n_b, (size + 8, size + 4))):
        folder = root / f"train{domain}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize(shape[::-1], Image.BILINEAR)
            img.save(folder / f"{domain.lower()} {i:02d}.png")  # spaces in names, as in the real sets
    return root


def tiny_cyclegan_config(data_root: Path, runs_dir: Path, name: str = "cg", max_steps: int = 4, **train) -> RunConfig:
    """A CycleGAN run small enough for unit tests: resnet_6blocks with 4 base channels on 32 px crops."""
    from i2i.models.cyclegan import CycleGANConfig

    def g() -> GeneratorConfig:
        return GeneratorConfig(name="resnet_6blocks", base_channels=4, norm="instance", dropout=False)

    def d() -> DiscriminatorConfig:
        return DiscriminatorConfig(name="basic", in_channels=3, base_channels=4, norm="instance")

    # decay_steps=0: a constant LR, so a run "killed" at step k (a shorter budget) and resumed with a longer
    # one follows the uninterrupted run exactly (a budget's decay follows the budget)
    defaults = dict(name=name, runs_dir=str(runs_dir), max_steps=max_steps, log_every=1, sample_every=2,
                    save_every=2, workers=0, deterministic=True, precision="fp32", decay_steps=0)
    return RunConfig(
        model="cyclegan",
        model_config=CycleGANConfig(g_ab=g(), g_ba=g(), d_a=d(), d_b=d(), pool_size=3),
        data=DataConfig(root=str(data_root), load_size=36, crop_size=32),
        train=TrainConfig(**{**defaults, **train}),
    )


def cli(*args: str | Path):
    """Run the CLI in-process (a click Result); a Python traceback (an uncaught exception) fails the test."""
    from click.testing import CliRunner

    from i2i.cli.commands import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}\n{result.output}")
    return result
