"""`i2i` and `python -m i2i`: the command line, in a process that i2i owns and may tune (see i2i/runtime/process.py)."""

from __future__ import annotations

from i2i.runtime.process import long_lived


def run() -> None:
    """The console entry point: import the CLI as permanent objects, then run it as the process owner."""
    with long_lived():
        from i2i.cli.commands import main
    main(obj={"owns_process": True})


if __name__ == "__main__":
    run()
