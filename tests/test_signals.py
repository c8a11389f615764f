"""Scheduler signals for real: SIGTERM and SIGUSR1 during training checkpoint the step they stopped at, print the
summary, leave no temp folder, exit 128 + the signal, and `--resume` ends bit-identical to a run never stopped;
several processes agree on the stop step; SIGTERM during translation keeps every output whole and prints the
summary, and the rerun completes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_interrupts import in_process, logged_steps, start, train_args, wait_until

from helpers import same_weights
from i2i.checkpoint.weights import latest_checkpoint
from i2i.runtime.signals import Interrupted, exit_status, interrupt_on_signals, stop_on_signals
from i2i.translation.made_by import RECORD


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_scheduler_signal_checkpoints_the_step_and_resume_ends_bit_identical(paired_root: Path, tmp_path: Path,
                                                                               sig: int) -> None:
    runs, log, steps = tmp_path / "runs", tmp_path / "log.txt", 60
    run = runs / "s"
    assert in_process(train_args(paired_root, runs, "ref", "--max-steps", str(steps))).exit_code == 0
    args = train_args(paired_root, runs, "s", "--max-steps", str(steps), "--save-every", "0")
    proc = start(args, log)
    try:
        wait_until(lambda: len(logged_steps(run)) >= 3, proc, log)
        proc.send_signal(sig)
        status = proc.wait(timeout=60)
    finally:
        proc.kill()
    text = log.read_text()
    assert status == exit_status(sig) == 128 + sig, text
    stopped = logged_steps(run)[-1]
    assert stopped < steps, "the run ended before the signal: nothing was tested"
    name = signal.Signals(sig).name
    assert f"{name}: stopping after this step" in text and f"interrupted at step {stopped} by {name}" in text
    assert f"done: {stopped} steps" in text and "\ntime: " in text and "Traceback" not in text
    assert (run / "latest").read_text() == f"step_{stopped:06d}"  # --save-every 0: the stop still checkpoints
    assert not list((run / "ckpt").glob(".tmp_*"))
    resumed = in_process([*args, "--resume"])
    assert resumed.exit_code == 0 and f"done: {steps} steps" in resumed.output
    assert logged_steps(run) == list(range(1, steps + 1))
    assert same_weights(latest_checkpoint(runs / "ref"), latest_checkpoint(run))


def test_stop_on_signals_asks_once_for_sigterm_and_sigusr1_and_restores_the_handlers() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    seen = []
    with stop_on_signals(seen.append) as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # a second one while stopping: no change, and not fatal
        time.sleep(0.05)
    assert stop.signum == signal.SIGUSR1 and seen == [signal.SIGUSR1]
    assert {s: signal.getsignal(s) for s in before} == before


def test_interrupt_on_signals_raises_once() -> None:
    with pytest.raises(Interrupted) as info, interrupt_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert info.value.signum == signal.SIGTERM and isinstance(info.value, KeyboardInterrupt)


def _vote(rank: int, port: int, stop_at: int | None, out: multiprocessing.Queue) -> None:
    import torch.distributed as dist

    from i2i.training.distributed import StopVote, current

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    vote = StopVote(current())
    decided = next(step for step in range(1, 100) if vote(stop_at is not None and step >= stop_at))
    vote.close()
    out.put((rank, decided))
    dist.destroy_process_group()


def test_processes_agree_on_the_stop_step_when_only_one_got_the_signal() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_vote, args=(rank, port, 5 if rank == 1 else None, out)) for rank in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(out.get(timeout=5) for _ in procs) == [(0, 6), (1, 6)]  # the boundary after rank 1's request


def _photos(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


@pytest.mark.slow
def test_sigterm_during_translation_keeps_outputs_whole_and_the_rerun_completes(tmp_path: Path,
                                                                                paired_root: Path) -> None:
    runs = tmp_path / "runs"
    assert in_process(train_args(paired_root, runs, "t", "--max-steps", "1")).exit_code == 0
    src, dst, log = tmp_path / "in", tmp_path / "out", tmp_path / "log.txt"
    _photos(src, 300)
    args = ["translate", str(runs / "t"), str(src), str(dst), "--batch-size", "1", "--no-progress", "--device", "cpu"]
    proc = start(args, log)
    try:
        wait_until(lambda: dst.is_dir() and len(list(dst.glob("*.png"))) >= 3, proc, log)
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=60)
    finally:
        proc.kill()
    text = log.read_text()
    assert status == 143 and "interrupted by SIGTERM" in text and "translated " in text and "Traceback" not in text
    written = sorted(p for p in dst.iterdir() if p.name != RECORD)  # RECORD: the checkpoint that made them
    assert 3 <= len(written) < 300 and all(p.suffix == ".png" for p in written)  # no temp file left
    for p in written:
        with Image.open(p) as image:
            image.load()  # whole
    rerun = in_process(args)
    assert rerun.exit_code == 0 and f"skipped {len(written)} (already done)" in rerun.output, rerun.output
    assert len([p for p in dst.iterdir() if p.name != RECORD]) == 300


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_process_at_one_checkpointed_step(paired_root: Path, tmp_path: Path) -> None:
    """torchrun passes SIGTERM on to its processes: they agree on the stop step, rank 0 checkpoints it, and the run
    resumes from there on any process count."""
    runs, log = tmp_path / "runs", tmp_path / "log.txt"
    run = runs / "d"
    args = [*train_args(paired_root, runs, "d", "--max-steps", "100000", "--save-every", "0"), "--device", "cpu"]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 "-m", "i2i", *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        wait_until(lambda: len(logged_steps(run)) >= 3, proc, log, timeout=240)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    text = log.read_text()
    stopped = logged_steps(run)[-1]
    assert text.count(f"interrupted at step {stopped} by SIGTERM") == 2, text  # both processes, at one step
    assert (run / "latest").read_text() == f"step_{stopped:06d}" and not list((run / "ckpt").glob(".tmp_*"))
    assert "lost the others" not in text and f"done: {stopped} steps" in text
    resumed = in_process([*train_args(paired_root, runs, "d", "--max-steps", str(stopped + 2)), "--resume"])
    assert resumed.exit_code == 0 and f"done: {stopped + 2} steps" in resumed.output
