"""Training processes interrupted for real: Ctrl-C once (checkpoint, exit 130), twice (exit at once), kill -9 at
seeded random moments (always resumes, ends bit-identical), a full disk while checkpointing, and a second
training in the same run directory meanwhile (refused). Each `python -m i2i` start costs a few seconds."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import i2i.checkpoint.weights
from helpers import same_weights, tiny_config
from i2i.checkpoint.weights import latest_checkpoint, load_state
from i2i.cli.commands import main
from i2i.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--generator", "unet_64", "--ngf", "4", "--ndf", "4", "--load-size", "72", "--crop-size", "64",
        "--workers", "0", "--no-progress", "--log-every", "1", "--deterministic", "--precision", "fp32",
        "--sample-every", "0"]


def train_args(data: Path, runs: Path, name: str, *more: str) -> list[str]:
    return ["train", "pix2pix", "--data", str(data), "--runs-dir", str(runs), "--name", name, *TINY, *more]


@pytest.fixture(autouse=True)
def deliverable_ctrl_c():
    """Ctrl-C reaches these tests even where pytest runs with SIGINT ignored (a shell's `cmd &` background job),
    which i2i rightly respects: Python's own handler for the test process, the default one for its children."""
    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def sigint_by_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], log: Path) -> subprocess.Popen:
    """`python -m i2i ARGS` with this checkout's i2i, stdout and stderr into `log`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "i2i", *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, preexec_fn=sigint_by_default)


def in_process(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, catch_exceptions=False)


def logged_steps(run: Path) -> list[int]:
    """The steps in metrics.jsonl (a line being written is not counted)."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    steps = []
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            steps.append(json.loads(line)["step"])
    return steps


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early (status {proc.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for the training:\n{log.read_text()}")
        time.sleep(0.005)


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_exits_130_while_a_second_training_is_refused(paired_root: Path,
                                                                              tmp_path: Path) -> None:
    runs, log = tmp_path / "runs", tmp_path / "log.txt"
    run = runs / "r"
    proc = start(train_args(paired_root, runs, "r", "--max-steps", "100000", "--save-every", "0"), log)
    try:
        wait_until(lambda: len(logged_steps(run)) >= 2, proc, log)
        second = in_process(train_args(paired_root, runs, "r", "--max-steps", "3"))  # same name, meanwhile
        assert second.exit_code == 1 and f"process {proc.pid} is training in it" in second.output
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, log.read_text()
    finally:
        proc.kill()
    steps = logged_steps(run)
    assert steps == list(range(1, len(steps) + 1))  # one line per step: only one process ever wrote
    text = log.read_text()
    assert "stopping after this step" in text and f"interrupted at step {steps[-1]}" in text and "--resume" in text
    assert "Traceback" not in text
    assert (run / "latest").read_text() == f"step_{steps[-1]:06d}"  # the step it stopped at is checkpointed
    resumed = in_process(train_args(paired_root, runs, "r", "--max-steps", str(steps[-1] + 2), "--resume"))
    assert resumed.exit_code == 0 and f"done: {steps[-1] + 2} steps" in resumed.output


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once_without_corrupting_anything(paired_root: Path, tmp_path: Path) -> None:
    runs, log = tmp_path / "runs", tmp_path / "log.txt"
    run = runs / "r"
    proc = start(train_args(paired_root, runs, "r", "--max-steps", "100000", "--save-every", "1"), log)
    try:
        wait_until(lambda: len(logged_steps(run)) >= 3, proc, log)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(timeout=60) == 130, log.read_text()
        assert time.monotonic() - started < 20
    finally:
        proc.kill()
    assert "interrupted" in log.read_text() and "Traceback" not in log.read_text()
    state = load_state(latest_checkpoint(run))  # whole: it loads
    resumed = in_process(train_args(paired_root, runs, "r", "--max-steps", str(state["step"] + 1), "--resume"))
    assert resumed.exit_code == 0 and "skipping checkpoint" not in resumed.output, resumed.output
    assert not list((run / "ckpt").glob(".tmp_*"))  # a write cut short is cleaned up on resume


@pytest.mark.slow
def test_kill_9_at_random_moments_always_resumes_and_ends_bit_identical(paired_root: Path, tmp_path: Path) -> None:
    """Kills at seeded moments: in a step (a seeded delay after a logged step) and in a checkpoint write (as soon
    as its temp folder appears; one checkpoint per step here). Each restart takes the run's lock again (no stale
    lock after kill -9) and resumes; the run ends bit-identical to one that was never interrupted."""
    runs, log, steps = tmp_path / "runs", tmp_path / "log.txt", 8
    run = runs / "k"
    reference = in_process(train_args(paired_root, runs, "ref", "--max-steps", str(steps)))
    assert reference.exit_code == 0
    rng = random.Random(13)
    moments = ["in a step", "in a checkpoint write", rng.choice(["in a step", "in a checkpoint write"])]
    rng.shuffle(moments)
    args = train_args(paired_root, runs, "k", "--max-steps", str(steps), "--save-every", "1")
    resume: list[str] = []
    hit, retries = [], 2
    while moments:
        moment = moments.pop(0)
        target = min(max(logged_steps(run), default=0) + rng.randint(1, 2), steps - 2)
        proc = start(args + resume, log)
        try:
            wait_until(lambda: max(logged_steps(run), default=0) >= target, proc, log)  # noqa: B023
            if moment == "in a step":
                time.sleep(rng.uniform(0.0, 0.15))
            else:
                wait_until(lambda: any((run / "ckpt").glob(".tmp_*")), proc, log)
        finally:
            proc.kill()
            proc.wait()
        if moment != "in a step":
            if any((run / "ckpt").glob(".tmp_*")):  # the write was cut short
                hit.append(moment)
            elif retries:
                retries -= 1
                moments.append(moment)  # it finished just before the kill: try that moment again
        resume = ["--resume"]
    assert hit, "no kill landed inside a checkpoint write"
    finished = in_process(args + resume)
    assert finished.exit_code == 0 and f"done: {steps} steps" in finished.output
    assert logged_steps(run) == list(range(1, steps + 1))
    assert not list((run / "ckpt").glob(".tmp_*"))
    assert same_weights(latest_checkpoint(runs / "ref"), latest_checkpoint(run))


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed")])
def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(paired_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     failure: Exception) -> None:
    real_save = i2i.checkpoint.weights.torch.save
    calls = []

    def save(obj: object, path: Path) -> None:
        calls.append(path)
        if len(calls) >= 2:  # the first checkpoint fits, the second does not
            raise failure
        real_save(obj, path)

    monkeypatch.setattr(i2i.checkpoint.weights.torch, "save", save)
    runs = tmp_path / "runs"
    with pytest.raises(OSError, match="could not write checkpoint step_000004") as info:
        train(tiny_config(paired_root, runs, max_steps=6, save_every=2), progress=False)
    assert "the previous checkpoint step_000002 is intact" in str(info.value)
    run = runs / "tiny"
    assert (run / "latest").read_text() == "step_000002"
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["step_000002"]  # no half-written folder
    assert load_state(run / "ckpt" / "step_000002")["step"] == 2
    calls.clear()
    result = CliRunner().invoke(main, train_args(paired_root, runs, "cli", "--max-steps", "4", "--save-every", "2"))
    assert result.exit_code == 1 and "could not write checkpoint step_000004" in result.output
    assert "Traceback" not in result.output


def test_stop_on_sigint_asks_first_then_stops_and_restores_the_handler() -> None:
    from i2i.runtime.signals import stop_on_signals as stop_on_sigint

    before = signal.getsignal(signal.SIGINT)
    notes = []
    with pytest.raises(KeyboardInterrupt), stop_on_sigint(lambda signum: notes.append("asked")) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs between bytecodes of the main thread
        assert stop.requested and notes == ["asked"]
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        raise AssertionError("the second SIGINT should have raised KeyboardInterrupt")
    assert signal.getsignal(signal.SIGINT) is before

    seen = []

    def elsewhere() -> None:  # handlers belong to the main thread: nothing is installed from another one
        with stop_on_sigint() as other:
            seen.append((signal.getsignal(signal.SIGINT) is before, other.requested))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [(True, False)]
