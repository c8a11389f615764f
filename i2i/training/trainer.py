"""The shared training loop for every model: `fit()` reads top to bottom (take a batch, run the model's updates, then
the every-N actions: log, samples, validation, checkpoint). `Trainer.__init__` validates every option and reads what
it needs but writes nothing; the run directory is created when `fit()` starts. Its parts: training/setup.py (devices,
optimizers, schedule, checks), state.py (resume and checkpoints), events.py (logging, samples, validation)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from i2i.checkpoint.rundir import RunDir
from i2i.checkpoint.weights import (
    remove_partial_checkpoints,
    unwrap,
)
from i2i.config import RunConfig, apply_recipe
from i2i.data import make_dataset, with_palette
from i2i.data.device_augment import DeviceAugment
from i2i.data.layout import DataError
from i2i.data.stream import BatchStream
from i2i.models.ema import EMA
from i2i.runtime.devices import autocast
from i2i.runtime.process import opencv_threads, training_flags
from i2i.runtime.signals import signal_name, stop_on_signals
from i2i.runtime.timeline import Timeline
from i2i.training import distributed, speed
from i2i.training.events import LossMeter, RunEvents
from i2i.training.finite import check_losses, step_losses
from i2i.training.init_from import init_networks
from i2i.training.setup import (
    build_in_background,
    check_options,
    compile_networks,
    default_workers,
    make_optimizers,
    make_validator,
    place,
    seed_everything,
)
from i2i.training.state import CheckpointState, RunError

log = logging.getLogger(__name__)  # start-up lines at INFO (the `i2i` command prints them), warnings at WARNING


class TrainingInterrupted(KeyboardInterrupt):
    """A stop signal (Ctrl-C, SIGTERM, SIGUSR1) stopped `fit()` after a step; a checkpoint of that step was written.
    `summary` is what the run did until then, `signum` the signal (the exit status is 128 + it)."""

    def __init__(self, step: int, checkpoint: Path, signum: int = signal.SIGINT,
                 summary: Summary | None = None) -> None:
        super().__init__(f"interrupted at step {step} by {signal_name(signum)}; checkpoint {checkpoint} written")
        self.step, self.checkpoint, self.signum, self.summary = step, checkpoint, signum, summary

    def time_line(self) -> str:
        return time_line(self.summary.timings if self.summary else {})


def time_line(timings: dict[str, float]) -> str:
    """Where a process's time went: `time: startup 4.3 s, setup 1.2 s, ...`."""
    return "time: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in timings.items())


@dataclass
class Summary:
    """What a finished `fit()` reports."""

    run_dir: Path
    checkpoint: Path
    steps: int  # the run's step count, over every process that trained it
    epochs: float  # the run's completed epochs (steps / steps per epoch)
    seconds: float  # this process's training loop only
    images_per_s: float
    skipped: int
    losses: dict[str, float]
    timings: dict[str, float]  # seconds per phase (RUN/timings.json)
    start_step: int = 0  # where this process started (> 0 after --resume)

    def line(self) -> str:
        losses = " ".join(f"{k}={v:.4g}" for k, v in self.losses.items())
        this = f"{self.steps - self.start_step} steps in {self.seconds:.1f} s, {self.images_per_s:.2f} img/s"
        run = f"{self.steps} steps ({self.epochs:.3g} epochs)"
        if self.start_step:
            run = f"{run}; this process resumed at step {self.start_step}: {this}"
        else:
            run = f"{run} in {self.seconds:.1f} s, {self.images_per_s:.2f} img/s"
        return f"done: {run}, {self.skipped} unreadable images skipped; {losses}; checkpoint {self.checkpoint}"

    def time_line(self) -> str:
        return time_line(self.timings)


# -- the trainer -------------------------------------------------------------------------------------

class Trainer(CheckpointState, RunEvents):
    """Trains any registered model: the model lists its updates (see i2i/models/base.py), the trainer does
    the rest. Constructing one validates the options and prepares everything; `fit()` trains."""

    def __init__(self, cfg: RunConfig, resume: bool = False, progress: bool = True,
                 startup_seconds: float | None = None) -> None:
        """`startup_seconds`: what the process spent before training was asked for (the CLI passes its age)."""
        self.timeline = Timeline(startup=startup_seconds)
        with self.timeline.phase("setup"), opencv_threads(1):  # held again by fit(): see the workers below
            self._set_up(cfg, resume, progress)

    def _set_up(self, cfg: RunConfig, resume: bool, progress: bool) -> None:
        # a copy: what resume and measuring fill in (recorded options, the speed verdict) stays out of the caller's
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train))
        self.cfg, self.progress = cfg, progress
        t = cfg.train
        self.dist = distributed.current()  # one process, or one of several (torchrun; see i2i/training/distributed.py)
        self.run = RunDir(cfg.run_dir)
        if self.dist.main:  # rank 0 alone holds the run directory
            self.run.check_unlocked()  # another process trains there now: say so before building anything
        self.place = place(t)
        self.place.device = self.dist.device(self.place.device)
        seed_everything(t.seed)
        self.model = build_in_background(cfg)
        check_options(cfg, self.model, resume)
        if cfg.data.label_nc:  # the class colours are part of the run: recorded in config.json and checkpoints
            try:
                cfg = self.cfg = dataclasses.replace(cfg, data=with_palette(cfg.data, self.model.data_spec()))
            except (ValueError, OSError) as err:
                raise RunError(f"--label-nc: {err}") from err
        self.resume = resume
        self._claim()
        self.dist.agree(self.resume_from and self.resume_from.name, "the checkpoint to resume",
                        hint=f"every process must see the run directory {self.run.path} (shared storage)")
        # precision, layout and the speed swaps: measured here unless typed (part of "setup" in timings.json)
        chosen, t.speed = speed.choose(cfg, self.model, self.place.device, self.dist, sync_bn=t.sync_bn)
        self.place.precision, self.place.memory_format = chosen.precision, chosen.memory_format
        self.speed = chosen
        speed.apply(self.model, chosen)
        self.model.to(self.place.device, memory_format=self.place.memory_format).train()
        notes = init_networks(self.model, cfg) if self.resume_from is None else []
        for line in notes if self.dist.main else ():
            log.info(line)
        distributed.distribute(self.model, self.dist, self.place.device, sync_bn=t.sync_bn)
        # shadow copies of the generators (used by validation and, from checkpoints, by inference)
        self.emas = {name: EMA(unwrap(self.model.networks()[name]), t.ema_decay)
                     for name in sorted(set(self.model.generators().values()))} if t.ema_decay else {}
        if t.compile:
            compile_networks(self.model.networks().values(), self.place.device, t.compile_mode)

        workers = default_workers(self.place.device, self.dist.local_world) if t.workers is None else t.workers
        # No pinned memory (the reference pins none: page-locking is slow in virtual machines and a batch is a
        # few MB). On CUDA workers start from a fork server, never forked from the CUDA-initialised trainer; on
        # the CPU they are forked (no main-module guard needed in users' scripts), which is safe because this
        # process keeps OpenCV single-threaded from here on (a fork taken while one of OpenCV's pool threads
        # holds a lock hangs the worker: seen with a pool started by earlier in-process loading).
        start_method = "forkserver" if self.device.type == "cuda" else None
        self.dataset = make_dataset(self.model.data_spec(), cfg.data)
        self.batches = BatchStream(self.dataset, batch_size=t.batch_size,
                                   seed=t.seed, workers=workers, start_method=start_method,
                                   rank=self.dist.rank, world=self.dist.world)
        self.augment = DeviceAugment(cfg.data) if cfg.data.augment_on == "device" else None
        schedule_steps = (t.epochs + t.decay_epochs) * self.batches.steps_per_epoch
        self.total_steps = t.max_steps if t.max_steps is not None else schedule_steps

        self.workers = workers
        self.updates = self.model.updates()
        self.optimizers, self.schedulers = make_optimizers(self.updates, t, self.batches.steps_per_epoch,
                                                           self.place.device)
        self.scaler = torch.amp.GradScaler(self.place.device.type, enabled=self.place.precision == "fp16")
        self.validator = make_validator(cfg, self.model) if t.val_every and self.dist.main else None

        self.step = 0
        self.best: dict[str, Any] | None = None  # {"metric", "value", "step"} of ckpt/best
        self.last_save = time.perf_counter()
        self.tensorboard = None

    @property
    def device(self) -> torch.device:
        return self.place.device

    @property
    def precision(self) -> str:
        return self.place.precision

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> Summary:
        """Train until the step budget is spent, checkpointing along the way; resumable at any checkpoint."""
        t, timeline = self.cfg.train, self.timeline

        def stopping(signum: int) -> None:
            if self.dist.main:
                log.warning(f"\n{signal_name(signum)}: stopping after this step and writing a checkpoint "
                            "(Ctrl-C again to stop at once)")

        lock = self.run.lock() if self.dist.main else contextlib.nullcontext()  # rank 0 holds the run directory
        bars = contextlib.ExitStack()  # closes the bar before an error is printed (else the bar is redrawn after it)
        with training_flags(self.device, t.deterministic, t.compile), lock, stop_on_signals(stopping) as stop, bars:
            with timeline.phase("run_directory"):
                if self.dist.main:
                    self._claim()
                self._start()
            for line in self.describe() if self.dist.main else ():
                log.info(line)
            self.dist.seed(t.seed, self.step)
            started, start_step = time.perf_counter(), self.step
            meter, last = LossMeter(), {}
            bar = bars.enter_context(tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                                          disable=not (self.progress and self.dist.main)))
            batches = self._device_batches()
            vote, stopped = distributed.StopVote(self.dist), False  # every process stops at the same step
            for batch in timeline.timed(batches, "data", first="data_start") if self.step < self.total_steps else ():
                with timeline.phase("first_step" if self.step == start_step else "steps"):
                    losses, fakes = self.train_step(batch)
                self.step += 1
                if self.step == start_step + 1:  # the one host sync outside logging: a broken run stops at once
                    check_losses(step_losses(losses, self.dist.mean), f"at step {self.step}, the first of this run")
                meter.add(losses, images=next(iter(batch.values())).shape[0])
                bar.update(1)
                if self.step % t.log_every == 0 or self.step == self.total_steps:
                    with timeline.phase("logging"):
                        last = self._log(meter, bar)
                if t.sample_every and self.step % t.sample_every == 0 and self.dist.main:
                    with timeline.phase("samples"):
                        self._write_samples(self.model.samples(batch, fakes))
                if t.val_every and self.step % t.val_every == 0 and self.dist.main:
                    with timeline.phase("validation"):
                        self._validate()
                if self.step == self.total_steps:
                    break
                if vote(stop.requested):
                    stopped = True
                    break
                if self._checkpoint_due():
                    self.save()
            vote.close()
            bar.close()
            checkpoint = self.save()
            if self.dist.main:
                remove_partial_checkpoints(self.run.path)
            seconds = time.perf_counter() - started
            with timeline.phase("shutdown"):
                batches.close()
                self.batches.close()  # worker processes end here, not at interpreter exit
                if self.tensorboard is not None:
                    self.tensorboard.close()
            timings = timeline.report()
            if self.dist.main:
                self.run.write_timings(timings, speed=t.speed and t.speed.get("summary"))
        images = (self.step - start_step) * t.batch_size * self.dist.world
        summary = Summary(self.run.path, checkpoint, self.step, self.step / self.batches.steps_per_epoch, seconds,
                          images / max(seconds, 1e-9), len(self.batches.skipped), last, timings, start_step)
        if stopped:  # a process that got no signal itself stops with the others, as if told by SIGTERM
            raise TrainingInterrupted(self.step, checkpoint, stop.signum or signal.SIGTERM, summary)
        return summary

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One generator forward, then each update in the model's order; returns the losses and the fakes."""
        with self.autocast():
            fakes = self.model.generate(batch)
        losses: dict[str, torch.Tensor] = {}
        for update in self.updates:
            with self.autocast():
                out = update.loss(batch, fakes)
            optimizer = self.optimizers[update.name]
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(out["loss"]).backward()
            self.scaler.step(optimizer)
            losses[update.name] = out["loss"].detach()
            losses.update({k: v.detach() for k, v in out.items() if k != "loss"})
        self.scaler.update()
        for scheduler in self.schedulers.values():
            scheduler.step()
        for ema in self.emas.values():
            ema.update()
        return losses, fakes

    def autocast(self) -> torch.autocast:
        return autocast(self.device, self.place.dtype)

    def _device_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """The stream's batches on the training device (augmented there with --augment-on device)."""
        try:
            for raw in self.batches:
                if self.augment is not None:
                    yield self.augment(raw, self.device, self.place.memory_format)
                else:
                    yield to_device(raw, self.device, self.place.memory_format)
        except DataError as err:
            raise RunError(f"{err} ({self.cfg.data.root})") from err

    def _checkpoint_due(self) -> bool:
        t = self.cfg.train
        due = t.save_every and self.step % t.save_every == 0
        overdue = t.save_minutes and time.perf_counter() - self.last_save > 60 * t.save_minutes
        return bool(due or overdue)

    # -- run directory and checkpoints --------------------------------------------------------------
    # -- every-N actions ---------------------------------------------------------------------------


def to_device(batch: dict, device: torch.device,
              memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, torch.Tensor]:
    """The batch's tensors on `device` (paths and skip lists stay behind)."""
    for key, value in batch.items():
        if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            sizes = sorted({tuple(v.shape[-2:]) for v in value})
            raise RunError(f"images of different sizes {sizes} met in one batch ({key!r}): use --batch-size 1, "
                           "or a --preprocess mode that crops to one size")
    return {k: v.to(device, non_blocking=True, memory_format=memory_format)
            for k, v in batch.items() if isinstance(v, torch.Tensor)}


def dry_run(cfg: RunConfig, resume: bool = False) -> str:
    """The resolved config and what the run would find and choose, after every check a run makes; writes nothing."""
    trainer = Trainer(cfg, resume=resume, progress=False)
    trainer.batches.close()
    return json.dumps(trainer.resolved() | {"found": trainer.describe()}, indent=2)


def train(cfg: RunConfig, resume: bool = False, progress: bool = True, startup_seconds: float | None = None,
          ) -> Summary:
    """Train the run `cfg` describes (the Python twin of `i2i train`), on this process alone or, under torchrun,
    as one of several (README: "Several GPUs and machines"). A recipe not yet applied fills the fields still at
    their defaults (`config.apply_recipe`); a resumed run keeps the values it recorded."""
    cfg = cfg if resume else apply_recipe(cfg)
    t = cfg.train
    with distributed.session(t.device, t.dist_timeout, again="Run the same command with --resume to continue "
                             "from the last checkpoint, on any number of processes.") as group:
        if group.active and group.main:
            log.info(group.describe(t.batch_size, t.lr))
        return Trainer(cfg, resume=resume, progress=progress, startup_seconds=startup_seconds).fit()
