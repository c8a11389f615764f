"""The `i2i` commands other than train (translate, export, eval, report, demo, import, serve); importing this
module registers every command on `main`.

Exit statuses (the README's "Exit codes"): 0 everything done (inputs translated or already done), 1 an
error that stopped the command, 2 a usage error (click), 3 some inputs could not be translated or scored
(the rest were; with --strict the command stopped at the first), 130 interrupted by Ctrl-C, 143 by SIGTERM and
138 by SIGUSR1 (training checkpoints the step it stopped at first)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from i2i.cli.common import (
    EXIT_INPUTS_FAILED,
    EXIT_INTERRUPTED,
    POSITIVE,
    D,
    bitrate,
    main,
    owns_process,
    stop,
)
from i2i.cli.options import apply, config_options
from i2i.cli.train import train_field_option
from i2i.config import (
    DEVICES,
    DIRECTIONS,
    EXPORT_FORMATS,
    FORMATS,
    PRECISIONS,
    SIZE_MODES,
    ServeConfig,
    from_options,
)
from i2i.data.io import printable
from i2i.models import MODELS
from i2i.translation.sides import SIDES
from i2i.translation.video import CODECS

# -- the other commands ---------------------------------------------------------------------------

@main.command(epilog="""\b
Examples:
  i2i translate checkpoints/facades_pix2pix labels/ photos/
  i2i translate checkpoints/yosemite photo.jpg winter.png --direction AtoB
  i2i translate checkpoints/maps big_tiles/ out/ --tile 512 --precision bf16 --format png
  i2i translate checkpoints/facades_pix2pix datasets/facades/val/ photos/ --side B   # the label half of A|B files
  i2i translate RUN IN OUT      # again after a kill: finished files are skipped
  torchrun --standalone --nproc_per_node 4 -m i2i translate RUN IN OUT   # 4 GPUs share the files
  i2i translate checkpoints/day2night drive.mp4 night.mp4 --crf 20        # a video (pip install 'i2i[video]')
""")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--direction", type=click.Choice(DIRECTIONS), default=None,
              help="Which generator of a CycleGAN run [default: the run's only one].")
@click.option("--batch-size", type=POSITIVE, default=None,
              help="Same-size images per batch [default: the fastest, timed on this machine].")
@click.option("--side", type=click.Choice(SIDES), default=None,
              help="Side-by-side A|B inputs (the pix2pix training layout): translate only the left (A) or right "
                   "(B) half of each [default: the whole image; a warning when inputs look like A|B pairs].")
@click.option("--tile", type=click.IntRange(min=16), default=None,
              help="Translate in tiles of this size [default: only images above ~2.4 MP, in 512 px tiles].")
@click.option("--tile-overlap", type=click.IntRange(min=0), default=64, show_default=True)
@click.option("--size-mode", type=click.Choice(SIZE_MODES), default="pad", show_default=True,
              help="pad: reflect-pad to the network's multiple and crop back; resize: to the training size and back.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="same", show_default=True,
              help="Output file type (same: keep each input's extension).")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True,
              help="Replace outputs that already exist (default: skip them, so a killed run resumes).")
@click.option("--strict/--no-strict", default=False, show_default=True,
              help="Stop at the first image that cannot be translated (default: report it and go on; either way "
                   "the exit status is 3 when one failed).")
@click.option("--allow-output-inside-input", is_flag=True, help="Permit OUTPUT inside the INPUT folder.")
@click.option("--keep-dropout/--no-keep-dropout", default=False, show_default=True,
              help="Keep dropout on (the paper's stochastic outputs).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto: the fastest, timed on this machine, among those within 3 grey levels of fp32's output "
                   "(bf16 where it is native and wins). fp32 gives exact outputs.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--ema/--no-ema", default=True, show_default=True,
              help="Use the generator's EMA weights when the checkpoint has them (--ema-decay runs).")
@train_field_option("dist_timeout")
@click.option("--video-codec", type=click.Choice(CODECS), default=None,
              help="Videos: libx264 (H.264, yuv420p) or libvpx-vp9 [default: VP9 for .webm, else H.264].")
@click.option("--crf", type=click.IntRange(0, 63), default=None,
              help="Videos: constant quality, lower is better [default: matched to each input's bits per pixel].")
@click.option("--bitrate", default=None, callback=lambda ctx, param, value: bitrate(value),
              help="Videos: a bit rate instead of --crf, e.g. 4M or 800k.")
def translate(checkpoint: Path, input_path: Path, output: Path, **opts) -> None:
    """Translate an image file or a whole folder tree with a trained run.

    OUTPUT is a folder that mirrors INPUT's relative paths and names, or, when INPUT is one file and
    OUTPUT has an extension, the output file itself. Under torchrun the processes share the files. Exit status:
    0 when every image was translated or already done, 3 when some could not be (each is named), 1 on other
    errors, 130 on Ctrl-C, 143 on SIGTERM, 138 on SIGUSR1 (the outputs written so far are whole).
    """
    from i2i.data.io import ImageReadError
    from i2i.runtime.signals import exit_status, interrupt_on_signals, received, signal_name
    from i2i.training.distributed import launch_rank, session
    from i2i.translation.sides import looks_side_by_side
    from i2i.translation.translator import Translator
    from i2i.translation.tree import DirSummary, merge_summaries
    from i2i.translation.video import VideoOptions

    if owns_process():
        from i2i.runtime.process import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        again = "Run the same command again: finished outputs are skipped."
        with interrupt_on_signals(), session(opts["device"], opts["dist_timeout"], again=again) as group:
            translator = Translator.from_pretrained(
                checkpoint, direction=opts["direction"], device=opts["device"], precision=opts["precision"],
                keep_dropout=opts["keep_dropout"], size_mode=opts["size_mode"], tile=opts["tile"],
                tile_overlap=opts["tile_overlap"], batch_size=opts["batch_size"], ema=opts["ema"],
                side=opts["side"])
            if translator.speed.summary and group.main:
                click.echo(f"speed (auto, timed on this machine): {translator.speed.summary}", err=True)
            hint = None if opts["side"] else looks_side_by_side(input_path, translator.cfg.data.preprocess)
            if hint and group.main:
                click.echo(hint, err=True)
            video = VideoOptions(opts["video_codec"], opts["crf"], opts["bitrate"])
            if input_path.is_file() and output.suffix:  # a single file to a file name (rank 0's job)
                summary = translator.translate_file(input_path, output, overwrite=opts["overwrite"],
                                                    strict=opts["strict"], video=video) if group.main else DirSummary()
            else:
                summary = translator.translate_dir(
                    input_path, output, fmt=opts["fmt"], overwrite=opts["overwrite"], strict=opts["strict"],
                    batch_size=opts["batch_size"], allow_inside_input=opts["allow_output_inside_input"],
                    progress=opts["progress"] and group.main, shard=group.shard, video=video)
            summary = merge_summaries(group.gather(summary))  # every process's counts, for rank 0's summary
    except ImageReadError as err:  # --strict: the first input that could not be translated
        stop(f"Error: {err} (stopped there: --strict)", EXIT_INPUTS_FAILED)
    except (ValueError, OSError, RuntimeError) as err:
        raise click.ClickException(printable(err)) from err
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM or SIGUSR1: the current file finished or dropped
        done = getattr(err, "summary", None)
        if done is not None and launch_rank() == 0:
            click.echo(done.line())
        stop(f"interrupted by {signal_name(received(err))}: every output written so far is complete; run the same "
             "command again to continue", exit_status(received(err)))
    if not group.main:
        return
    click.echo(summary.line() + (f" on {group.world} processes" if group.world > 1 else ""))
    for line in summary.details():
        click.echo(printable(line))
    if summary.failed:
        stop(f"Error: {len(summary.failed)} input(s) could not be translated (named above)", EXIT_INPUTS_FAILED)
    if summary.translated == 0 and summary.skipped == 0:
        raise click.ClickException(f"nothing to translate: no images in {printable(input_path)}")


@main.command("export", epilog="""\b
Examples:
  i2i export checkpoints/facades_pix2pix facades.onnx
  i2i export checkpoints/yosemite winter.pt --format torchscript --direction AtoB
""")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="onnx", show_default=True)
@click.option("--direction", type=click.Choice(DIRECTIONS), default=None,
              help="Which generator of a CycleGAN run [default: the run's only one].")
@click.option("--ema/--no-ema", default=True, show_default=True,
              help="Use the generator's EMA weights when the checkpoint has them (--ema-decay runs).")
def export_command(checkpoint: Path, out: Path, fmt: str, direction: str | None, ema: bool) -> None:
    """Export a generator with dynamic batch/height/width (input NCHW in [-1, 1], any size)."""
    from i2i.translation.export import export

    try:
        path = export(checkpoint, out, fmt=fmt, direction=direction, ema=ema)
    except (ValueError, RuntimeError, OSError) as err:
        raise click.ClickException(printable(err)) from err
    click.echo(f"wrote {path}")


@main.command("eval", epilog="""\b
Examples:
  i2i eval checkpoints/facades_pix2pix --data datasets/facades --split val
  i2i eval checkpoints/yosemite --data datasets/summer2winter_yosemite --split test --direction AtoB
  i2i eval --outputs results/ --targets datasets/facades/val_photos/
  i2i eval checkpoints/facades_pix2pix --data datasets/facades --html results/facades   # input | output | target
""")
@click.argument("checkpoint", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset root whose held-out split is translated and scored.")
@click.option("--split", default="val", show_default=True, help="val or test (each falls back to the other).")
@click.option("--direction", type=click.Choice(DIRECTIONS), default=None, help="CycleGAN: which generator.")
@click.option("--outputs", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Score this folder of results instead of a checkpoint (with --targets).")
@click.option("--targets", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--paired/--unpaired", default=True, show_default=True,
              help="With --outputs: also PSNR/SSIM of same-named files.")
@click.option("--fid/--no-fid", default=True, show_default=True, help="FID/KID (needs i2i[metrics]).")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also score the inputs themselves (the identity translation).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the translated split here [default: a temp folder].")
@click.option("--html", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a results page here: HTML/index.html with input | output | target of every image and its "
                   "scores, the images copied beside it in HTML/images (viewable offline).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the scores here [default: RUN/eval_SPLIT.json for a run directory; unpaired runs: "
                   "RUN/eval_SPLIT_DIRECTION.json, one per direction].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--ema/--no-ema", default=True, show_default=True,
              help="Use the generator's EMA weights when the checkpoint has them (--ema-decay runs).")
def eval_command(checkpoint: Path | None, data_root: Path | None, **opts) -> None:
    """Score a trained run on a held-out split, or two folders against each other (PSNR, SSIM, FID, KID).

    Exit status: 0 when every image was scored, 3 when some could not be read or translated (each is named;
    the scores leave them out), 1 on other errors, 130 on Ctrl-C.
    """
    import json

    from i2i.data.io import ImageReadError
    from i2i.evaluation.evaluate import evaluate_run, format_table, results_page, score_folders, scores_file
    from i2i.evaluation.paired import json_safe

    if owns_process():
        from i2i.runtime.process import tune_cpu_allocator

        tune_cpu_allocator()

    try:
        if opts["outputs"] is not None:
            if checkpoint is not None or opts["targets"] is None:
                raise click.UsageError("--outputs needs --targets and no CHECKPOINT")
            per_image: dict = {}
            result = json_safe({"scores": score_folders(opts["outputs"], opts["targets"], paired=opts["paired"],
                                                        fid=opts["fid"], per_image=per_image)})
            if opts["html"] is not None:
                results_page(opts["html"], {"output": opts["outputs"], "target": opts["targets"]}, result, per_image)
        else:
            if checkpoint is None or data_root is None:
                raise click.UsageError("give CHECKPOINT and --data (or --outputs and --targets)")
            result = evaluate_run(checkpoint, data_root, split=opts["split"], direction=opts["direction"],
                                  work_dir=opts["work_dir"], fid=opts["fid"], baseline=opts["baseline"],
                                  device=opts["device"], precision=opts["precision"], ema=opts["ema"],
                                  html=opts["html"])
    except ImageReadError as err:  # a file the scores need cannot be read
        stop(f"Error: {err}", EXIT_INPUTS_FAILED)
    except (ValueError, OSError, RuntimeError) as err:
        raise click.ClickException(printable(err)) from err
    except KeyboardInterrupt:
        stop("interrupted", EXIT_INTERRUPTED)
    click.echo(format_table(result))
    json_out = opts["json_out"]
    if json_out is None and checkpoint is not None and checkpoint.is_dir() and (checkpoint / "config.json").exists():
        json_out = scores_file(checkpoint, result)
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2))
        click.echo(f"scores written to {json_out}")
    if opts["html"] is not None:
        click.echo(f"results page written to {opts['html'] / 'index.html'}")
    if result.get("failed"):
        for message in result["failed"]:
            click.echo(f"error: {printable(message)}", err=True)
        stop(f"Error: {len(result['failed'])} input(s) could not be translated; the scores leave them out",
             EXIT_INPUTS_FAILED)


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report_command(run_dir: Path) -> None:
    """Rebuild RUN_DIR/report.html (config, loss and metric curves, sample grids, latest metrics)."""
    from i2i.training.report import build_report

    click.echo(f"wrote {build_report(run_dir)}")


BENCH_WHAT = ("pix2pix", "cyclegan", "cut", "translate")


@main.command("bench", epilog="""\b
Examples:
  i2i bench                                  # every model at 256², as a run would choose its settings
  i2i bench --what pix2pix --what translate --size 128 --json bench.json
""")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--what", type=click.Choice(BENCH_WHAT), multiple=True,
              help="What to time (repeatable) [default: all of them].")
@click.option("--size", type=click.IntRange(min=64), default=256, show_default=True,
              help="Image size (square) of every step; a multiple of 256 suits every generator.")
@click.option("--steps", type=POSITIVE, default=3, show_default=True, help="Timed steps per row, after one warm-up.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report here (for bug reports).")
def bench_command(device: str, what: tuple[str, ...], size: int, steps: int, json_out: Path | None) -> None:
    """This machine: the device, matmul peaks per dtype, what auto picks for training and translation and why
    (timed here, then cached as a run would), and steps/s and images/s at those choices."""
    from i2i.bench import run
    from i2i.data.io import atomic_write_bytes

    if owns_process():  # time the steps as a run of the `i2i` command makes them
        from i2i.runtime.process import tune_cpu_allocator

        tune_cpu_allocator()
    if size % 256 and any(w in what or not what for w in ("pix2pix", "translate")):
        raise click.BadParameter(f"{size}: the unet_256 generator needs a multiple of 256", param_hint="--size")
    report = run(device, what or BENCH_WHAT, size, steps, print_line=click.echo)
    if json_out is not None:
        atomic_write_bytes(json_out, (json.dumps(report, indent=2, default=str) + "\n").encode())
        click.echo(f"wrote {json_out}")


@main.command(epilog="""\b
Example:
  i2i demo                      # about a minute on 2 CPU cores
  i2i demo --steps 100 --out /tmp/demo
""")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("checkpoints/demo"),
              show_default=True, help="Where the dataset, run and report go.")
@click.option("--steps", type=POSITIVE, default=1000, show_default=True, help="Training steps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data, crops and initialisation.")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True,
              help="Replace an existing OUT/run (else the demo refuses to touch it).")
def demo(out: Path, steps: int, seed: int, overwrite: bool) -> None:
    """Train a small day->night Pix2Pix on photos bundled with scikit-image and show what it learned."""
    from i2i.demo import run_demo

    try:
        report = run_demo(out, steps=steps, seed=seed, overwrite=overwrite)
    except ValueError as err:
        raise click.ClickException(printable(err)) from err
    click.echo(report.text())


@main.command("import", epilog="""\b
Examples:
  i2i import checkpoints/facades_label2photo_pretrained/latest_net_G.pth facades.safetensors --direction BtoA
  i2i import checkpoints/horse2zebra_pretrained/latest_net_G.pth horse2zebra.safetensors
  i2i import run/latest_net_G_A.pth run/latest_net_G_B.pth run/latest_net_D_A.pth run/latest_net_D_B.pth imported/
""")
@click.argument("pth", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--model", type=click.Choice(list(MODELS)), default=None,
              help="[default: from the generator: U-Net -> pix2pix, ResNet or *_A/*_B files -> cyclegan]")
@click.option("--direction", type=click.Choice(DIRECTIONS), default="AtoB", show_default=True,
              help="What a Pix2Pix G translates; CycleGAN: the direction of a lone net_G (or net_D).")
@click.option("--dropout/--no-dropout", default=None,
              help="Generator dropout [default: pix2pix on, cyclegan off; a ResNet file's own layout].")
@click.option("--load-size", type=POSITIVE, default=D.load_size, show_default=True, help="Training resize (stored).")
@click.option("--crop-size", type=POSITIVE, default=D.crop_size, show_default=True, help="Training crop (stored).")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True, help="Replace existing outputs.")
def import_command(pth: tuple[Path, ...], out: Path, **opts) -> None:
    """Turn the reference implementation's *_net_G.pth / *_net_D.pth into i2i weights files.

    OUT ending in .safetensors receives one network; any other OUT is a checkpoint folder with
    G.safetensors / D.safetensors (pix2pix) or G_AB, G_BA, D_A, D_B (cyclegan). The .pth files are
    read with weights_only: nothing in them is executed.
    """
    from i2i.checkpoint.reference import ReferenceImportError
    from i2i.checkpoint.reference_import import import_reference

    try:
        result = import_reference(pth, out, **opts)
    except ReferenceImportError as err:
        raise click.ClickException(str(err)) from err
    for line in result.lines():
        click.echo(line)




@main.command(epilog="""\b
Examples:
  i2i serve checkpoints/facades_pix2pix                      # http://127.0.0.1:7860, this machine only
  i2i serve checkpoints/yosemite checkpoints/facades_pix2pix # a model picker; CycleGAN runs both ways
  I2I_SERVE_AUTH=ann:secret i2i serve RUN --host 0.0.0.0     # other machines too, behind a password
""")
@click.argument("runs", metavar="RUN...", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@apply(config_options(ServeConfig))
def serve(runs: tuple[Path, ...], **opts) -> None:
    """Show trained runs on a web page: upload images or a video, get translations (pip install 'i2i[serve]').

    Binds to 127.0.0.1 unless --host says otherwise; no analytics, no share links, nothing loaded from the
    network. Ctrl-C stops it.
    """
    config = from_options(ServeConfig, opts)
    problems = config.problems()
    if problems:
        raise click.BadParameter("; ".join(problems))
    try:
        from i2i.translation import serve as page
    except ImportError as err:
        raise click.ClickException(str(err)) from err
    try:
        page.serve(runs, config, echo=click.echo)
    except (ValueError, OSError, RuntimeError) as err:
        raise click.ClickException(printable(err)) from err
