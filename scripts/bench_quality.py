"""Quality benchmark: short Pix2Pix and CycleGAN runs on the real sets, scored against trivial baselines.

Trains Pix2Pix on facades (labels -> photo, --direction BtoA) and CycleGAN on summer2winter_yosemite
(summer -> winter) for a step budget that fits about a CPU hour on 2 cores, then reports FID/KID
(and PSNR/SSIM/MS-SSIM for facades) on the held-out split next to the identity baseline (the input
itself as the "translation"). For scale, full-length training (200 epochs at 256x256) is published
at facades FID ~119-125 and summer->winter FID ~77-84 (mmagic's tables, pytorch-fid protocol; ours
is clean-fid's resize, see i2i/evaluation/metrics.py), so short CPU runs are expected to sit well above those.

    python scripts/bench_quality.py --out bench_quality.json
    python scripts/bench_quality.py --pix2pix-steps 80000 --cyclegan-steps 250000 --crop 256  # GPU, full length
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from i2i.evaluation.evaluate import evaluate_run, format_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def train_command(model: str, data: Path, steps: int, crop: int, runs: Path, extra: list[str]) -> list[str]:
    load = round(crop * 286 / 256)
    return ["i2i", "train", model, "--data", str(data), "--name", f"quality_{model}", "--runs-dir", str(runs),
            "--max-steps", str(steps), "--crop-size", str(crop), "--load-size", str(load), "--save-every", "1000",
            "--sample-every", "500", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding facades/ and summer2winter_yosemite/")
    parser.add_argument("--runs-dir", type=Path, default=Path("checkpoints"))
    parser.add_argument("--pix2pix-steps", type=int, default=2000)
    parser.add_argument("--cyclegan-steps", type=int, default=600)
    parser.add_argument("--crop", type=int, default=256, help="Pix2Pix crop; CycleGAN uses half of it on the CPU")
    parser.add_argument("--cyclegan-crop", type=int, default=128)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--only", choices=["pix2pix", "cyclegan"], default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from click.testing import CliRunner

    from i2i.cli.common import main as cli

    jobs = {
        "pix2pix": (args.data / "facades", args.pix2pix_steps, args.crop, ["--direction", "BtoA"], "val", None),
        "cyclegan": (args.data / "summer2winter_yosemite", args.cyclegan_steps, args.cyclegan_crop, [], "test",
                     "AtoB"),
    }
    results = {}
    for model, (data, steps, crop, extra, split, direction) in jobs.items():
        if args.only and model != args.only:
            continue
        if not data.is_dir():
            print(f"skipping {model}: {data} is missing")
            continue
        command = train_command(model, data, steps, crop, args.runs_dir, [*extra, "--precision", args.precision])
        print("$ " + " ".join(command), flush=True)
        start = time.perf_counter()
        run = CliRunner().invoke(cli, [*command[1:], "--no-progress"], catch_exceptions=False)
        print(run.output.strip().splitlines()[-1] if run.output.strip() else "(no output)")
        if run.exit_code != 0:
            raise SystemExit(f"training {model} failed")
        seconds = time.perf_counter() - start
        run_dir = args.runs_dir / f"quality_{model}"
        scores = evaluate_run(run_dir, data, split=split, direction=direction)
        scores.update(train_seconds=seconds, steps=steps, crop=crop, command=" ".join(command))
        results[model] = scores
        print(f"{model} on {data.name} ({scores['split']}, {scores['n']} images, {steps} steps at {crop}px, "
              f"{seconds / 60:.1f} min):")
        print(format_table(scores), flush=True)
    print("\nFull-length runs (200 epochs at 256x256, e.g. on a GPU):")
    print("  i2i train pix2pix --data DATA/facades --direction BtoA --epochs 100 --decay-epochs 100 --name facades")
    print("  i2i train cyclegan --data DATA/summer2winter_yosemite --epochs 100 --decay-epochs 100 --name s2w")
    print("  i2i eval checkpoints/facades --data DATA/facades --split val")
    print("  i2i eval checkpoints/s2w --data DATA/summer2winter_yosemite --split test --direction AtoB")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
