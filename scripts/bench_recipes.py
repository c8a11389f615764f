"""The quality ablation: Pix2Pix on facades (labels -> photo) at an equal step budget, one option at a time and in
combination, each scored by `i2i eval` on all 100 val images (FID, KID, PSNR, SSIM, checkerboard figure).

    python scripts/bench_recipes.py --data ../shared/data/facades --out ablation          # every variant, seed 0
    python scripts/bench_recipes.py --data ... --variants paper hq --seeds 0 1             # some, two seeds
    python scripts/bench_recipes.py --data ... --table                                     # the table so far
    python scripts/bench_recipes.py --data ... --variants paper hq --time-steps 200       # s/step, back to back

Each run is `i2i train pix2pix --data DATA --direction BtoA --epochs 3 --decay-epochs 2` (2,000 steps on 400
images at batch 1: 1,200 at the initial rate, 800 decaying) plus the variant's options, then `i2i eval RUN
--data DATA --split val`. Finished runs are skipped, so a killed ablation continues where it stopped.
Seconds per step are the training loop's own (RUN/timings.json: first step and steps over the step count);
on a shared machine compare them only between runs made back to back. `--time-steps N` does exactly that: short
runs of each variant, interleaved `--repeats` times, printed as medians and as ratios to the first variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "paper": [],
    "resize": ["--upsample", "resize"],
    "pixelshuffle": ["--upsample", "pixelshuffle"],
    "multiscale": ["--discriminator", "multiscale", "--num-d", "2"],
    "fm": ["--lambda-fm", "10"],
    "spectral": ["--d-norm", "spectral"],
    "ema": ["--ema-decay", "0.999"],
    "input_augment": ["--input-augment"],
    "resize_ms": ["--upsample", "resize", "--discriminator", "multiscale", "--num-d", "2"],
    "resize_ms_fm": ["--upsample", "resize", "--discriminator", "multiscale", "--num-d", "2", "--lambda-fm", "10"],
    "resize_ms_ema": ["--upsample", "resize", "--discriminator", "multiscale", "--num-d", "2", "--ema-decay", "0.999"],
    "hq": ["--recipe", "hq"],
}
BUDGET = ["--epochs", "3", "--decay-epochs", "2"]


def train_command(name: str, data: Path, run: Path, options: list[str]) -> list[str]:
    """`i2i train pix2pix` (labels -> photo) into the run directory `run`, with the variant's and these options."""
    return [sys.executable, "-m", "i2i", "train", "pix2pix", "--data", str(data), "--direction", "BtoA",
            "--runs-dir", str(run.parent), "--name", run.name, "--no-progress", *VARIANTS[name], *options]


def run_variant(name: str, seed: int, data: Path, out: Path, extra: list[str]) -> dict | None:
    run = out / "runs" / f"{name}_s{seed}"
    scores = run / "eval_val.json"
    if not scores.is_file():
        if not (run / "timings.json").is_file():
            resume = ["--resume"] if (run / "config.json").is_file() else []
            cmd = train_command(name, data, run, [*BUDGET, "--seed", str(seed), "--sample-every", "500",
                                                  "--save-every", "250", *extra, *resume])
            print(" ".join(cmd[1:]), flush=True)
            if subprocess.run(cmd).returncode != 0:
                return None
        cmd = [sys.executable, "-m", "i2i", "eval", str(run), "--data", str(data), "--split", "val"]
        print(" ".join(cmd[1:]), flush=True)
        if subprocess.run(cmd).returncode != 0:
            return None
    return row(name, seed, run)


def time_variants(names: list[str], data: Path, out: Path, steps: int, repeats: int, extra: list[str]) -> None:
    """Seconds per training step (data + step, the first step excluded) of each variant, interleaved repeats."""
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names:
            run = out / "timing" / f"{name}_r{repeat}"
            cmd = train_command(name, data, run, ["--max-steps", str(steps), "--seed", "0", "--sample-every",
                                                  str(steps), "--save-every", str(steps), *extra])
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            timings = json.loads((run / "timings.json").read_text())
            seconds[name].append((timings.get("data", 0) + timings["steps"]) / (steps - 1))
    base = statistics.median(seconds[names[0]])
    print(f"\n| variant | s/step (median of {repeats}) | ratio to {names[0]} |\n|---|---|---|")
    for name in names:
        median = statistics.median(seconds[name])
        print(f"| {name} | {median:.3f} | {median / base:.2f}× |")


def row(name: str, seed: int, run: Path) -> dict:
    scores = json.loads((run / "eval_val.json").read_text())
    timings = json.loads((run / "timings.json").read_text())
    steps = json.loads((run / "config.json").read_text())["train"]
    step_seconds = (timings.get("first_step", 0) + timings.get("steps", 0)) / 2000
    m = scores["model"]
    return {"variant": name, "seed": seed, "fid": m.get("fid"), "kid_x1000": 1000 * m["kid"] if "kid" in m else None,
            "psnr": m.get("psnr"), "ssim": m.get("ssim"), "checkerboard": m.get("checkerboard"),
            "s_per_step": step_seconds, "recipe": steps.get("recipe")}


def print_table(rows: list[dict]) -> None:
    print("\n| variant | seed | FID | KID×1000 | PSNR | SSIM | checkerboard | s/step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in
                 ("fid", "kid_x1000", "psnr", "ssim", "checkerboard", "s_per_step")]
        print(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/facades"),
                        help="the facades folder (train/, val/)")
    parser.add_argument("--out", type=Path, default=Path("ablation"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--table", action="store_true", help="only print the table of finished runs")
    parser.add_argument("--time-steps", type=int, default=0,
                        help="only time N training steps of each variant, back to back (no eval)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats for --time-steps")
    parser.add_argument("extra", nargs="*", help="more train options for every run (after --)")
    args = parser.parse_args()
    if args.time_steps:
        time_variants(args.variants, args.data, args.out, args.time_steps, args.repeats, args.extra)
        return
    rows = []
    for seed in args.seeds:
        for name in args.variants:
            run = args.out / "runs" / f"{name}_s{seed}"
            if args.table:
                if (run / "eval_val.json").is_file():
                    rows.append(row(name, seed, run))
                continue
            result = run_variant(name, seed, args.data, args.out, args.extra)
            if result:
                rows.append(result)
                (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print_table(rows)


if __name__ == "__main__":
    main()
