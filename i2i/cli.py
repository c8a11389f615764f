"""The `i2i` command line: builds configs from options and calls the library (no logic of its own).

Every default comes from the config dataclasses (one source of truth); options are named like the fields
they fill, so `pick()` builds a config from them.

Exit statuses (the README's "Exit codes"): 0 everything done (inputs translated or already done), 1 an
error that stopped the command, 2 a usage error (click), 3 some inputs could not be translated or scored
(the rest were; with --strict the command stopped at the first), 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from i2i.config import (
    AUGMENT_ON,
    COMPILE_MODES,
    DEVICES,
    DIRECTIONS,
    EXPORT_FORMATS,
    FORMATS,
    LAYOUTS,
    PRECISIONS,
    PREPROCESS_MODES,
    RECIPES,
    SIZE_MODES,
    DataConfig,
    RunConfig,
    ServeConfig,
    TrainConfig,
)
from i2i.models import MODELS
from i2i.models.cyclegan import CycleGANConfig
from i2i.models.losses import GAN_LOSSES
from i2i.models.pix2pix import Pix2PixConfig
from i2i.nets import (
    D_NORMS,
    DISCRIMINATORS,
    GENERATORS,
    INITS,
    NORMS,
    UPSAMPLES,
    DiscriminatorConfig,
    GeneratorConfig,
)
from i2i.video import CODECS

EXIT_INPUTS_FAILED = 3
EXIT_INTERRUPTED = 130
POSITIVE = click.IntRange(min=1)
CHANNELS = click.IntRange(1, 3)
C = TypeVar("C")
T, D = TrainConfig, DataConfig  # defaults below are read from these


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="i2i")
def main() -> None:
    """i2i: image-to-image translation (Pix2Pix, CycleGAN)."""


def owns_process() -> bool:
    """True when this is the `i2i` program itself (i2i/__main__.py), not the CLI called inside another program
    (tests, notebooks): only then may a command tune the process (see i2i/process.py)."""
    ctx = click.get_current_context()
    return bool(ctx.find_root().obj and ctx.find_root().obj.get("owns_process"))


def printable(text: object) -> str:
    """`text` safe to print: bytes of non-UTF-8 file names as \\x escapes instead of an encoding error."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def stop(message: str, code: int) -> NoReturn:
    """Print `message` to stderr and exit with `code`."""
    click.echo(printable(message), err=True)
    raise click.exceptions.Exit(code)


def pick(cls: type[C], opts: dict[str, Any], **overrides: Any) -> C:
    """An instance of dataclass `cls` from the options named like its fields (paths as strings)."""
    values = {f.name: opts[f.name] for f in dataclasses.fields(cls) if f.name in opts} | overrides
    return cls(**{k: str(v) if isinstance(v, Path) else v for k, v in values.items()})


@main.group()
def train() -> None:
    """Train a model; each model is a sub-command (`i2i train pix2pix --help`)."""
    if owns_process():
        from i2i.process import import_dynamo, long_lived, tune_cpu_allocator

        tune_cpu_allocator()
        with long_lived():  # the trainer's imports are as permanent as the process
            import i2i.trainer  # noqa: F401

            import_dynamo()


def dist_timeout_option(default: float) -> Callable:
    return click.option("--dist-timeout", type=click.FloatRange(min=0, min_open=True), default=default,
                        show_default=True, help="Under torchrun: seconds a process waits for the others before the "
                                                "run fails with a message (instead of hanging).")


def training_options(fn: Callable) -> Callable:
    """Options every model's train command shares: data preparation, schedule, devices, run directory."""
    options = [
        click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     required=True, help="Dataset root (see datasets/README.md for the layouts)."),
        click.option("--name", default=None, help="Run name: checkpoints/NAME/. Default: DATA-folder_MODEL."),
        click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(T.runs_dir),
                     show_default=True, help="Folder that holds run directories."),
        click.option("--max-steps", type=POSITIVE, default=T.max_steps, help="Stop after this many steps (a budget)."),
        click.option("--epochs", type=click.IntRange(min=0), default=T.epochs, show_default=True,
                     help="Epochs at the initial learning rate."),
        click.option("--decay-epochs", type=click.IntRange(min=0), default=T.decay_epochs, show_default=True,
                     help="Then epochs of linear decay to zero."),
        click.option("--batch-size", type=POSITIVE, default=T.batch_size, show_default=True),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=T.lr, show_default=True),
        click.option("--beta1", type=click.FloatRange(0, 1, max_open=True), default=T.beta1, show_default=True),
        click.option("--preprocess", type=click.Choice(PREPROCESS_MODES), default=D.preprocess,
                     show_default=True, help="How images are resized and cropped."),
        click.option("--load-size", type=POSITIVE, default=D.load_size, show_default=True,
                     help="Resize to this first."),
        click.option("--crop-size", type=POSITIVE, default=D.crop_size, show_default=True,
                     help="Then crop this (at most --load-size)."),
        click.option("--flip/--no-flip", default=D.flip, show_default=True, help="Random horizontal flips."),
        click.option("--augment-on", type=click.Choice(AUGMENT_ON), default=D.augment_on, show_default=True,
                     help="Where resize/crop/flip run: 'device' does them on the training device (kornia), "
                          "so the CPU only decodes; worth it on a GPU whose data loader is CPU-bound."),
        click.option("--strict/--no-strict", default=D.strict, show_default=True,
                     help="Fail on an unreadable image instead of skipping it."),
        click.option("--device", type=click.Choice(DEVICES), default=T.device, show_default=True),
        click.option("--precision", type=click.Choice(PRECISIONS), default=T.precision, show_default=True,
                     help="auto: bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX); on a GPU fp32 (TF32) "
                          "below batch 8, where steps are launch-bound, bf16 from there on; else fp32. "
                          "Losses are always fp32."),
        click.option("--channels-last/--no-channels-last", default=T.channels_last,
                     help="NHWC memory layout [default: on for CUDA, off on the CPU where it measured no gain]."),
        click.option("--compile/--no-compile", default=T.compile, show_default=True,
                     help="torch.compile the networks (falls back to eager with a message)."),
        click.option("--compile-mode", type=click.Choice(COMPILE_MODES), default=T.compile_mode, show_default=True,
                     help="With --compile: reduce-overhead replays CUDA graphs (small, launch-bound GPU batches)."),
        click.option("--seed", type=int, default=T.seed, show_default=True),
        click.option("--deterministic/--no-deterministic", default=T.deterministic, show_default=True,
                     help="Deterministic algorithms only (bit-exact resume on the CPU)."),
        click.option("--workers", type=click.IntRange(min=0), default=T.workers,
                     help="DataLoader worker processes [default: picked for the machine]."),
        click.option("--val-every", type=click.IntRange(min=0), default=T.val_every, show_default=True,
                     help="Score held-out images every N steps and keep the best checkpoint (0: never)."),
        click.option("--val-data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=T.val_data,
                     help="Held-out data root [default: --data]."),
        click.option("--val-split", default=T.val_split, show_default=True,
                     help="Held-out split (falls back to test)."),
        click.option("--val-size", type=POSITIVE, default=T.val_size, show_default=True,
                     help="Images scored each time."),
        click.option("--val-fid/--no-val-fid", default=T.val_fid, show_default=True,
                     help="Also FID/KID at validation (needs i2i[metrics]; required for CycleGAN)."),
        click.option("--best-metric", default=T.best_metric,
                     help="Validation metric that picks ckpt/best [default: val_psnr, or the first FID]."),
        click.option("--tensorboard/--no-tensorboard", default=T.tensorboard, show_default=True,
                     help="Also log to RUN/tensorboard (needs the tensorboard package)."),
        click.option("--log-every", type=POSITIVE, default=T.log_every, show_default=True),
        click.option("--sample-every", type=click.IntRange(min=0), default=T.sample_every, show_default=True,
                     help="Write a sample grid every N steps (0: never)."),
        click.option("--save-every", type=click.IntRange(min=0), default=T.save_every, show_default=True,
                     help="Checkpoint every N steps (0: only at the end)."),
        click.option("--save-minutes", type=click.FloatRange(min=0), default=T.save_minutes, show_default=True,
                     help="Also checkpoint when this many minutes passed since the last checkpoint (0: off)."),
        click.option("--keep-last", type=POSITIVE, default=T.keep_last, show_default=True, help="Checkpoints kept."),
        click.option("--sync-bn/--no-sync-bn", default=T.sync_bn, show_default=True,
                     help="Under torchrun: BatchNorm statistics over the global batch (--no-sync-bn: per process)."),
        dist_timeout_option(T.dist_timeout),
        click.option("--resume", is_flag=True,
                     help="Continue the run NAME from its latest checkpoint (from step 0 if it has none yet); "
                          "model options not typed come from the run."),
        click.option("--init-from", type=click.Path(exists=True, path_type=Path), default=T.init_from,
                     help="Start from these weights: a run directory, a checkpoint folder or one .safetensors "
                          "(e.g. from `i2i import`). Model options not typed come from it; optimizers, schedule "
                          "and step count start fresh."),
        click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=T.ema_decay,
                     show_default=True, help="Keep an exponential moving average of the generators' weights "
                     "(e.g. 0.999; 0: off); checkpoints hold both, inference uses the average."),
        click.option("--recipe", type=click.Choice(list(RECIPES)), default=T.recipe, show_default=True,
                     help="A named set of defaults for the options you do not type: "
                          f"{recipe_summary()} (README: Quality)."),
        click.option("--dry-run", is_flag=True, help="Print the resolved config and exit."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), fn)


def recipe_summary() -> str:
    """Each recipe with the options it sets, for --help: 'paper (the defaults shown), hq (--upsample resize ...)'."""
    def options(values: dict[str, Any]) -> str:
        return " ".join(f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}")
                        for key, value in values.items())
    return ", ".join(f"{name} ({options(values) or 'the defaults shown'})" for name, values in RECIPES.items())


def run_name(model: str, opts: dict) -> str:
    return opts["name"] or f"{Path(opts['data_root']).resolve().name}_{model}"


def typed_options(opts: dict) -> set[str]:
    """The options the user gave on the command line (not defaults)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return {name for name in opts
            if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}


def with_recipe(opts: dict) -> dict:
    """The options, with --recipe's values for the ones the user did not type (a typed option always wins)."""
    typed = typed_options(opts)
    return opts | {k: v for k, v in RECIPES[opts["recipe"]].items() if k in opts and k not in typed}


def with_source_options(model: str, opts: dict) -> dict:
    """The options, with the model options the user did not type taken from --init-from's source, or on --resume
    from the run being resumed (i2i.init_from.options_from_source)."""
    from i2i.init_from import options_from_source

    typed = typed_options(opts)
    try:
        return options_from_source(model, opts, typed, run_dir=Path(opts["runs_dir"]) / run_name(model, opts))
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from err


def run_training(model: str, model_config: object, data: DataConfig, opts: dict) -> None:
    """Assemble the RunConfig and train it (or print it for --dry-run)."""
    from i2i.distributed import launch_rank
    from i2i.trainer import train as train_run

    name = run_name(model, opts)
    cfg = RunConfig(model=model, model_config=model_config, data=data, train=pick(TrainConfig, opts, name=name))
    if opts["dry_run"]:
        click.echo(cfg.to_json())
        return
    from i2i.process import process_age
    from i2i.trainer import TrainingInterrupted

    startup = process_age() if owns_process() else None
    try:
        summary = train_run(cfg, resume=opts["resume"], progress=opts["progress"], startup_seconds=startup)
    except (RuntimeError, ValueError, OSError) as err:  # RunError is a RuntimeError
        raise click.ClickException(printable(err)) from err
    except TrainingInterrupted as err:
        stop(f"{err}; continue with the same command and --resume", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        stop("interrupted at once: the newest complete checkpoint is kept; continue with the same command and "
             "--resume", EXIT_INTERRUPTED)
    if launch_rank() == 0:
        click.echo(summary.line())
        click.echo(summary.time_line())


def network_options(defaults: GeneratorConfig, d_defaults: DiscriminatorConfig,
                    gan_loss: str) -> Callable[[Callable], Callable]:
    """Architecture and objective options both models share; each model's config gives the defaults."""
    options = [
        click.option("--generator", type=click.Choice(list(GENERATORS)), default=defaults.name, show_default=True),
        click.option("--discriminator", type=click.Choice(list(DISCRIMINATORS)), default=d_defaults.name,
                     show_default=True),
        click.option("--n-layers-d", type=POSITIVE, default=d_defaults.n_layers, show_default=True,
                     help="Depth of the n_layers discriminator."),
        click.option("--ngf", type=POSITIVE, default=defaults.base_channels, show_default=True,
                     help="Generator base channels."),
        click.option("--ndf", type=POSITIVE, default=d_defaults.base_channels, show_default=True,
                     help="Discriminator base channels."),
        click.option("--norm", type=click.Choice(NORMS), default=defaults.norm, show_default=True),
        click.option("--init", "init_kind", type=click.Choice(INITS), default=defaults.init, show_default=True),
        click.option("--dropout/--no-dropout", default=defaults.dropout, show_default=True, help="Generator dropout."),
        click.option("--gan-loss", type=click.Choice(GAN_LOSSES), default=gan_loss, show_default=True),
        click.option("--upsample", type=click.Choice(UPSAMPLES), default=defaults.upsample, show_default=True,
                     help="Generator upsampling: deconv (transposed conv, the papers'), resize (nearest x2 + conv: "
                          "no checkerboard), pixelshuffle (ICNR-initialised sub-pixel conv)."),
        click.option("--num-d", type=click.IntRange(1, 4), default=None,
                     help="Scales of --discriminator multiscale (pix2pixHD) [default: 2 there, else 1]."),
        click.option("--d-norm", type=click.Choice(D_NORMS), default=None,
                     help="Discriminator normalisation; spectral: spectral norm on every conv [default: --norm]."),
    ]
    return lambda fn: functools.reduce(lambda f, option: option(f), reversed(options), fn)


def generator_config(opts: dict, in_channels: int, out_channels: int) -> GeneratorConfig:
    return GeneratorConfig(name=opts["generator"], in_channels=in_channels, out_channels=out_channels,
                           base_channels=opts["ngf"], norm=opts["norm"], dropout=opts["dropout"],
                           init=opts["init_kind"], upsample=opts["upsample"])


def discriminator_config(opts: dict, in_channels: int) -> DiscriminatorConfig:
    num_d = opts["num_d"] or (2 if opts["discriminator"] == "multiscale" else 1)
    return DiscriminatorConfig(name=opts["discriminator"], in_channels=in_channels, base_channels=opts["ndf"],
                               n_layers=opts["n_layers_d"], norm=opts["d_norm"] or opts["norm"],
                               init=opts["init_kind"], num_d=num_d)


P2P, CG = Pix2PixConfig(), CycleGANConfig()  # each model's defaults, shown by --help


@train.command(epilog="""\b
Examples:
  i2i train pix2pix --data datasets/facades --direction BtoA
  i2i train pix2pix --data my_pairs --name maps --max-steps 20000 --precision bf16
  i2i train pix2pix --data my_pairs --name maps --max-steps 40000 --resume   # continue
  i2i train pix2pix --data my_pairs --name ft --init-from checkpoints/maps    # fine-tune
  i2i train pix2pix --data my_pairs --dry-run                                 # show config
  torchrun --standalone --nproc_per_node 4 -m i2i train pix2pix --data my_pairs   # 4 GPUs, one process each
""")
@training_options
@network_options(P2P.generator, P2P.discriminator, P2P.gan_loss)
@click.option("--direction", type=click.Choice(DIRECTIONS), default=P2P.direction, show_default=True,
              help="AtoB: translate A (left half / A folder) into B.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=D.layout, show_default=True,
              help="Paired layout: A|B side-by-side files or A/ + B/ folders.")
@click.option("--input-channels", type=CHANNELS, default=P2P.generator.in_channels, show_default=True)
@click.option("--output-channels", type=CHANNELS, default=P2P.generator.out_channels, show_default=True)
@click.option("--lambda-l1", type=click.FloatRange(min=0), default=P2P.lambda_l1, show_default=True)
@click.option("--lambda-fm", type=click.FloatRange(min=0), default=P2P.lambda_fm, show_default=True,
              help="Feature matching on the discriminator's intermediate features (pix2pixHD: 10; 0: off).")
@click.option("--input-augment/--no-input-augment", default=D.input_augment, show_default=True,
              help="Colour jitter, blur and noise on the input image only (never the target).")
def pix2pix(**opts) -> None:
    """Train Pix2Pix on paired images (U-Net generator + PatchGAN discriminator)."""
    opts = with_source_options("pix2pix", with_recipe(opts))
    g = generator_config(opts, opts["input_channels"], opts["output_channels"])
    model_cfg = Pix2PixConfig(generator=g, discriminator=discriminator_config(opts, g.in_channels + g.out_channels),
                              direction=opts["direction"], gan_loss=opts["gan_loss"], lambda_l1=opts["lambda_l1"],
                              lambda_fm=opts["lambda_fm"])
    run_training("pix2pix", model_cfg, pick(DataConfig, opts, root=opts["data_root"]), opts)


@train.command(epilog="""\b
Examples:
  i2i train cyclegan --data datasets/summer2winter_yosemite
  i2i train cyclegan --data datasets/horse2zebra --max-steps 20000 --crop-size 128 --precision bf16
  i2i train cyclegan --data datasets/horse2zebra --max-steps 40000 --resume     # continue
""")
@training_options
@network_options(CG.g_ab, CG.d_a, CG.gan_loss)
@click.option("--a-channels", type=CHANNELS, default=CG.g_ab.in_channels, show_default=True,
              help="Channels of domain A images.")
@click.option("--b-channels", type=CHANNELS, default=CG.g_ab.out_channels, show_default=True,
              help="Channels of domain B images.")
@click.option("--lambda-cycle", type=click.FloatRange(min=0), default=CG.lambda_cycle, show_default=True,
              help="Weight of both cycle-consistency L1 terms.")
@click.option("--lambda-identity", type=click.FloatRange(min=0), default=CG.lambda_identity, show_default=True,
              help="Identity loss weight, times --lambda-cycle (0: off; needs equal channels).")
@click.option("--pool-size", type=click.IntRange(min=0), default=CG.pool_size, show_default=True,
              help="History of generated images shown to the discriminators (0: off).")
@click.option("--serial/--no-serial", default=D.serial, show_default=True,
              help="Pair A[i] with B[i] in order instead of a random B.")
@click.option("--init-direction", type=click.Choice(DIRECTIONS), default=T.init_direction,
              help="With --init-from a one-generator source (a Pix2Pix G, an imported CycleGAN model): the "
                   "generator it fills, AtoB (G_AB) or BtoA (G_BA) [default: the direction it translates].")
def cyclegan(**opts) -> None:
    """Train CycleGAN on unpaired folders trainA/ and trainB/ (two ResNet generators, two PatchGANs)."""
    opts = with_source_options("cyclegan", with_recipe(opts))
    a, b = opts["a_channels"], opts["b_channels"]
    model_cfg = CycleGANConfig(
        g_ab=generator_config(opts, a, b), g_ba=generator_config(opts, b, a),
        d_a=discriminator_config(opts, a), d_b=discriminator_config(opts, b),
        gan_loss=opts["gan_loss"], lambda_cycle=opts["lambda_cycle"], lambda_identity=opts["lambda_identity"],
        pool_size=opts["pool_size"],
    )
    run_training("cyclegan", model_cfg, pick(DataConfig, opts, root=opts["data_root"]), opts)


@main.command(epilog="""\b
Examples:
  i2i translate checkpoints/facades_pix2pix labels/ photos/
  i2i translate checkpoints/yosemite photo.jpg winter.png --direction AtoB
  i2i translate checkpoints/maps big_tiles/ out/ --tile 512 --precision bf16 --format png
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
              help="Same-size images per batch [default: 8 on the CPU, 32 on a GPU].")
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
              help="auto: bf16 on CPUs with native bf16 (~0.2 grey levels from fp32); on a GPU fp32 (TF32) below "
                   "batch 8, bf16 from there on; else fp32. fp32 gives exact outputs.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--ema/--no-ema", default=True, show_default=True,
              help="Use the generator's EMA weights when the checkpoint has them (--ema-decay runs).")
@dist_timeout_option(T.dist_timeout)
@click.option("--video-codec", type=click.Choice(CODECS), default=None,
              help="Videos: libx264 (H.264, yuv420p) or libvpx-vp9 [default: VP9 for .webm, else H.264].")
@click.option("--crf", type=click.IntRange(0, 63), default=None,
              help="Videos: constant quality, lower is better [default: matched to each input's bits per pixel].")
@click.option("--bitrate", default=None, help="Videos: a bit rate instead of --crf, e.g. 4M or 800k.")
def translate(checkpoint: Path, input_path: Path, output: Path, **opts) -> None:
    """Translate an image file or a whole folder tree with a trained run.

    OUTPUT is a folder that mirrors INPUT's relative paths and names, or, when INPUT is one file and
    OUTPUT has an extension, the output file itself. Under torchrun the processes share the files. Exit status:
    0 when every image was translated or already done, 3 when some could not be (each is named), 1 on other
    errors, 130 on Ctrl-C.
    """
    from i2i.data.io import ImageReadError
    from i2i.distributed import session
    from i2i.folders import DirSummary, merge_summaries
    from i2i.inference import Translator
    from i2i.video import VideoOptions, parse_bitrate

    if owns_process():
        from i2i.process import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        with session(opts["device"], opts["dist_timeout"],
                     again="Run the same command again: finished outputs are skipped.") as group:
            translator = Translator.from_pretrained(
                checkpoint, direction=opts["direction"], device=opts["device"], precision=opts["precision"],
                keep_dropout=opts["keep_dropout"], size_mode=opts["size_mode"], tile=opts["tile"],
                tile_overlap=opts["tile_overlap"], batch_size=opts["batch_size"], ema=opts["ema"])
            video = VideoOptions(opts["video_codec"], opts["crf"],
                                 None if opts["bitrate"] is None else parse_bitrate(opts["bitrate"]))
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
    except KeyboardInterrupt:
        stop("interrupted: every output written so far is complete; run the same command again to continue",
             EXIT_INTERRUPTED)
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
    from i2i.export import export

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
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the scores here [default: RUN/eval_SPLIT.json for a run directory].")
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
    from i2i.evaluate import evaluate_run, format_table, score_folders
    from i2i.metrics import json_safe

    if owns_process():
        from i2i.process import tune_cpu_allocator

        tune_cpu_allocator()

    try:
        if opts["outputs"] is not None:
            if checkpoint is not None or opts["targets"] is None:
                raise click.UsageError("--outputs needs --targets and no CHECKPOINT")
            result = json_safe({"scores": score_folders(opts["outputs"], opts["targets"], paired=opts["paired"],
                                                        fid=opts["fid"])})
        else:
            if checkpoint is None or data_root is None:
                raise click.UsageError("give CHECKPOINT and --data (or --outputs and --targets)")
            result = evaluate_run(checkpoint, data_root, split=opts["split"], direction=opts["direction"],
                                  work_dir=opts["work_dir"], fid=opts["fid"], baseline=opts["baseline"],
                                  device=opts["device"], precision=opts["precision"], ema=opts["ema"])
    except ImageReadError as err:  # a file the scores need cannot be read
        stop(f"Error: {err}", EXIT_INPUTS_FAILED)
    except (ValueError, OSError, RuntimeError) as err:
        raise click.ClickException(printable(err)) from err
    except KeyboardInterrupt:
        stop("interrupted", EXIT_INTERRUPTED)
    click.echo(format_table(result))
    json_out = opts["json_out"]
    if json_out is None and checkpoint is not None and checkpoint.is_dir() and (checkpoint / "config.json").exists():
        json_out = checkpoint / f"eval_{result['split']}.json"
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2))
        click.echo(f"scores written to {json_out}")
    if result.get("failed"):
        for message in result["failed"]:
            click.echo(f"error: {printable(message)}", err=True)
        stop(f"Error: {len(result['failed'])} input(s) could not be translated; the scores leave them out",
             EXIT_INPUTS_FAILED)


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report_command(run_dir: Path) -> None:
    """Rebuild RUN_DIR/report.html (config, loss and metric curves, sample grids, latest metrics)."""
    from i2i.report import build_report

    click.echo(f"wrote {build_report(run_dir)}")


@main.command(epilog="""\b
Example:
  i2i demo                      # about a minute on 2 CPU cores
  i2i demo --steps 100 --out /tmp/demo
""")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("checkpoints/demo"),
              show_default=True, help="Where the dataset, run and report go.")
@click.option("--steps", type=POSITIVE, default=1000, show_default=True, help="Training steps.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out: Path, steps: int, seed: int) -> None:
    """Train a small day->night Pix2Pix on photos bundled with scikit-image and show what it learned."""
    from i2i.demo import run_demo

    report = run_demo(out, steps=steps, seed=seed)
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
    from i2i.reference import ReferenceImportError, import_reference

    try:
        result = import_reference(pth, out, **opts)
    except ReferenceImportError as err:
        raise click.ClickException(str(err)) from err
    for line in result.lines():
        click.echo(line)


S = ServeConfig  # defaults of the serve command


@main.command(epilog="""\b
Examples:
  i2i serve checkpoints/facades_pix2pix                      # http://127.0.0.1:7860, this machine only
  i2i serve checkpoints/yosemite checkpoints/facades_pix2pix # a model picker; CycleGAN runs both ways
  I2I_SERVE_AUTH=ann:secret i2i serve RUN --host 0.0.0.0     # other machines too, behind a password
""")
@click.argument("runs", metavar="RUN...", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--host", default=S.host, show_default=True,
              help="Address to bind; anything but loopback exposes the page to the network (with a warning).")
@click.option("--port", type=click.IntRange(0, 65535), default=S.port, show_default=True)
@click.option("--auth", default=S.auth, envvar="I2I_SERVE_AUTH", metavar="USER:PASS",
              help="A user and password the browser must give (or set I2I_SERVE_AUTH, which `ps` does not show).")
@click.option("--max-pixels", type=POSITIVE, default=S.max_pixels, show_default=True,
              help="Uploads (images, video frames) with more pixels are refused with a message.")
@click.option("--max-files", type=POSITIVE, default=S.max_files, show_default=True,
              help="Images translated at once in the 'Several images' tab.")
@click.option("--device", type=click.Choice(DEVICES), default=S.device, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default=S.precision, show_default=True,
              help="As for `i2i translate`: auto picks by device and batch size; fp32 gives exact outputs.")
@click.option("--batch-size", type=POSITIVE, default=S.batch_size,
              help="Queued requests translated together [default: 8 on the CPU, 32 on a GPU].")
@click.option("--ema/--no-ema", default=S.ema, show_default=True,
              help="Use the generator's EMA weights when the checkpoint has them.")
def serve(runs: tuple[Path, ...], **opts) -> None:
    """Show trained runs on a web page: upload images or a video, get translations (pip install 'i2i[serve]').

    Binds to 127.0.0.1 unless --host says otherwise; no analytics, no share links, nothing loaded from the
    network. Ctrl-C stops it.
    """
    config = pick(ServeConfig, opts)
    problems = config.problems()
    if problems:
        raise click.BadParameter("; ".join(problems))
    try:
        from i2i import serve as page
    except ImportError as err:
        raise click.ClickException(str(err)) from err
    try:
        page.serve(runs, config, echo=click.echo)
    except (ValueError, OSError, RuntimeError) as err:
        raise click.ClickException(printable(err)) from err
