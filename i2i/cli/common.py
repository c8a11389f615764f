"""What every command shares: the `i2i` group, exit statuses, printing safely, stopping with a status, option checks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import NoReturn

import click
from tqdm.auto import tqdm

from i2i.config import (
    DataConfig,
    TrainConfig,
    name_problem,
)
from i2i.data.io import printable

EXIT_INPUTS_FAILED = 3
EXIT_INTERRUPTED = 130
POSITIVE = click.IntRange(min=1)
CHANNELS = click.IntRange(min=1)
T, D = TrainConfig, DataConfig  # defaults below are read from these


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="i2i")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings and errors (no start-up lines or notes).")
@click.option("-v", "--verbose", is_flag=True, help="Also print debug messages (every speed candidate's timing).")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """i2i: image-to-image translation (Pix2Pix, CycleGAN, CUT/FastCUT)."""
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose contradict each other: give one of them")
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    ctx.call_on_close(show_messages(level))


class AboveProgressBars(logging.Handler):
    """The library's log records as plain lines on the stderr of the moment, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(printable(self.format(record)), file=sys.stderr)
        except Exception:  # a closed stream: logging's own report, never an exception in the caller
            self.handleError(record)


def show_messages(level: int) -> Callable[[], None]:
    """Print the messages of the `i2i` logger at `level` and above for one command; returns what undoes it (the
    CLI run inside another program, a test or a notebook, leaves that program's logging as it was)."""
    logger = logging.getLogger("i2i")
    handler, before = AboveProgressBars(), (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # printed once, here, even where the root logger prints too

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]

    return undo


def owns_process() -> bool:
    """True when this is the `i2i` program itself (i2i/__main__.py), not the CLI called inside another program
    (tests, notebooks): only then may a command tune the process (see i2i/runtime/process.py)."""
    ctx = click.get_current_context()
    return bool(ctx.find_root().obj and ctx.find_root().obj.get("owns_process"))


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
