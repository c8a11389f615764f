"""Seconds per training step of CUT, FastCUT and CycleGAN measured back to back in one process, and the
--max-steps each gets from an equal compute budget (for the README's comparison on summer2winter_yosemite).

The models are timed in interleaved rounds (CUT, FastCUT, CycleGAN, CUT, ...) on the same synthetic batch,
so load from other processes on a shared machine falls on all three alike. Prints JSON.

    python scripts/bench_cut.py --crop 128 --budget 240
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from i2i.config import DataConfig, RunConfig, TrainConfig
from i2i.models import CUTConfig, CycleGANConfig
from i2i.models.cut import MODE_DEFAULTS
from i2i.training.trainer import Trainer, to_device

MODELS = ("cut", "fastcut", "cyclegan")


def model_config(name: str, generator: str, width: int) -> tuple[str, object]:
    """The model's paper defaults, with `generator` and `width` (--ngf = --ndf) for every network."""
    def sized(cfg: object, **extra: object) -> object:
        return dataclasses.replace(cfg, base_channels=width, **extra)

    if name == "cyclegan":
        c = CycleGANConfig()
        g = sized(c.g_ab, name=generator)
        return "cyclegan", dataclasses.replace(c, g_ab=g, g_ba=g, d_a=sized(c.d_a), d_b=sized(c.d_b))
    mode, c = MODE_DEFAULTS[name], CUTConfig()
    return "cut", CUTConfig(generator=sized(c.generator, name=generator), discriminator=sized(c.discriminator),
                            mode=name, lambda_nce=mode["lambda_nce"], nce_idt=mode["nce_idt"],
                            flip_equivariance=mode["flip_equivariance"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--generator", default="resnet_9blocks")
    parser.add_argument("--ngf", type=int, default=64, help="base channels of every G and D")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="steps per model per round")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds of training steps per model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        rng = np.random.default_rng(0)
        for domain in ("A", "B"):
            (root / f"train{domain}").mkdir(parents=True)
            img = rng.integers(0, 256, (args.crop, args.crop, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / f"train{domain}" / "0.png")
        trainers, batches = {}, {}
        for name in MODELS:
            model, cfg = model_config(name, args.generator, args.ngf)
            run = RunConfig(model, cfg, DataConfig(root=str(root), preprocess="none", flip=False),
                            TrainConfig(name=name, runs_dir=str(Path(tmp) / "runs"), max_steps=10**6, workers=0))
            trainers[name] = Trainer(run, progress=False)
            t = trainers[name]
            batches[name] = to_device(next(iter(t.batches.loader)), t.device, t.place.memory_format)
            t.train_step(batches[name])  # warm-up
        times: dict[str, list[float]] = {name: [] for name in MODELS}
        for _ in range(args.rounds):
            for name in MODELS:
                start = time.perf_counter()
                for _ in range(args.steps):
                    trainers[name].train_step(batches[name])
                times[name].append((time.perf_counter() - start) / args.steps)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps({"crop": args.crop, "generator": args.generator, "ngf": args.ngf,
                      "precision": trainers["cut"].precision, "budget_s": args.budget,
                      "s_per_step": seconds, "max_steps": {n: int(args.budget / s) for n, s in seconds.items()},
                      "relative_to_cyclegan": {n: s / seconds["cyclegan"] for n, s in seconds.items()}}, indent=2))


if __name__ == "__main__":
    main()
