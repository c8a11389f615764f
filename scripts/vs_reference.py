"""Side by side with the reference implementation: whole processes, defaults, alternating, on this machine.

Runs, in turn for each round, the reference's command and i2i's for the same job, and prints seconds and the
ratios (the reference's median / i2i's, cold and cached: above 1, i2i is faster):

- pix2pix:   40 facades training steps (label -> photo, BtoA), batch 1, 256x256
- cyclegan:  4 summer2winter training steps, batch 1, 256x256
- translate: 200 facades photos through the same untrained unet_256 (the reference's own weights, imported into
             i2i), PNG out

i2i's first round starts with an empty speed cache (XDG_CACHE_HOME in the temporary folder), so it includes the
measuring a first run on a new machine does; later rounds use the cached verdict, as every later run does.
The reference needs a checkout (`fetch` zenml-io/pytorch-CycleGAN-and-pix2pix, or a git clone) and `dominate`
importable (e.g. `pip install --target DIR dominate` and `--reference-path DIR`).

    python scripts/vs_reference.py --reference /tmp/ref --reference-path /tmp/refdeps --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from i2i.data.io import list_images, read_image, write_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one whole process (a failure stops the benchmark with its output)."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return seconds


def photos(folder: Path, count: int) -> Path:
    """`count` 256x256 photos: the left halves of the facades val pairs, repeated as needed."""
    folder.mkdir(parents=True)
    sources = list_images(DATA / "facades" / "val")
    for i in range(count):
        write_image(folder / f"{i:04d}.png", read_image(sources[i % len(sources)])[:, :256])
    return folder


def reference_weights(reference: Path, out: Path, env: dict[str, str]) -> Path:
    """An untrained reference unet_256 (batch norm, dropout: its pix2pix G), saved as test.py loads it."""
    out.mkdir(parents=True)
    code = ("import torch; from models.networks import define_G; torch.manual_seed(0); "
            "net = define_G(3, 3, 64, 'unet_256', 'batch', True, 'normal', 0.02, []); "
            f"torch.save(net.state_dict(), {str(out / 'latest_net_G.pth')!r})")
    subprocess.run([sys.executable, "-c", code], cwd=reference, env=env, check=True)
    return out / "latest_net_G.pth"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of the reference pix2pix/CycleGAN")
    parser.add_argument("--reference-path", default="", help="added to PYTHONPATH for the reference (dominate)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--what", nargs="+", default=["pix2pix", "cyclegan", "translate"],
                        choices=["pix2pix", "cyclegan", "translate"])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if not (DATA / "facades").is_dir():
        sys.exit(f"needs the shared datasets at {DATA}")
    reference = args.reference.resolve()
    rows: dict[str, dict[str, list[float]]] = {what: {"reference": [], "i2i": []} for what in args.what}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ref_env = os.environ | {"PYTHONPATH": args.reference_path}
        i2i_env = os.environ | {"XDG_CACHE_HOME": str(tmp / "cache")}
        i2i = [sys.executable, "-m", "i2i"]
        ref_train = [sys.executable, "train.py", "--gpu_ids", "-1", "--display_id", "0", "--n_epochs", "1",
                     "--n_epochs_decay", "0", "--checkpoints_dir", str(tmp / "ref_ckpt")]
        if "translate" in args.what:
            inputs = photos(tmp / "photos", 200)
            weights = reference_weights(reference, tmp / "ref_ckpt" / "untrained", ref_env)
            subprocess.run([*i2i, "import", str(weights), str(tmp / "untrained.safetensors")], env=i2i_env,
                           check=True, capture_output=True)
        for round_ in range(args.rounds):
            for what in args.what:
                name = f"{what}{round_}"
                if what == "pix2pix":
                    ref = [*ref_train, "--dataroot", str(DATA / "facades"), "--name", name, "--model", "pix2pix",
                           "--direction", "BtoA", "--max_dataset_size", "40"]
                    ours = [*i2i, "train", "pix2pix", "--data", str(DATA / "facades"), "--direction", "BtoA",
                            "--max-steps", "40", "--name", name, "--runs-dir", str(tmp / "runs"), "--no-progress"]
                elif what == "cyclegan":
                    ref = [*ref_train, "--dataroot", str(DATA / "summer2winter_yosemite"), "--name", name,
                           "--model", "cycle_gan", "--max_dataset_size", "4"]
                    ours = [*i2i, "train", "cyclegan", "--data", str(DATA / "summer2winter_yosemite"),
                            "--max-steps", "4", "--name", name, "--runs-dir", str(tmp / "runs"), "--no-progress"]
                else:
                    ref = [sys.executable, "test.py", "--gpu_ids", "-1", "--dataroot", str(inputs), "--name",
                           "untrained", "--model", "test", "--model_suffix", "", "--dataset_mode", "single",
                           "--netG", "unet_256", "--norm", "batch", "--num_test", "200", "--checkpoints_dir",
                           str(tmp / "ref_ckpt"), "--results_dir", str(tmp / f"ref_out{round_}")]
                    ours = [*i2i, "translate", str(tmp / "untrained.safetensors"), str(inputs),
                            str(tmp / f"out{round_}"), "--format", "png", "--no-progress"]
                rows[what]["reference"].append(timed(ref, reference, ref_env))
                rows[what]["i2i"].append(timed(ours, tmp, i2i_env))
                print(f"round {round_ + 1} {what:>9}: reference {rows[what]['reference'][-1]:6.1f} s, "
                      f"i2i {rows[what]['i2i'][-1]:6.1f} s", flush=True)
    print("\n| whole process | reference (s) | i2i, cold cache (s) | i2i, cached (s) | ratio, cold | ratio, cached |")
    print("|---|---|---|---|---|---|")
    for what, times in rows.items():
        ref, ours = times["reference"], times["i2i"]
        cached = ", ".join(f"{s:.1f}" for s in ours[1:]) or "-"
        warm = f"{statistics.median(ref) / statistics.median(ours[1:]):.2f}x" if ours[1:] else "-"
        print(f"| {what} | {', '.join(f'{s:.1f}' for s in ref)} | {ours[0]:.1f} | {cached} | "
              f"{statistics.median(ref) / ours[0]:.2f}x | {warm} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
