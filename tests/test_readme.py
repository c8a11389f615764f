"""The README's command blocks name only commands and options the program has (so the README cannot drift)."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from helpers import write_pairs, write_unpaired
from i2i.cli.commands import main

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_commands() -> list[str]:
    """Every command line of the README's ```bash blocks: continuations joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                commands.append(line)
    return commands


def i2i_invocations() -> list[list[str]]:
    """The arguments after `i2i` (or `-m i2i`) of each README command that runs the program."""
    found = []
    for command in bash_commands():
        words = shlex.split(command)
        for i, word in enumerate(words):
            if word.endswith("bin/i2i") or (word == "i2i" and i > 0 and words[i - 1] == "-m"):
                found.append(words[i + 1:])
                break
    return found


def resolve(args: list[str]) -> tuple[click.Command, list[str]]:
    """The click command the arguments name (through groups) and the arguments left for it."""
    command: click.Command = main
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        sub = command.get_command(click.Context(command), args[0])
        assert sub is not None, f"the README runs `i2i ... {args[0]}`, which is no i2i command"
        command, args = sub, args[1:]
    return command, args


def test_the_readme_has_commands_to_check() -> None:
    invocations = i2i_invocations()
    assert len(invocations) >= 25
    assert {args[0] for args in invocations} >= {"train", "translate", "import", "export", "eval", "report"}


@pytest.mark.parametrize("args", i2i_invocations(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_names_real_options(args: list[str]) -> None:
    command, rest = resolve(args)
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [word.split("=")[0] for word in rest if word.startswith("--") and word.split("=")[0] not in known]
    assert not unknown, f"`i2i {' '.join(args)}` uses options {command.name} does not have: {unknown}"
    choices = {opt: param.type.choices for param in command.params if isinstance(param.type, click.Choice)
               for opt in param.opts}
    for word, value in itertools.pairwise(rest):
        if word in choices:
            assert value in choices[word], f"`{word} {value}` in the README: {command.name} allows {choices[word]}"


def substituted(args: list[str], data: Path, runs: Path) -> list[str]:
    """The command with tiny local data and a temporary runs folder in place of the README's paths."""
    out, skip = [], False
    for i, word in enumerate(args):
        if skip:
            skip = False
            continue
        if word in ("--data", "--runs-dir") and i + 1 < len(args):
            out += [word, str(data if word == "--data" else runs)]
            skip = True
        else:
            out.append(word)
    return out + ([] if "--runs-dir" in args else ["--runs-dir", str(runs)])


TRAININGS = [a for a in i2i_invocations() if a[:1] == ["train"] and "--init-from" not in a and "--resume" not in a]


@pytest.mark.parametrize("args", TRAININGS, ids=lambda a: " ".join(a)[:60])
def test_every_readme_training_passes_its_dry_run(args: list[str], tmp_path: Path) -> None:
    """The README's training commands, run for real up to --dry-run (every check a run makes) on tiny data."""
    data = write_pairs(tmp_path / "pairs") if args[1] == "pix2pix" else write_unpaired(tmp_path / "unpaired")
    given = args[args.index("--data") + 1] if "--data" in args else ""
    if given in ("sentinel_pairs", "rgbd_pairs"):  # 4-band or stacked inputs: the README's own kind of data
        more_than_rgb(tmp_path / "world")
        data = tmp_path / "world" / given
    result = CliRunner().invoke(main, [*substituted(args, data, tmp_path / "runs"), "--dry-run"])
    assert result.exit_code == 0, f"i2i {' '.join(args)}: {result.output}"
    assert not (tmp_path / "runs").exists()


# -- every command block, run in order ------------------------------------------------------------------------
#
# test_the_readme_runs_in_order runs the README's ```bash lines top to bottom in one temporary folder, each as
# written, with these mechanical substitutions (and nothing else):
#   * `.venv/bin/i2i ARGS` / `i2i ARGS` run the CLI in-process; `.venv/bin/python scripts/X.py ARGS` runs the
#     script with this interpreter; `make demo` runs its Makefile recipe (`i2i demo --overwrite`) with `--steps 2`.
#   * the folders the README takes as given exist as tiny generated sets: `datasets/NAME` (what
#     scripts/download_dataset.sh would make), the user's own folders and files (DATASETS, USER_FILES), and the
#     reference implementation's published .pth files (PTH, random weights in the reference's layout).
#   * training gets TINY_TRAIN (a 2-step budget, 4 with --resume, so it continues the first run; 64 px crops;
#     fp32; no workers), replacing the README's own values of those options, and, unless it starts --init-from
#     weights whose architecture it takes, TINY_NETS (4 base channels; a U-Net generator becomes unet_64,
#     which fits the 64 px crops).
#   * `i2i eval` gets --no-fid (the Inception network is tested in tests/test_evaluate.py).
# A README line must be run or match NOT_RUN, which says why it cannot run here.

NOT_RUN = [
    (r"^make test\b", "runs this test suite"),
    (r"\bpip install\b", "installs from the network (the test environment has every extra)"),
    (r"^scripts/download_dataset\.sh", "downloads the datasets; datasets/NAME are tiny generated sets here"),
    (r"\btorchrun\b", "several processes, GPUs or machines: tests/test_distributed.py launches torchrun (gloo)"),
    (r"\bi2i serve\b", "a web server that runs until Ctrl-C: tests/test_serve.py drives the page"),
    (r"\bi2i bench\b", "a benchmark of the paper's networks at 256²: tests/test_autotune.py runs it at 256², one row"),
    (r"^(python|\.venv/bin/python) scripts/bench", "a benchmark: minutes of training on real data"),
    (r"\$COMMON|^COMMON=|\.\./shared/data|\bs2w_128\b", "the benchmark's runs on the real photographs, minutes "
                                                         "each"),
    (r"^(trap|wait|if |\[ )|&\s*pid=", "the SLURM batch script (sbatch, scontrol); tests/test_signals.py checks "
                                       "the SIGUSR1 stop and its status 138"),
]
TINY_TRAIN = {"--max-steps": "2", "--load-size": "72", "--crop-size": "64", "--workers": "0", "--precision": "fp32",
              "--save-every": "2", "--sample-every": "2"}
TINY_NETS = {"--ngf": "4", "--ndf": "4"}
PAIRED = ("datasets/facades", "datasets/maps", "path/to/pairs", "my_maps")
UNPAIRED = ("datasets/summer2winter_yosemite", "datasets/horse2zebra", "my_unpaired", "my_horses_zebras")
USER_FILES = ("summer/", "photo.jpg", "huge/", "in/", "dashcam/", "drive.mp4", "hike.mov")


def not_run(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN if re.search(pattern, command)), None)


def with_options(args: list[str], options: dict[str, str]) -> list[str]:
    """`args` with each option's value replaced by (or, when absent, followed by) the value in `options`."""
    out = list(args)
    for option, value in options.items():
        if option in out:
            out[out.index(option) + 1] = value
        else:
            out += [option, value]
    return out


def tiny_training(args: list[str]) -> list[str]:
    """A README training command with the substitutions above."""
    args = [*with_options(args, {**TINY_TRAIN, "--max-steps": "4" if "--resume" in args else "2"}), "--no-progress"]
    if "--init-from" in args:
        return args
    generator = args[args.index("--generator") + 1] if "--generator" in args else None
    if (generator or "").startswith("unet") or (generator is None and args[1] == "pix2pix"):
        args = with_options(args, {"--generator": "unet_64"})
    return with_options(args, TINY_NETS)


def make_world(root: Path) -> None:
    """The README's given folders and files, tiny, under `root` (see the comment above)."""
    from PIL import Image
    from test_reference_import import RefNLayerD, RefResnet, RefUnet, randomise, save
    from test_video import make_video

    for i, name in enumerate(PAIRED):
        write_pairs(root / name, n=4, size=64, seed=i)
        (write_pairs(root / "tmp" / name, n=2, size=64, seed=10 + i) / "train").rename(root / name / "val")
    for i, name in enumerate(UNPAIRED):
        write_unpaired(root / name, n_a=3, n_b=2, size=64, seed=i)
        test = write_unpaired(root / "tmp" / name, n_a=2, n_b=2, size=64, seed=10 + i)
        for domain in "AB":
            (test / f"train{domain}").rename(root / name / f"test{domain}")
    photos = sorted((root / "datasets/summer2winter_yosemite/trainA").iterdir())
    for folder in ("summer", "huge", "in", "dashcam"):
        (root / folder).mkdir()
        for photo in photos[:2]:
            Image.open(photo).save(root / folder / f"{photo.stem}.jpg")
    Image.open(photos[0]).save(root / "photo.jpg")
    for clip in ("drive.mp4", "hike.mov", "dashcam/clip.mp4"):
        make_video(root / clip, n=3, size=(64, 64), audio=clip != "hike.mov")
    more_than_rgb(root)
    save(randomise(RefUnet(3, 3, 6, 4, "batch")), root / "checkpoints/facades_label2photo_pretrained/latest_net_G.pth")
    save(randomise(RefResnet(3, 3, 4, 6, "instance")), root / "checkpoints/horse2zebra_pretrained/latest_net_G.pth")
    for side, seed in (("A", 1), ("B", 2)):
        save(randomise(RefResnet(3, 3, 4, 6, "instance"), seed), root / f"run/latest_net_G_{side}.pth")
        save(randomise(RefNLayerD(3, 4, 3, "instance"), seed), root / f"run/latest_net_D_{side}.pth")


def more_than_rgb(root: Path) -> None:
    """The README's "More than RGB" inputs: 4-band reflectance TIFF pairs, RGB + depth folders, colour label maps."""
    import numpy as np
    import tifffile
    from PIL import Image
    from test_channels import _rgb_depth

    rng = np.random.default_rng(0)
    for i in range(3):
        band = (rng.random((64, 64, 4)) * 10000).astype(np.uint16)
        for side in "AB":
            (root / "sentinel_pairs/train" / side).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / "sentinel_pairs/train" / side / f"{i}.tif", band, photometric="minisblack",
                             planarconfig="contig")
    _rgb_depth(root / "rgbd_pairs/train")
    _rgb_depth(root / "new_scenes")
    (root / "label_maps").mkdir()
    for i in range(2):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(root / "label_maps" / f"{i}.png")


def run_line(command: str, root: Path) -> str:
    """Run one README command line in `root`, substituted as above; return what it printed."""
    import subprocess
    import sys

    from helpers import cli

    words = shlex.split(command)
    if words[:2] == ["make", "demo"]:
        recipe = (README.parent / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
        assert "$(BIN)/i2i demo --overwrite" in recipe, recipe
        words = ["i2i", "demo", "--overwrite", "--steps", "2"]
    if words[0].endswith("python") and words[1].startswith("scripts/"):
        done = subprocess.run([sys.executable, str(README.parent / words[1]), *words[2:]], cwd=root, text=True,
                              capture_output=True, timeout=120)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        return done.stdout + done.stderr
    assert words[0].endswith("bin/i2i") or words[0] == "i2i", f"README line neither run nor in NOT_RUN: {command}"
    args = words[1:]
    if args[0] == "train":
        args = tiny_training(args)
    elif args[0] == "eval":
        args += ["--no-fid"]
    result = cli(*args)
    assert result.exit_code == 0, f"`{command}` ran as `i2i {' '.join(args)}`: status {result.exit_code}\n" \
                                  f"{result.output}"
    return result.output


def test_the_readme_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every README command line, top to bottom, in one folder: the runs, files and folders a line uses are made
    by the lines above it (or are the given inputs), and each exits 0."""
    pytest.importorskip("av", reason="the README translates videos (pip install 'i2i[video]')")
    pytest.importorskip("onnx", reason="the README exports ONNX (pip install 'i2i[export]')")
    make_world(tmp_path)
    monkeypatch.chdir(tmp_path)
    outputs, skipped = {}, []
    for command in bash_commands():
        why = not_run(command)
        if why:
            skipped.append(why)
            continue
        outputs[command] = run_line(command, tmp_path)
    assert len(outputs) >= 35 and len(skipped) <= 25, (len(outputs), skipped)
    # what the lines made, as later lines and the README's prose use them
    for run in ("my_run", "facades_pix2pix", "maps", "yosemite", "summer2winter_yosemite_cut", "demo/run",
                "facades_ft", "maps_ft"):
        assert (tmp_path / "checkpoints" / run / "latest").is_file(), run
    assert "resumed at step 2" in next(o for c, o in outputs.items() if "--resume" in c)
    assert sorted(p.name for p in (tmp_path / "photos").glob("*.png")) == ["000.png", "001.png"]
    assert (tmp_path / "winter.png").is_file() and (tmp_path / "night.mp4").is_file()
    assert (tmp_path / "winter.webm").is_file() and (tmp_path / "night" / "clip.mp4").is_file()
    assert (tmp_path / "facades.onnx").is_file() and (tmp_path / "winter.pt").is_file()
    assert (tmp_path / "results_page" / "index.html").is_file()
    assert (tmp_path / "checkpoints" / "facades_pix2pix" / "eval_val.json").is_file()
    assert sorted(p.name for p in (tmp_path / "rgbd_out").glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
    assert len(list((tmp_path / "label_photos").glob("*.png"))) == 2
