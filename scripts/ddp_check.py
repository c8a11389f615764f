"""Several processes on one machine, as users launch them: torchrun trains Pix2Pix (BatchNorm, so SyncBatchNorm
over NCCL) on a small generated dataset with 1 process, and with 2 when the machine has 2 GPUs, compared with
1 process at twice the batch; then translates a folder with the same process count. Prints one line per check.

    python scripts/ddp_check.py                 # CUDA (NCCL); part of scripts/gpu_check.sh
    python scripts/ddp_check.py --device cpu    # the same checks with gloo, e.g. to try the script
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ["--generator", "unet_128", "--ngf", "16", "--ndf", "16", "--load-size", "142", "--crop-size", "128",
           "--norm", "batch", "--no-dropout", "--precision", "fp32", "--no-progress", "--log-every", "1",
           "--sample-every", "0", "--save-every", "0", "--workers", "2"]


def write_pairs(folder: Path, n: int = 16, size: int = 160) -> Path:
    rng = np.random.default_rng(0)
    (folder / "train").mkdir(parents=True)
    for i in range(n):
        a = np.asarray(Image.fromarray(rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8))
                       .resize((size, size), Image.BILINEAR))
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(folder / "train" / f"{i:03d}.png")
    return folder


def launch(nproc: int | None, args: list[str]) -> tuple[float, str]:
    """Run `i2i ARGS` under torchrun with `nproc` processes (None: a plain process); (seconds, output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    head = [sys.executable, "-m", "i2i"] if nproc is None else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "i2i"]
    started = time.perf_counter()
    done = subprocess.run([*head, *args], capture_output=True, text=True, env=env, timeout=600)
    output = done.stdout + done.stderr
    if done.returncode:
        raise SystemExit(f"FAILED ({' '.join(args[:2])}, {nproc} processes):\n{output[-3000:]}")
    return time.perf_counter() - started, output


def losses(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("lr", "images_per_s")}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def worst_difference(a: list[dict], b: list[dict]) -> float:
    return max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-8) for x, y in zip(a, b, strict=True) for k in x
               if k not in ("step", "epoch"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    gpus = torch.cuda.device_count() if args.device == "cuda" else 2
    counts = [1, 2] if gpus >= 2 else [1]
    with tempfile.TemporaryDirectory() as tmp:
        data, runs = write_pairs(Path(tmp) / "pairs"), Path(tmp) / "runs"
        common = ["--data", str(data), "--runs-dir", str(runs), "--device", args.device, "--max-steps",
                  str(args.steps), *OPTIONS]
        for nproc in counts:
            seconds, output = launch(nproc, ["train", "pix2pix", *common, "--name", f"ddp{nproc}"])
            start = next(line for line in output.splitlines() if line.startswith("distributed:"))
            done = next(line for line in output.splitlines() if line.startswith("done:"))
            print(f"train, {nproc} process(es): {seconds:.1f} s wall\n  {start}\n  {done}")
            if nproc == 2:
                launch(None, ["train", "pix2pix", *common, "--name", "one_x2", "--batch-size", "2"])
                diff = worst_difference(losses(runs / "one_x2"), losses(runs / "ddp2"))
                print(f"  2 processes x batch 1 vs 1 process x batch 2: largest relative loss difference over "
                      f"{args.steps} steps {diff:.2e} (TF32 and cuDNN autotuning make them differ a little on CUDA)")
            seconds, output = launch(nproc, ["translate", str(runs / f"ddp{nproc}"), str(data / "train"),
                                             str(Path(tmp) / f"out{nproc}"), "--device", args.device, "--no-progress"])
            summary = next(line for line in output.splitlines() if line.startswith("translated"))
            written = len(list((Path(tmp) / f"out{nproc}").glob("*.png")))
            print(f"translate, {nproc} process(es): {seconds:.1f} s wall; {summary}; {written} files written")


if __name__ == "__main__":
    main()
