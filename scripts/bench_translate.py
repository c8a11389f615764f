"""Benchmark `i2i translate` as whole processes: images/s and GFLOP/s for unet_256 at 256x256.

Builds a run directory holding an (untrained) unet_256 Pix2Pix checkpoint and a folder of 256x256
images, then times `i2i translate` end to end (start-up, decoding, compute, encoding) for each batch
size and precision, and checks that bf16 outputs stay close to fp32's. Prints a table and writes JSON.

    python scripts/bench_translate.py --images 200 --out bench_translate.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from i2i.checkpoint.weights import save_checkpoint
from i2i.config import DataConfig, RunConfig, TrainConfig
from i2i.data.io import list_images, read_image, write_image
from i2i.models import Pix2Pix, Pix2PixConfig

SHARED_FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades" / "val"


def make_images(folder: Path, count: int) -> str:
    """256x256 photos: the facades val photos when ../shared is there, else smooth random images."""
    folder.mkdir(parents=True)
    sources = list_images(SHARED_FACADES) if SHARED_FACADES.is_dir() else []
    rng = np.random.default_rng(0)
    for i in range(count):
        if sources:
            image = read_image(sources[i % len(sources)])[:, :256]
        else:
            small = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            image = np.kron(small, np.ones((16, 16, 1), np.uint8))
        write_image(folder / f"{i:04d}.jpg", image)
    return "facades val photos" if sources else "synthetic images"


def make_run(runs: Path) -> Path:
    torch.manual_seed(0)
    model = Pix2Pix(Pix2PixConfig())
    cfg = RunConfig("pix2pix", model.cfg, DataConfig(), TrainConfig(name="bench", runs_dir=str(runs)))
    save_checkpoint(cfg.run_dir, 0, model.networks(), {}, cfg.to_dict())
    return cfg.run_dir


def forward_gflop() -> float:
    net = Pix2Pix(Pix2PixConfig()).G.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, 3, 256, 256))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    gflop = forward_gflop()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = make_images(tmp / "in", args.images)
        run = make_run(tmp / "runs")
        i2i = [sys.executable, "-m", "i2i", "translate", str(run), str(tmp / "in")]
        print(f"{args.images} {source}, unet_256 forward = {gflop:.1f} GFLOP, torch threads {torch.get_num_threads()}")
        print(f"{'precision':>9} {'batch':>5} {'seconds':>8} {'images/s':>9} {'GFLOP/s':>8} {'mean |Δ| vs fp32':>15}")
        jobs = [(p, b) for p in args.precisions for b in args.batch_sizes] + [("auto", "auto")]  # the defaults
        for precision, batch in jobs:
            out = tmp / f"out_{precision}_{batch}"
            chosen = [] if batch == "auto" else ["--batch-size", str(batch), "--precision", precision]
            start = time.perf_counter()
            subprocess.run([*i2i, str(out), *chosen, "--no-progress", "--format", "png"], check=True,
                           capture_output=True)
            seconds = time.perf_counter() - start
            row = {"precision": precision, "batch_size": batch, "seconds": seconds,
                   "images_per_s": args.images / seconds, "gflop_per_s": gflop * args.images / seconds}
            ref = tmp / f"out_fp32_{args.batch_sizes[0]}"
            if ref.is_dir() and ref != out:
                diffs = [np.abs(read_image(p).astype(int) - read_image(out / p.name).astype(int)).mean()
                         for p in list_images(ref)[:20]]
                row["mean_abs_diff_vs_fp32"] = float(np.mean(diffs))
            results.append(row)
            diff = row.get("mean_abs_diff_vs_fp32")
            print(f"{precision:>9} {batch:>5} {seconds:8.1f} {row['images_per_s']:9.2f} {row['gflop_per_s']:8.1f} "
                  f"{'' if diff is None else f'{diff:.2f} levels':>15}")
    if args.out:
        args.out.write_text(json.dumps({"gflop_per_forward": gflop, "images": args.images, "results": results},
                                       indent=2))


if __name__ == "__main__":
    main()
