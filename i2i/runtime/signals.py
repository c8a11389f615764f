"""Stop requests from signals (Ctrl-C, a scheduler's SIGTERM, SLURM's `--signal=USR1@N`): a flag or an exception.

Training turns them into a flag read at its step boundary (`stop_on_signals`): the step finishes, a checkpoint
of it is written, the run exits with status 128 + the signal's number. Translation turns them into an
exception (`interrupt_on_signals`) that the file loop's cleanup handles like Ctrl-C. Handlers belong to the
main thread: elsewhere, and for a signal the process was started with ignored (nohup), nothing changes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# what a cluster scheduler, a container runtime or a user sends before it kills a job
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def exit_status(signum: int) -> int:
    """The shell's status for a process ended by `signum` (130 for SIGINT, 143 SIGTERM, 138 SIGUSR1)."""
    return 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@dataclass
class StopRequest:
    """Set by the first stop signal inside `stop_on_signals()`."""

    signum: int | None = None  # the first signal received

    @property
    def requested(self) -> bool:
        return self.signum is not None


class Interrupted(KeyboardInterrupt):
    """A stop signal other than SIGINT arrived inside `interrupt_on_signals()` (SIGINT raises KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal_name(signum)}")
        self.signum = signum


def received(err: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: its own for `Interrupted`, else SIGINT."""
    return getattr(err, "signum", signal.SIGINT)


def _installable(signals: tuple[int, ...]) -> list[int]:
    if threading.current_thread() is not threading.main_thread():
        return []
    return [s for s in signals if signal.getsignal(s) not in (signal.SIG_IGN, None)]


@contextmanager
def _handlers(handler: Callable[[int, object], None], signals: tuple[int, ...]) -> Iterator[None]:
    installed = _installable(signals)
    previous = {s: signal.signal(s, handler) for s in installed}
    try:
        yield
    finally:
        for s, before in previous.items():
            signal.signal(s, before)


@contextmanager
def stop_on_signals(notify: Callable[[int], None] | None = None,
                    signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """During the block the first of `signals` only sets the request (and calls `notify` with it), so the caller
    can finish its step, save and stop. A second Ctrl-C raises KeyboardInterrupt at once; a repeated SIGTERM or
    SIGUSR1 changes nothing (the stop is under way, and a scheduler that will not wait sends SIGKILL anyway).
    The previous handlers are put back on exit."""
    stop = StopRequest()

    def handler(signum: int, frame: object) -> None:
        if stop.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stop.signum = signum
        if notify is not None:
            notify(signum)

    with _handlers(handler, signals):
        yield stop


@contextmanager
def interrupt_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1)) -> Iterator[None]:
    """During the block the first of `signals` raises `Interrupted` in the main thread, as Ctrl-C raises
    KeyboardInterrupt; later ones are ignored, so the cleanup that the first one started is not cut short."""
    raised: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not raised:
            raised.append(signum)
            raise Interrupted(signum)

    with _handlers(handler, signals):
        yield
