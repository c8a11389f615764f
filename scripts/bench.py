"""Training and translation speed against the machine's measured matmul peak.

Measures, after warm-up, steady-state training steps/s for Pix2Pix (unet_256 + basic D) and
CycleGAN (resnet_9blocks x2 + basic x2) at batch 1, and translation images/s for unet_256 at batch
1 and 8, for each precision the device supports. FLOPs come from torch.utils.flop_counter; the
matmul peak per dtype is measured in the same run. Data loading is excluded (synthetic batches):
this is the model step the trainer runs. Prints a table and writes JSON.

    python scripts/bench.py                          # CPU, or CUDA when present
    python scripts/bench.py --device cuda --compile --channels-last --out bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from i2i.config import DataConfig, RunConfig, TrainConfig
from i2i.models import CycleGANConfig, Pix2PixConfig
from i2i.nets import GeneratorConfig
from i2i.runtime.devices import DTYPES, has_fast_bf16, pick_device
from i2i.runtime.process import tune_cpu_allocator
from i2i.training.trainer import Trainer, to_device
from i2i.translation.translator import Translator


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 0.5,
                windows: int = 4) -> float:
    """GFLOP/s of large square matmuls in `dtype` (the practical ceiling for conv-heavy models).

    The best of several short windows: on a shared machine one long average reads neighbours' load as
    a lower peak (seen: 142 instead of 176 GFLOP/s), which would inflate every "% of peak".
    """
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
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


def bench_training(model: str, precision: str, batch_size: int, args: argparse.Namespace, data: Path,
                   runs: Path) -> dict:
    model_cfg = Pix2PixConfig() if model == "pix2pix" else CycleGANConfig()
    cfg = RunConfig(model, model_cfg, DataConfig(root=str(data), preprocess="none", flip=False),
                    TrainConfig(name=f"{model}_{precision}_{batch_size}", runs_dir=str(runs), max_steps=10**6,
                                device=args.device, precision=precision, channels_last=args.channels_last,
                                compile=args.compile, compile_mode=args.compile_mode, workers=0,
                                batch_size=batch_size))
    trainer = Trainer(cfg, progress=False)
    batch = to_device(next(iter(trainer.batches.loader)), trainer.device, trainer.place.memory_format)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(batch)
    gflop = counter.get_total_flops() / 1e9
    steps = args.steps if model == "pix2pix" else max(2, args.steps // 5)
    for _ in range(args.warmup):
        trainer.train_step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    sync(trainer.device)
    seconds = (time.perf_counter() - start) / steps
    return {"what": f"{model} train step", "precision": trainer.precision, "batch": batch_size, "seconds": seconds,
            "per_s": 1 / seconds, "gflop": gflop, "gflop_per_s": gflop / seconds,
            "peak_memory_mb": peak_memory_mb(trainer.device)}


def bench_translation(precision: str, batch: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    from i2i.nets import build_generator

    gen_cfg = GeneratorConfig()
    translator = Translator(build_generator(gen_cfg), gen_cfg, RunConfig("pix2pix", Pix2PixConfig()), "AtoB",
                            pick_device(args.device), precision)
    if args.channels_last:
        translator.net.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, args.size, args.size) * 2 - 1
    counter = FlopCounterMode(display=False)
    with counter:
        translator.translate_tensor(x)
    gflop = counter.get_total_flops() / 1e9
    for _ in range(args.warmup):
        translator.translate_tensor(x)
    rounds = max(2, args.steps // batch)
    start = time.perf_counter()
    for _ in range(rounds):
        translator.translate_tensor(x)
    sync(translator.device)
    seconds = (time.perf_counter() - start) / rounds
    return {"what": "unet_256 translate", "precision": precision, "batch": batch, "seconds": seconds,
            "per_s": batch / seconds, "gflop": gflop, "gflop_per_s": gflop / seconds,
            "peak_memory_mb": peak_memory_mb(translator.device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precisions", nargs="+", default=None, help="default: every one the device supports")
    parser.add_argument("--what", nargs="+", default=["pix2pix", "cyclegan", "translate"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (CycleGAN runs a fifth of them)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--train-batches", type=int, nargs="+", default=[1], help="training batch sizes")
    parser.add_argument("--translate-batches", type=int, nargs="+", default=[1, 8], help="translation batch sizes")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default="default", choices=["default", "reduce-overhead", "max-autotune"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tune_cpu_allocator()  # as the `i2i` command does: this script owns its process
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"])
    peaks = {p: matmul_peak(device, DTYPES[p]) for p in precisions}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"native bf16: {has_fast_bf16(device)}")
    print("matmul peak: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()))
    rows = []
    header = f"{'what':<20} {'prec':>5} {'batch':>5} {'s/iter':>8} {'iter/s':>8} {'GFLOP':>8} {'GFLOP/s':>8} " \
             f"{'% peak':>7} {'peak MiB':>9}"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_data(data, args.size, count=max(4, *args.train_batches))
        for precision in precisions:
            jobs = [("train", m, b) for m in ("pix2pix", "cyclegan") if m in args.what for b in args.train_batches]
            jobs += [("translate", "", b) for b in args.translate_batches if "translate" in args.what]
            for kind, model, batch in jobs:
                row = (bench_training(model, precision, batch, args, data, Path(tmp) / "runs") if kind == "train"
                       else bench_translation(precision, batch, args))
                row["fraction_of_peak"] = row["gflop_per_s"] / peaks[precision]
                rows.append(row)
                print(f"{row['what']:<20} {precision:>5} {batch:>5} {row['seconds']:8.3f} {row['per_s']:8.2f} "
                      f"{row['gflop']:8.1f} {row['gflop_per_s']:8.1f} {100 * row['fraction_of_peak']:6.1f}% "
                      f"{row['peak_memory_mb']:9.0f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "matmul_peak_gflop_per_s": peaks,
                                        "compile": args.compile and args.compile_mode,
                                        "channels_last": args.channels_last,
                                        "results": rows}, indent=2))


if __name__ == "__main__":
    main()
