"""What every command shares: the `i2i` group, exit statuses, printing safely, stopping with a status, option checks."""

from __future__ import annotations

from typing import NoReturn

import click

from i2i.config import (
    DataConfig,
    TrainConfig,
    name_problem,
)

EXIT_INPUTS_FAILED = 3
EXIT_INTERRUPTED = 130
POSITIVE = click.IntRange(min=1)
CHANNELS = click.IntRange(1, 3)
T, D = TrainConfig, DataConfig  # defaults below are read from these


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="i2i")
def main() -> None:
    """i2i: image-to-image translation (Pix2Pix, CycleGAN, CUT/FastCUT)."""


def owns_process() -> bool:
    """True when this is the `i2i` program itself (i2i/__main__.py), not the CLI called inside another program
    (tests, notebooks): only then may a command tune the process (see i2i/runtime/process.py)."""
    ctx = click.get_current_context()
    return bool(ctx.find_root().obj and ctx.find_root().obj.get("owns_process"))


def printable(text: object) -> str:
    """`text` safe to print: bytes of non-UTF-8 file names as \\x escapes instead of an encoding error."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def stop(message: str, code: int) -> NoReturn:
    """Print `message` to stderr and exit with `code`."""
    click.echo(printable(message), err=True)
    raise click.exceptions.Exit(code)


def check_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--name must name a folder inside --runs-dir (a click error otherwise: status 2)."""
    if value is not None and (problem := name_problem(value)) is not None:
        raise click.BadParameter(problem)
    return value


def bitrate(value: str | None) -> int | None:
    """--bitrate in bits/s, or a click error (status 2) saying what is accepted."""
    from i2i.translation.video import parse_bitrate

    try:
        return None if value is None else parse_bitrate(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
