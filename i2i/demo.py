"""The embedded demo: build a day->night set from scikit-image's photos, train a small Pix2Pix, score it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from i2i.config import DataConfig, RunConfig, TrainConfig
from i2i.data.demo_data import build_day_night
from i2i.data.io import list_images, read_image, write_image
from i2i.evaluation.paired import psnr
from i2i.models.pix2pix import Pix2PixConfig
from i2i.nets import DiscriminatorConfig, GeneratorConfig
from i2i.training.trainer import Summary, train
from i2i.translation.translator import Translator

SIZE = 64


@dataclass
class DemoReport:
    """Held-out scores of the trained model next to the identity baseline (output = input)."""

    out_dir: Path
    summary: Summary
    l1_model: float
    l1_identity: float
    psnr_model: float
    psnr_identity: float
    n_val: int

    def text(self) -> str:
        return "\n".join([
            f"i2i demo: day -> night Pix2Pix ({self.summary.steps} steps, {self.summary.seconds:.0f} s of training)",
            f"held-out crops: {self.n_val}",
            "                  L1 (0-255)   PSNR (dB)",
            f"  identity        {self.l1_identity:9.2f}   {self.psnr_identity:9.2f}",
            f"  i2i pix2pix     {self.l1_model:9.2f}   {self.psnr_model:9.2f}",
            f"grid (day | i2i night | true night): {self.out_dir / 'demo_grid.png'}",
            f"run directory: {self.summary.run_dir}",
        ])


def demo_config(data_root: Path, runs_dir: Path, steps: int, seed: int) -> RunConfig:
    """A small Pix2Pix for 64x64 crops: unet_64 with 32 base channels, full-size crops, flips."""
    g = GeneratorConfig(name="unet_64", base_channels=32)
    d = DiscriminatorConfig(name="basic", in_channels=6, base_channels=32)
    return RunConfig(
        model="pix2pix",
        model_config=Pix2PixConfig(generator=g, discriminator=d, direction="AtoB"),
        data=DataConfig(root=str(data_root), preprocess="none", load_size=SIZE, crop_size=SIZE),
        train=TrainConfig(name="run", runs_dir=str(runs_dir), max_steps=steps, seed=seed, workers=0,
                          log_every=25, sample_every=max(steps // 4, 1), save_every=0, keep_last=1),
    )


def run_demo(out: Path, steps: int = 1000, seed: int = 0, progress: bool = True, overwrite: bool = False,
             ) -> DemoReport:
    """Build the data, train, translate the held-out crops, write a grid and a report; return the scores.
    An existing OUT/run is replaced only with `overwrite` (else ValueError, nothing touched)."""
    out = Path(out)
    if (out / "run").exists():
        if not overwrite:
            raise ValueError(f"{out / 'run'} already exists: pass --overwrite to replace it, or another --out")
        shutil.rmtree(out / "run")
    data_root = build_day_night(out / "data", size=SIZE, seed=seed)
    summary = train(demo_config(data_root, out, steps, seed), progress=progress)

    translator = Translator.from_pretrained(summary.run_dir)
    rows, l1_model, l1_id, psnr_model, psnr_id = [], [], [], [], []
    for day_path in list_images(data_root / "val" / "A"):
        day, night = read_image(day_path), read_image(data_root / "val" / "B" / day_path.name)
        fake = translator(day)
        l1_model.append(np.abs(fake.astype(float) - night).mean())
        l1_id.append(np.abs(day.astype(float) - night).mean())
        psnr_model.append(psnr(fake, night))
        psnr_id.append(psnr(day, night))
        rows.append(np.concatenate([day, fake, night], axis=1))
    write_image(out / "demo_grid.png", np.concatenate(rows, axis=0))
    report = DemoReport(out, summary, float(np.mean(l1_model)), float(np.mean(l1_id)),
                        float(np.mean(psnr_model)), float(np.mean(psnr_id)), len(rows))
    (out / "report.txt").write_text(report.text() + "\n")
    return report
