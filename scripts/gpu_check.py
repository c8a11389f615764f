"""The one-call GPU check: steady-state benchmark, whole-process train and translate runs with each run's own
timing breakdown, and the `gpu` tests; prints one table and writes everything to OUT (default gpu_check/).

    bash scripts/gpu_check.sh [--data DATA] [--out OUT]        # on the GPU machine (installs carried wheels)
    python scripts/gpu_check.py --device cpu --quick           # the same plumbing on a CPU, a few steps each

DATA holds `facades/` (paired, train/ + val/) and `summer2winter_yosemite/` (trainA/, trainB/), e.g. the
project's ../shared/data copied next to the repository; where a set is missing, a synthetic one of the same
shape is made, so the script always runs (its image quality numbers then mean nothing, its timings do).
The whole-process commands are those of the GPU issue, so the numbers compare with the reference's
(Pix2Pix 200 facades steps 26.5 s, CycleGAN 60 steps on 60+60 photos 23.7 s, translating 200 photos 25.3 s,
measured on one H200).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SECONDS = {"pix2pix": 26.5, "cyclegan": 23.7, "translate": 25.3}
TARGET_SECONDS = {"pix2pix": 13.0, "cyclegan": 12.0, "translate": 5.0}


def run(cmd: list[str], log: Path, timeout: float) -> tuple[float, int]:
    """Run a command, its output to `log`; return (wall seconds, exit code)."""
    started = time.perf_counter()
    with open(log, "w") as f:
        try:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return time.perf_counter() - started, code


def synthetic_images(folder: Path, count: int, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 256, size=(8, 8 * size[1] // size[0], 3), dtype=np.uint8)
        Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR).save(folder / f"{i:04d}.jpg", quality=95)


def prepare(data: Path | None, work: Path, quick: bool) -> dict[str, Path]:
    """The three inputs: paired facades, 60+60 unpaired photos, 200 photos of 256x256."""
    facades = data / "facades" if data else None
    if not (facades and (facades / "train").is_dir()):
        facades = work / "facades"
        synthetic_images(facades / "train", 40 if quick else 400, (256, 512), seed=0)
    yosemite = data / "summer2winter_yosemite" if data else None
    unpaired = work / "unpaired60"
    for domain in ("A", "B"):
        target = unpaired / f"train{domain}"
        source = yosemite / f"train{domain}" if yosemite else None
        if source and source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            for f in sorted(source.iterdir())[:60]:
                shutil.copy(f, target / f.name)
        else:
            synthetic_images(target, 60, (256, 256), seed=ord(domain))
    photos = work / "photos200"
    photos.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(sorted((facades / "train").iterdir())[:200]):
        with Image.open(f) as img:
            img.crop((0, 0, img.width // 2, img.height)).convert("RGB").save(photos / f"{i:04d}.jpg", quality=95)
    return {"facades": facades, "unpaired": unpaired, "photos": photos}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="folder holding facades/ and summer2winter_yosemite/")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="a few steps each: checks the plumbing only")
    parser.add_argument("--skip", nargs="*", default=[], choices=["bench", "train", "translate", "tests", "ddp"])
    args = parser.parse_args()
    out = args.out.resolve()
    shutil.rmtree(out / "runs", ignore_errors=True)
    (out / "work").mkdir(parents=True, exist_ok=True)
    py, dev = sys.executable, ["--device", args.device]
    steps = {"pix2pix": 4 if args.quick else 200, "cyclegan": 2 if args.quick else 60}
    inputs = prepare(args.data, out / "work", args.quick)
    results: dict = {"device": args.device, "quick": args.quick}
    print(f"python {sys.version.split()[0]}, data {args.data or 'synthetic'}, out {out}", flush=True)

    if "bench" not in args.skip:
        bench = [py, "scripts/bench.py", *dev, "--steps", "3" if args.quick else "20", "--warmup", "1" if args.quick
                 else "3"]
        jobs = {
            "eager": [*bench, "--channels-last", "--train-batches", "1", "32", "--translate-batches", "1", "8", "32"],
            "graphs": [*bench, "--channels-last", "--compile", "--compile-mode", "reduce-overhead",
                       "--precisions", "fp32", "bf16", "--what", "pix2pix"],
        }
        if args.quick:  # the CPU: a small batch, and no compiling (minutes there)
            jobs = {"eager": [*bench, "--what", "pix2pix", "translate", "--train-batches", "2",
                              "--translate-batches", "2", "--precisions", "bf16"]}
        for name, cmd in jobs.items():
            seconds, code = run([*cmd, "--out", str(out / f"bench_{name}.json")], out / f"bench_{name}.log", 420)
            results[f"bench_{name}"] = {"seconds": seconds, "exit": code}
            print((out / f"bench_{name}.log").read_text(), flush=True)

    if "bench" not in args.skip:  # the data pipeline alone: does it keep up with the steps above?
        workers, batches = (["0", "1"], ["1"]) if args.quick else (["0", "4", "8", "15"], ["1", "16"])
        cmd = [py, "scripts/bench_loader.py", "--data", str(inputs["facades"]), "--workers", *workers,
               "--batch-size", *batches, "--out", str(out / "bench_loader.json")]
        seconds, code = run(cmd, out / "bench_loader.log", 300)
        results["bench_loader"] = {"seconds": seconds, "exit": code}
        print((out / "bench_loader.log").read_text(), flush=True)

    whole = {}
    if "train" not in args.skip:
        whole["pix2pix"] = [py, "-m", "i2i", "train", "pix2pix", "--data", str(inputs["facades"]), "--direction",
                            "BtoA", "--max-steps", str(steps["pix2pix"]), "--runs-dir", str(out / "runs"),
                            "--name", "pix2pix", "--no-progress", *dev]
        whole["cyclegan"] = [py, "-m", "i2i", "train", "cyclegan", "--data", str(inputs["unpaired"]), "--max-steps",
                             str(steps["cyclegan"]), "--runs-dir", str(out / "runs"), "--name", "cyclegan",
                             "--no-progress", *dev]
    if "translate" not in args.skip:
        whole["translate"] = [py, "-m", "i2i", "translate", str(out / "runs" / "pix2pix"), str(inputs["photos"]),
                              str(out / "translated"), "--overwrite", "--no-progress", *dev]
    for name, cmd in whole.items():
        seconds, code = run(cmd, out / f"{name}.log", 300)
        timings_file = out / "runs" / name / "timings.json"
        timings = json.loads(timings_file.read_text()) if name != "translate" and timings_file.is_file() else {}
        results[name] = {"seconds": seconds, "exit": code, "timings": timings,
                         "log_tail": (out / f"{name}.log").read_text()[-600:]}

    if "ddp" not in args.skip:  # torchrun: NCCL on CUDA (1 process, 2 with 2 GPUs), compared with 1 process
        seconds, code = run([py, "scripts/ddp_check.py", *dev], out / "ddp.log", 300)
        results["ddp"] = {"seconds": seconds, "exit": code,
                          "summary": (out / "ddp.log").read_text().strip().splitlines()[-3:]}

    if "tests" not in args.skip:
        cmd = [py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/test_gpu.py"]
        seconds, code = run(cmd, out / "tests.log", 300)
        results["gpu_tests"] = {"seconds": seconds, "exit": code,
                                "summary": (out / "tests.log").read_text().strip().splitlines()[-1:]}

    (out / "results.json").write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict) -> None:
    print("\n== whole processes (wall seconds; where each run's time went, from RUN/timings.json) ==")
    print(f"{'run':<10} {'exit':>4} {'i2i s':>7} {'ref s':>6} {'ratio':>6} {'target':>7}  breakdown")
    for name in ("pix2pix", "cyclegan", "translate"):
        if name not in results:
            continue
        r = results[name]
        ratio = REFERENCE_SECONDS[name] / r["seconds"]
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items() if v >= 0.05)
        print(f"{name:<10} {r['exit']:>4} {r['seconds']:7.1f} {REFERENCE_SECONDS[name]:6.1f} {ratio:5.2f}x "
              f"{TARGET_SECONDS[name]:6.1f}s  {parts}")
    for key in ("bench_eager", "bench_graphs", "bench_loader", "ddp", "gpu_tests"):
        if key in results:
            r = results[key]
            print(f"{key:<12} exit {r['exit']} in {r['seconds']:.0f} s {' '.join(r.get('summary', []))}")


if __name__ == "__main__":
    main()
