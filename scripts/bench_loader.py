"""Images/s of the training data pipeline alone (decode, resize 286, crop 256, flip, collate), no model, for
several worker counts: compare with the model's images/s (scripts/bench.py) to see whether a step would
starve. Uses the paired facades set, or generated pairs when none is given.

    python scripts/bench_loader.py --data ../shared/data/facades --workers 0 2 4 8 --batch-size 1 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from i2i.config import DataConfig
from i2i.data import DataSpec, make_dataset
from i2i.data.stream import BatchStream


def generated_pairs(root: Path, count: int = 64) -> Path:
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for i in range(count):
        small = rng.integers(0, 256, size=(16, 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize((512, 256), Image.BILINEAR).save(root / "train" / f"{i:04d}.jpg", quality=95)
    return root


def images_per_s(root: Path, workers: int, batch_size: int, batches: int, start_method: str | None) -> float:
    dataset = make_dataset(DataSpec("paired"), DataConfig(root=str(root)))
    stream = BatchStream(dataset, batch_size=batch_size, seed=0, workers=workers, start_method=start_method)
    iterator = iter(stream)
    next(iterator)  # workers started, first batch in: not timed
    started = time.perf_counter()
    images = sum(next(iterator)["input"].shape[0] for _ in range(batches))
    seconds = time.perf_counter() - started
    stream.close()
    return images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a paired dataset root (default: generated pairs)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--images", type=int, default=160, help="images timed per setting")
    parser.add_argument("--start-method", default="forkserver", choices=["fork", "forkserver", "spawn"],
                        help="as the trainer starts its workers (fork can hang after OpenCV used threads here)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or generated_pairs(Path(tmp) / "pairs")
        print(f"{'workers':>7} {'batch':>5} {'images/s':>9}")
        for workers in args.workers:
            for batch in args.batch_size:
                rate = images_per_s(root, workers, batch, max(2, args.images // batch), args.start_method)
                rows.append({"workers": workers, "batch_size": batch, "images_per_s": rate})
                print(f"{workers:>7} {batch:>5} {rate:9.1f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
