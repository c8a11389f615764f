"""Training and translation speed against the machine's measured matmul peak.

Measures, after warm-up, steady-state training steps/s for Pix2Pix (unet_256 + basic D) and
CycleGAN (resnet_9blocks x2 + basic x2) at batch 1, and translation images/s for unet_256 at batch
1 and 8, for each precision the device supports (the precision typed; layout and speed swaps timed as a run does
them; `i2i bench` shows what auto picks for everything). FLOPs come from torch.utils.flop_counter; the
matmul peak per dtype is measured in the same run. Data loading is excluded (synthetic batches):
this is the model step the trainer runs. Prints a table and writes JSON.

    python scripts/bench.py                          # CPU, or CUDA when present
    python scripts/bench.py --device cuda --compile --channels-last --out bench.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from i2i.bench import bench_training, bench_translation, machine, matmul_peak, write_data
from i2i.runtime.devices import DTYPES, pick_device
from i2i.runtime.process import tune_cpu_allocator


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
    about = machine(device)
    name = about["name"]
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"native bf16 flag: {about['native_bf16_flag']}")
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
                row = (bench_training(model, data, Path(tmp) / "runs", args.steps if model == "pix2pix" else
                                      max(2, args.steps // 5), args.warmup, device=args.device, precision=precision,
                                      batch_size=batch, channels_last=args.channels_last, compile=args.compile,
                                      compile_mode=args.compile_mode) if kind == "train"
                       else bench_translation(args.device, args.size, args.steps, args.warmup, precision, batch,
                                              args.channels_last))
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
