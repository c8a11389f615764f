"""Click options generated from the config dataclasses: each option's help, type, choices and default come from
its field (`i2i.config.option`), so the command line and the Python API share one description."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from i2i.config import is_option, option_name

Decorator = Callable[[Callable], Callable]


class FiniteRange(click.FloatRange):
    """click's FloatRange that also refuses NaN and infinity (which a range check lets through: nan < 0 is False)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number (NaN and infinity are refused)", param, ctx)
        return number


def field_option(f: dataclasses.Field, hint: Any, default: Any) -> Decorator:
    """The click option of config field `f` (type hint `hint`), defaulting to `default`."""
    md = f.metadata
    name = option_name(f)
    flag = "--" + name.replace("_", "-")
    default = md.get("cli_default", default)
    base = _without_none(hint)
    shown = {"show_default": default is not None} | {k: md[k] for k in ("envvar", "metavar") if k in md}
    if base is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=default, help=md["help"], **shown)
    return click.option(flag, name, type=_click_type(base, md), default=default, help=md["help"], **shown)


def config_options(cls: type, defaults: Any = None, keep: Callable[[dataclasses.Field], bool] = lambda f: True,
                   ) -> list[Decorator]:
    """The options of `cls`'s fields that are command-line options and pass `keep`, with `defaults`' values
    (an instance of `cls`; None: the class defaults), in field order."""
    hints = typing.get_type_hints(cls)
    defaults = cls() if defaults is None else defaults
    return [field_option(f, hints[f.name], getattr(defaults, f.name))
            for f in dataclasses.fields(cls) if is_option(f) and keep(f)]


def apply(options: Iterable[Decorator]) -> Decorator:
    """One decorator applying `options` so that --help lists them in the given order."""
    options = list(options)
    return lambda fn: functools.reduce(lambda f, option: option(f), reversed(options), fn)


def _without_none(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _click_type(base: Any, md: typing.Mapping[str, Any]) -> Any:
    if "choices" in md:
        return click.Choice(list(md["choices"]))
    if "path" in md:
        kind = md["path"]
        return click.Path(exists=kind.startswith("existing"), file_okay=kind == "existing", path_type=Path)
    bounds = {k: md[k] for k in ("min", "max", "min_open", "max_open") if k in md}
    if base is float:  # every float option is finite: NaN or infinity would train silently
        return FiniteRange(**bounds)
    if base is int and bounds:
        return click.IntRange(**bounds)
    return base
