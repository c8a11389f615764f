"""`i2i bench`: what this machine does. The device, the matmul peak of each dtype, what `auto` picks for each model
and for translation and why (timed here, as a run would), and the steps/s and images/s at those choices, with
FLOP/s so numbers compare across machines. Synthetic data; nothing is written outside a temporary folder.
scripts/bench.py sweeps typed precisions and batch sizes with the same functions."""

from __future__ import annotations

import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from i2i.config import DataConfig, RunConfig, TrainConfig
from i2i.models import CUTConfig, CycleGANConfig, Pix2PixConfig
from i2i.nets import GeneratorConfig, build_generator
from i2i.runtime.autotune import device_name, sync
from i2i.runtime.devices import DTYPES, has_fast_bf16, pick_device
from i2i.training.trainer import Trainer, to_device
from i2i.translation.translator import Translator

MODELS = {"pix2pix": Pix2PixConfig, "cyclegan": CycleGANConfig, "cut": CUTConfig}  # each at the paper's networks


def machine(device: torch.device) -> dict[str, Any]:
    """What a bug report needs about the machine."""
    return {"device": str(device), "name": device_name(device), "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "native_bf16_flag": has_fast_bf16(device)}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 0.5,
                windows: int = 4) -> float:
    """GFLOP/s of large square matmuls in `dtype` (the practical ceiling for conv-heavy models).

    The best of several short windows: on a shared machine one long average reads neighbours' load as
    a lower peak, which would inflate every "% of peak".
    """
    seeded = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=seeded).to(device, dtype) for _ in range(2))
    a @ b  # warm-up
    best = 0.0
    for _ in range(windows):
        sync(device)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        sync(device)
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start) / 1e9)
    return best


def write_data(root: Path, size: int, count: int = 4) -> None:
    """`count` paired A|B images and `count` unpaired images per domain, enough for one batch of that size."""
    rng = np.random.default_rng(0)
    for i in range(count):
        for folder, width in (("train", 2 * size), ("trainA", size), ("trainB", size)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 256, size=(size, width, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / folder / f"{i}.png")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process so far, in MiB


def bench_training(model: str, data: Path, runs: Path, steps: int, warmup: int = 1, **train: Any) -> dict[str, Any]:
    """Steady-state seconds per training step of `model` on the synthetic set in `data` (no data loading), with
    `train` options (precision, batch_size, channels_last, compile, ...; anything left auto is timed first)."""
    cfg = RunConfig(model, MODELS[model](), DataConfig(root=str(data), preprocess="none", flip=False),
                    TrainConfig(name=f"{model}_{len(list(runs.glob('*')))}", runs_dir=str(runs), max_steps=10**6,
                                workers=0, **train))
    trainer = Trainer(cfg, progress=False)
    batch = to_device(next(iter(trainer.batches.loader)), trainer.device, trainer.place.memory_format)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(batch)
    gflop = counter.get_total_flops() / 1e9
    for _ in range(warmup):
        trainer.train_step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    sync(trainer.device)
    seconds = (time.perf_counter() - start) / steps
    trainer.batches.close()
    auto = trainer.cfg.train.speed
    return {"what": f"{model} train step", "precision": trainer.precision, "batch": cfg.train.batch_size,
            "seconds": seconds, "per_s": 1 / seconds, "gflop": gflop, "gflop_per_s": gflop / seconds,
            "peak_memory_mb": peak_memory_mb(trainer.device), "auto": auto["summary"] if auto else None,
            "settings": {"precision": trainer.precision, **{k: getattr(trainer.speed, k) for k in
                                                            ("channels_last", "gemm_convolutions",
                                                             "one_pass_batchnorm")}}}


def bench_translation(device: str, size: int, steps: int, warmup: int = 1, precision: str = "auto",
                      batch: int | None = None, channels_last: bool = False) -> dict[str, Any]:
    """Images/s of the unet_256 generator translating `size`² inputs (precision and batch auto: timed first)."""
    gen_cfg = GeneratorConfig()
    cfg = RunConfig("pix2pix", Pix2PixConfig(), DataConfig(crop_size=size))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = build_generator(gen_cfg)
    translator = Translator(net, gen_cfg, cfg, "AtoB", pick_device(device), precision, batch_size=batch)
    if channels_last:
        translator.net.to(memory_format=torch.channels_last)
    n = translator.batch_size
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    counter = FlopCounterMode(display=False)
    with counter:
        translator.translate_tensor(x)
    gflop = counter.get_total_flops() / 1e9
    for _ in range(warmup):
        translator.translate_tensor(x)
    rounds = max(2, steps // n)
    start = time.perf_counter()
    for _ in range(rounds):
        translator.translate_tensor(x)
    sync(translator.device)
    seconds = (time.perf_counter() - start) / rounds
    return {"what": "unet_256 translate", "precision": translator.precision, "batch": n, "seconds": seconds,
            "per_s": n / seconds, "gflop": gflop, "gflop_per_s": gflop / seconds,
            "peak_memory_mb": peak_memory_mb(translator.device), "auto": translator.speed.summary or None}


def run(device: str = "auto", what: tuple[str, ...] = ("pix2pix", "cyclegan", "cut", "translate"), size: int = 256,
        steps: int = 3, print_line: Any = print) -> dict[str, Any]:
    """The whole report: the machine, matmul peaks, then one row per model and translation at auto's choices."""
    place = pick_device(device)
    precisions = ("fp32", "bf16", "fp16") if place.type == "cuda" else ("fp32", "bf16")
    report: dict[str, Any] = {"machine": machine(place)}
    m = report["machine"]
    print_line(f"device {m['device']} ({m['name']}), torch {m['torch']}, {m['threads']} threads, "
               f"python {m['python']}")
    peaks = {p: matmul_peak(place, DTYPES[p], n=512 if place.type == "cpu" else 4096, seconds=0.25)
             for p in precisions}
    report["matmul_peak_gflop_per_s"] = peaks
    print_line("matmul peak: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()))
    print_line(f"{'what':<20} {'prec':>5} {'batch':>5} {'s/iter':>8} {'iter/s':>8} {'GFLOP':>8} {'GFLOP/s':>8} "
               f"{'% peak':>7}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_data(data, size)
        for name in what:
            row = (bench_translation(device, size, steps=max(2, steps)) if name == "translate"
                   else bench_training(name, data, Path(tmp) / "runs", steps=steps, device=device))
            row["fraction_of_peak"] = row["gflop_per_s"] / peaks[row["precision"]]
            rows.append(row)
            print_line(f"{row['what']:<20} {row['precision']:>5} {row['batch']:>5} {row['seconds']:8.3f} "
                       f"{row['per_s']:8.2f} {row['gflop']:8.1f} {row['gflop_per_s']:8.1f} "
                       f"{100 * row['fraction_of_peak']:6.1f}%")
            if row["auto"]:
                print_line(f"{'':<20} auto: {row['auto']}")
    report["results"] = rows
    return report
