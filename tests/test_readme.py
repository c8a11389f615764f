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
    result = CliRunner().invoke(main, [*substituted(args, data, tmp_path / "runs"), "--dry-run"])
    assert result.exit_code == 0, f"i2i {' '.join(args)}: {result.output}"
    assert not (tmp_path / "runs").exists()
