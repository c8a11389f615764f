"""Every combination of the speed options, typed, timed on one model: how far `auto`'s choice is from the best.

For each combination of --precision, --gemm-convolutions, --one-pass-batchnorm and --channels-last that applies
to the model (the swaps only where its networks have what they act on), one training step at batch 1 is timed
after a warm-up (`i2i.bench.bench_training`, the trainer's own step, synthetic data), fastest first; then `auto`
itself (what `i2i train` would choose here, measured afresh), and how it compares with the best typed choice.

    python scripts/speed_grid.py --model pix2pix --size 256 --steps 4
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

from i2i.bench import bench_training, write_data
from i2i.runtime.process import tune_cpu_allocator

SWAPS = ("gemm_convolutions", "one_pass_batchnorm", "channels_last")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pix2pix", choices=["pix2pix", "cyclegan", "cut"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per combination, after one warm-up")
    parser.add_argument("--precisions", nargs="+", default=None, help="default: fp32 bf16 (and fp16 on CUDA)")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the `i2i` command runs
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if args.device == "cuda" else ["fp32", "bf16"])
    swaps = SWAPS if args.model == "pix2pix" else ("channels_last",)  # ResNet G + InstanceNorm: no GEMM, no BN
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_data(data, args.size)
        for precision, *values in itertools.product(precisions, *([(True, False)] * len(swaps))):
            typed = dict(zip(swaps, values, strict=True))
            row = bench_training(args.model, data, Path(tmp) / "runs", steps=args.steps, device=args.device,
                                 precision=precision, **typed)
            rows.append((row["seconds"], precision, typed))
            print(f"{precision:>5} {' '.join(f'{k}={v}' for k, v in typed.items())}: {row['seconds']:.3f} s",
                  flush=True)
        os.environ["I2I_AUTOTUNE"] = "fresh"
        auto = bench_training(args.model, data, Path(tmp) / "runs", steps=args.steps, device=args.device)
    rows.sort(key=lambda r: r[0])
    print("\nfastest first:")
    for seconds, precision, typed in rows:
        print(f"  {seconds:.3f} s  {precision} {typed}")
    best = rows[0][0]
    chosen = next((s for s, p, t in rows if p == auto["settings"]["precision"]
                   and all(auto["settings"][k] == v for k, v in t.items())), None)
    print(f"\nauto: {auto['auto']}")
    if chosen is not None:
        print(f"auto's choice, typed: {chosen:.3f} s = {chosen / best:.2f}x the best typed choice ({best:.3f} s)")


if __name__ == "__main__":
    main()
