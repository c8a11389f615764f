"""`i2i train MODEL`: one command per registered model, every option generated from the config dataclasses."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from i2i.cli.common import CHANNELS, EXIT_INTERRUPTED, T, check_name, main, owns_process, stop
from i2i.cli.options import apply, config_options, field_option
from i2i.config import (
    RECIPES,
    DataConfig,
    RunConfig,
    TrainConfig,
    apply_recipe,
    from_options,
    non_finite,
    option_name,
)
from i2i.data.io import printable
from i2i.models import MODELS, Model
from i2i.nets import DiscriminatorConfig, GeneratorConfig


class ModelCommands(click.Group):
    """`i2i train`'s sub-commands: one per registered model, generated when asked for (so a model registered
    after this module was imported has its command too)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(MODELS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return model_command(name, MODELS[name]) if name in MODELS else None


@main.group(cls=ModelCommands)
def train() -> None:
    """Train a model; each model is a sub-command (`i2i train pix2pix --help`)."""
    if owns_process():
        from i2i.runtime.process import import_dynamo, long_lived, tune_cpu_allocator

        tune_cpu_allocator()
        with long_lived():  # the trainer's imports are as permanent as the process
            import i2i.training.trainer  # noqa: F401

            import_dynamo()


def train_field_option(name: str) -> Callable[[Callable], Callable]:
    """TrainConfig field `name`'s option, for commands other than train that share it."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return field_option(f, typing.get_type_hints(TrainConfig)[name], f.default)


def training_options(model_cls: type[Model]) -> list[Callable]:
    """The options of every train command (data preparation, schedule, devices, run directory), generated from
    DataConfig and TrainConfig; data options of another data kind, or for another number of generators, left out."""
    generators = sum(1 for f in model_cls.network_fields.values()
                     if isinstance(getattr(model_cls.config_class(), f), GeneratorConfig))

    def shown(f: dataclasses.Field) -> bool:
        return f.metadata.get("data_kind", model_cls.data_kind) == model_cls.data_kind and \
            f.metadata.get("generators", generators) == generators

    return [
        click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     required=True, help=field_help(DataConfig, "root")),
        click.option("--name", default=None, callback=check_name, help=field_help(TrainConfig, "name")),
        *config_options(TrainConfig, keep=shown),
        *config_options(DataConfig, keep=shown),
        click.option("--resume", is_flag=True,
                     help="Continue the run NAME from its latest checkpoint (from step 0 if it has none yet); "
                          "model options not typed come from the run."),
        click.option("--recipe", type=click.Choice(list(RECIPES)), default=T.recipe, show_default=True,
                     help="A named set of defaults for the options you do not type: "
                          f"{recipe_summary()} (README: Quality)."),
        click.option("--dry-run", is_flag=True, help="Print the resolved config and exit."),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."),
    ]


def model_options(model_cls: type[Model]) -> list[Callable]:
    """The model's own options: its networks' (defaults from the model's config), its objective's, its channels."""
    defaults = model_cls.config_class()
    nets = [getattr(defaults, f) for f in model_cls.network_fields.values()]
    g = next(n for n in nets if isinstance(n, GeneratorConfig))
    d = next((n for n in nets if isinstance(n, DiscriminatorConfig)), None)
    channels = [click.option("--" + name.replace("_", "-"), name, type=CHANNELS, default=value, show_default=True,
                             help=text)
                for (name, text), value in zip(model_cls.channel_options.items(), (g.in_channels, g.out_channels),
                                               strict=True)]
    def shown(f: dataclasses.Field) -> bool:
        return not f.metadata.get("opt_in") or option_name(f) in model_cls.opt_in_options

    return [*config_options(GeneratorConfig, g, keep=shown),
            *(config_options(DiscriminatorConfig, d, keep=shown) if d else []),
            *config_options(model_cls.config_class, defaults), *channels]


def field_help(cls: type, name: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


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


def with_source_options(model: str, opts: dict) -> tuple[dict, set[str]]:
    """The options, with the model options the user did not type taken from --init-from's source, or on --resume
    from the run being resumed (i2i.training.init_from.options_from_source); and the names of the options so chosen."""
    from i2i.training.init_from import options_from_source

    typed = typed_options(opts)
    try:
        chosen = options_from_source(model, opts, typed, run_dir=Path(opts["runs_dir"]) / run_name(model, opts))
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from err
    return chosen, typed | {k for k in chosen if chosen[k] != opts[k]}


def model_command(name: str, model_cls: type[Model]) -> click.Command:
    """`i2i train NAME`: every option generated from the configs, one library call."""
    @apply([*training_options(model_cls), *model_options(model_cls)])
    def command(**opts: Any) -> None:
        opts, chosen = with_source_options(name, opts)
        try:
            opts = model_cls.resolve_options(opts, chosen)
        except ValueError as err:
            raise click.UsageError(str(err)) from err
        if opts.get("d_norm", "") is None and "norm" in chosen:  # a chosen --norm carries to the discriminator
            chosen.add("d_norm")
        try:
            model_config = model_cls.config_from_options(opts)
        except ValueError as err:
            raise click.UsageError(str(err)) from err
        cfg = RunConfig(model=name, model_config=model_config,
                        data=from_options(DataConfig, opts, root=opts["data_root"]),
                        train=from_options(TrainConfig, opts, name=run_name(name, opts), recipe=opts["recipe"]))
        run_training(apply_recipe(cfg, keep=chosen), opts)

    epilog = f"\b\nExamples:\n{model_cls.examples}\n" if model_cls.examples else None
    return click.command(name, help=model_cls.__doc__, epilog=epilog)(command)


def run_training(cfg: RunConfig, opts: dict) -> None:
    """Train `cfg` (or print it for --dry-run)."""
    from i2i.training.distributed import launch_rank
    from i2i.training.trainer import train as train_run

    problems = cfg.data.problems() + cfg.train.problems() + non_finite(cfg.model_config)
    if problems:  # options that do not fit together: a usage error (status 2), like a bad value
        raise click.UsageError("invalid options:\n  " + "\n  ".join(problems))
    if opts["dry_run"]:
        from i2i.training.trainer import dry_run

        try:
            click.echo(dry_run(cfg, resume=opts["resume"]))
        except (RuntimeError, ValueError, OSError) as err:
            raise click.ClickException(printable(err)) from err
        return
    from i2i.runtime.process import process_age
    from i2i.runtime.signals import exit_status
    from i2i.training.trainer import TrainingInterrupted

    startup = process_age() if owns_process() else None
    try:
        summary = train_run(cfg, resume=opts["resume"], progress=opts["progress"], startup_seconds=startup)
    except (RuntimeError, ValueError, OSError) as err:  # RunError is a RuntimeError
        raise click.ClickException(printable(err)) from err
    except TrainingInterrupted as err:  # a stop signal: the step it stopped at is checkpointed
        if launch_rank() == 0 and err.summary is not None:
            click.echo(err.summary.line())
            click.echo(err.summary.time_line())
        stop(f"{err}; continue with the same command and --resume", exit_status(err.signum))
    except KeyboardInterrupt:
        stop("interrupted at once: the newest complete checkpoint is kept; continue with the same command and "
             "--resume", EXIT_INTERRUPTED)
    if launch_rank() == 0:
        click.echo(summary.line())
        click.echo(summary.time_line())
