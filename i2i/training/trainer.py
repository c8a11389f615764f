"""The shared training loop for every model: device, precision, optimizers, schedule, logging, checkpoints.

Set-up happens in small functions called by `Trainer.__init__`, which validates every option and reads
what it needs but writes nothing; the run directory is created when `fit()` starts. `fit()` reads top to
bottom: take a batch, run the model's updates, then the every-N actions (log, samples, validation,
checkpoint).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from i2i.checkpoint.rundir import RunDir
from i2i.checkpoint.weights import (
    CKPT_DIR,
    CheckpointError,
    checkpoints_newest_first,
    load_into,
    load_state,
    load_weights,
    remove_partial_checkpoints,
    save_checkpoint,
    step_name,
    unwrap,
)
from i2i.config import RunConfig, TrainConfig, apply_recipe, non_finite, resume_changes
from i2i.data import make_dataset
from i2i.data.device_augment import DeviceAugment
from i2i.data.layout import DataError, resolve_split
from i2i.data.stream import BatchStream
from i2i.data.tensors import to_image
from i2i.models import Model, Update, build_model
from i2i.models.ema import EMA, EMA_SUFFIX
from i2i.nets.fast import gemm_convolutions, split_batchnorm
from i2i.runtime.devices import DTYPES, autocast, pick_device, resolve_precision
from i2i.runtime.process import import_dynamo, opencv_threads, training_flags
from i2i.runtime.signals import signal_name, stop_on_signals
from i2i.runtime.timeline import Timeline
from i2i.training import distributed
from i2i.training.finite import ADVICE, NonFiniteError, check_losses, nonfinite_networks, step_losses
from i2i.training.init_from import RESUME_CONFLICT, carry_record, init_networks
from i2i.training.report import build_report
from i2i.training.validation import Validator, default_best_metric, higher_is_better, metric_names


class RunError(RuntimeError):
    """The run cannot start or continue as asked (e.g. resuming with a different model)."""


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


@dataclass
class Placement:
    """Where and how the networks run."""

    device: torch.device
    precision: str  # fp32, bf16 or fp16 (resolved from "auto")
    memory_format: torch.memory_format

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]


# -- set-up ------------------------------------------------------------------------------------------

def place(t: TrainConfig) -> Placement:
    """The device, autocast precision and memory layout that `t` asks for (auto resolved)."""
    device = pick_device(t.device)
    precision = resolve_precision(t.precision, device, t.batch_size)
    if precision == "fp16" and device.type == "cpu":
        raise RunError("fp16 training needs CUDA; on the CPU use --precision bf16 or fp32")
    channels_last = device.type == "cuda" if t.channels_last is None else t.channels_last
    return Placement(device, precision, torch.channels_last if channels_last else torch.contiguous_format)


def check_options(cfg: RunConfig, model: Model, resume: bool = False) -> None:
    """Every problem with the options, found before anything is written or trained."""
    t = cfg.train
    problems = cfg.data.problems() + t.problems() + non_finite(cfg.model_config)
    if resume and t.init_from is not None and t.init_from_sha256 is None:  # a new source, not one the run recorded
        problems.append(RESUME_CONFLICT)
    if t.val_every:
        views = model.views()
        if not t.val_fid and not any(v.paired for v in views.values()):
            problems.append("validating an unpaired model compares distributions: add --val-fid")
        names = metric_names(views, t.val_fid)
        if t.best_metric is not None and t.best_metric not in names:
            problems.append(f"--best-metric {t.best_metric} is not among the validation metrics: {', '.join(names)}")
    if t.tensorboard and importlib.util.find_spec("tensorboard") is None:
        problems.append("--tensorboard needs the tensorboard package: pip install tensorboard")
    problems += shape_problems(cfg, model)
    if problems:
        raise RunError("invalid options:\n  " + "\n  ".join(problems))


CROPPING = ("resize_and_crop", "crop", "scale_width_and_crop")  # preprocess modes whose images are crop_size square
CHANNEL_OPTIONS = {"paired": "--input-channels/--output-channels", "unpaired": "--a-channels/--b-channels"}


def shape_problems(cfg: RunConfig, model: Model) -> list[str]:
    """Crops the generators cannot take and channel counts the data cannot be read as, each naming its options."""
    spec = model.data_spec()
    problems = []
    if any(c not in (1, 3) for c in spec.channels):
        problems.append(f"{CHANNEL_OPTIONS[spec.kind]} must each be 1 (gray) or 3 (RGB), got {spec.channels[0]} and "
                        f"{spec.channels[1]}")
    crop = cfg.data.crop_size
    if cfg.data.preprocess not in CROPPING:
        return problems
    for name in sorted(set(model.generators().values())):
        multiple = getattr(model.networks()[name], "size_multiple", 1)
        if crop % multiple:
            generator = model.generator_config(name).name
            problems.append(f"--crop-size {crop} does not fit --generator {generator} ({name}), which needs sides "
                            f"divisible by {multiple}: use --crop-size {max(multiple, crop // multiple * multiple)} "
                            "(and --load-size at least that) or another generator (unet_64 takes multiples of 64, "
                            "unet_128 of 128, resnet_* of 4)")
    return problems


OPTION_NAMES = {"data.root": "--data", "model": "the model (train pix2pix|cyclegan)"}  # where --x is not the field


def config_differences(saved: dict[str, Any], now: dict[str, Any], sections: Iterable[str],
                       ) -> list[tuple[str, Any, Any]]:
    """(option, saved value, value now) for each field of `sections` that differs; folders compare resolved."""
    def flat(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}").items()}
        return {prefix: value}

    def same(key: str, a: Any, b: Any) -> bool:
        if key == "data.root" and isinstance(a, str) and isinstance(b, str):
            return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
        return a == b

    found = []
    for section in sections:
        before, after = flat(saved.get(section), section), flat(now.get(section), section)
        for key in sorted(set(before) | set(after)):
            if not same(key, before.get(key), after.get(key)):
                field = key.split(".")[-1]
                option = OPTION_NAMES.get(key, f"--{field.replace('_', '-')} ({key})")
                found.append((option, before.get(key), after.get(key)))
    return found


def default_workers(device: torch.device, processes: int = 1) -> int:
    """DataLoader workers: on a small CPU box workers take cores from the model, so decode in-process.
    `processes` training processes on this machine share its cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = max(1, cores // processes)
    if device.type == "cpu":
        return 0 if cores <= 4 else min(4, cores // 4)
    return min(8, max(cores - 1, 0))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, constant_steps: int, decay_steps: int) -> float:
    """1.0 for `constant_steps`, then linear decay to 0 over `decay_steps`."""
    if step < constant_steps:
        return 1.0
    if decay_steps <= 0:
        return 0.0
    return max(0.0, 1.0 - (step - constant_steps) / decay_steps)


def build_in_background(cfg: RunConfig) -> Model:
    """The model, initialised while the data pipeline imports.

    Weight init is C++ work that releases the GIL: overlapping it with importing albumentations (~0.4 s)
    saves that much start-up. The model constructors import nothing, so the threads cannot deadlock.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        building = pool.submit(build_model, cfg)
        import i2i.data.transforms  # noqa: F401
        return building.result()


def make_optimizers(updates: list[Update], t: TrainConfig, steps_per_epoch: int, device: torch.device,
                    ) -> tuple[dict[str, torch.optim.Optimizer], dict[str, torch.optim.lr_scheduler.LambdaLR]]:
    """One Adam and one schedule (constant, then linear decay to zero, stepped per step) per update."""
    import_dynamo()  # the first optimizer imports it anyway; with the collector paused it is faster
    fused = device.type in ("cuda", "cpu")
    optimizers = {u.name: torch.optim.Adam(u.parameters, lr=t.lr, betas=(t.beta1, t.beta2), fused=fused)
                  for u in updates}
    constant, decay = t.schedule(steps_per_epoch)
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, constant, decay))
                  for name, opt in optimizers.items()}
    return optimizers, schedulers


def apply_optimizer_options(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                            t: TrainConfig) -> None:
    """A resumed run trains with the --lr and betas it was given, not those its loaded optimizer state holds; the
    schedule keeps its place (the current factor applies to the new rate). Unchanged values are left as loaded."""
    for i, group in enumerate(optimizer.param_groups):
        if group.get("initial_lr", t.lr) != t.lr:
            group["lr"] = t.lr * (group["lr"] / group["initial_lr"])
            group["initial_lr"] = t.lr
            scheduler.base_lrs[i] = t.lr
        if tuple(group["betas"]) != (t.beta1, t.beta2):
            group["betas"] = (t.beta1, t.beta2)


def make_validator(cfg: RunConfig, model: Model) -> Validator:
    t = cfg.train
    root = t.val_data or cfg.data.root
    split = resolve_split(Path(root), t.val_split, unpaired=model.data_spec().kind == "unpaired")
    return Validator(model, cfg.data, root, split, size=t.val_size, fid=t.val_fid)


def compile_networks(networks: Iterable[nn.Module], device: torch.device, mode: str = "default") -> None:
    """torch.compile each network in place (weights keep their names); fall back to eager with a message."""
    if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        warn("warning: --compile needs a C++ compiler on the CPU; none found, running eagerly")
        return
    for net in networks:
        net.compile(mode=mode)


def warn(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


# -- the trainer -------------------------------------------------------------------------------------

class Trainer:
    """Trains any registered model: the model lists its updates (see i2i/models/base.py), the trainer does
    the rest. Constructing one validates the options and prepares everything; `fit()` trains."""

    def __init__(self, cfg: RunConfig, resume: bool = False, progress: bool = True,
                 startup_seconds: float | None = None) -> None:
        """`startup_seconds`: what the process spent before training was asked for (the CLI passes its age)."""
        self.timeline = Timeline(startup=startup_seconds)
        with self.timeline.phase("setup"), opencv_threads(1):  # held again by fit(): see the workers below
            self._set_up(cfg, resume, progress)

    def _set_up(self, cfg: RunConfig, resume: bool, progress: bool) -> None:
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
        for net in self.model.networks().values():  # the speed swaps (i2i/nets/fast.py): same weights and maths
            split_batchnorm(gemm_convolutions(net))
        check_options(cfg, self.model, resume)
        self.model.to(self.place.device, memory_format=self.place.memory_format).train()
        self.resume = resume
        self._claim()
        self.dist.agree(self.resume_from and self.resume_from.name, "the checkpoint to resume",
                        hint=f"every process must see the run directory {self.run.path} (shared storage)")
        notes = init_networks(self.model, cfg) if self.resume_from is None else []
        for line in notes if self.dist.main else ():
            warn(line)
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
                                   seed=t.seed, workers=workers, start_method=start_method, warn=warn,
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

    def describe(self) -> list[str]:
        """What the run found and chose, printed before the progress bar (and by --dry-run)."""
        t, data = self.cfg.train, self.cfg.data
        kind = "pairs" if self.model.data_spec().kind == "paired" else "images (A and B, an epoch is the larger)"
        constant, decay = t.schedule(self.batches.steps_per_epoch)
        budget = f"--max-steps {t.max_steps}" + ("" if t.decay_steps is not None else ", decay: half of it")
        epochs = f"--epochs {t.epochs} --decay-epochs {t.decay_epochs}"
        why = budget if t.max_steps is not None and t.step_schedule else epochs
        cut = f"; stops at step {self.total_steps}" if self.total_steps < constant + decay else ""

        def chosen(asked: object, value: object) -> str:
            return f"{value} (auto)" if asked in (None, "auto") else f"{value}"

        start = (f"resumes {self.resume_from.name}" if self.resume_from is not None
                 else "resumes from step 0 (no checkpoint yet)" if self.resume else "a new run")
        return [
            f"data: {self.batches.size} {kind} in {data.root}, {self.batches.steps_per_epoch} steps per epoch "
            f"at batch {t.batch_size}",
            f"device: {chosen(t.device, self.device)}, precision {chosen(t.precision, self.precision)}, "
            f"workers {chosen(t.workers, self.workers)}",
            f"run: {self.run.path} ({start})",
            f"schedule: lr {t.lr:g} for {constant} steps, then linear decay to 0 over {decay} ({why}){cut}",
        ]

    def resolved(self) -> dict[str, Any]:
        """The run config with what `auto` and the defaults chose written in (device, precision, workers)."""
        d = self.cfg.to_dict()
        d["train"].update(device=str(self.device), precision=self.precision, workers=self.workers,
                          channels_last=self.place.memory_format == torch.channels_last)
        constant, decay = self.cfg.train.schedule(self.batches.steps_per_epoch)
        d["schedule"] = {"constant_steps": constant, "decay_steps": decay, "total_steps": self.total_steps,
                         "steps_per_epoch": self.batches.steps_per_epoch, "images": self.batches.size}
        return d

    @property
    def precision(self) -> str:
        return self.place.precision

    def _claim(self) -> None:
        """Check the run directory can be used as asked; again in fit(), once it holds the run's lock."""
        self.resume_from = self._checkpoint_to_resume() if self.resume else None
        if not self.resume and self.run.latest_checkpoint() is not None:
            raise RunError(f"{self.run.path} already holds a run (latest checkpoint "
                           f"{self.run.latest_checkpoint().name}); pass --resume to continue it or pick another --name")

    def _checkpoint_to_resume(self) -> Path | None:
        self.resume_notes: list[str] = []
        saved = self.run.saved_config()
        if saved is not None:
            now = self.cfg.to_dict()
            diffs = [f"{option}: the run has {before!r}, now {after!r}"
                     for option, before, after in config_differences(saved, now, ("model", "model_config", "data"))]
            if diffs:
                raise RunError("--resume needs the same model and data options as the run it continues; "
                               "differences:\n  " + "\n  ".join(diffs))
            carry_record(self.cfg.train, saved)
            self.resume_notes, refused = resume_changes(saved, self.cfg.train)
            if refused:
                raise RunError("--resume cannot change these options:\n  " + "\n  ".join(refused))
            if not saved.get("train", {}).get("step_schedule", False):  # its checkpoints follow the epoch schedule
                self.cfg.train.step_schedule = False
        return self.run.latest_checkpoint()

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> Summary:
        """Train until the step budget is spent, checkpointing along the way; resumable at any checkpoint."""
        t, timeline = self.cfg.train, self.timeline

        def stopping(signum: int) -> None:
            if self.dist.main:
                warn(f"\n{signal_name(signum)}: stopping after this step and writing a checkpoint "
                     "(Ctrl-C again to stop at once)")

        lock = self.run.lock() if self.dist.main else contextlib.nullcontext()  # rank 0 holds the run directory
        bars = contextlib.ExitStack()  # closes the bar before an error is printed (else the bar is redrawn after it)
        with training_flags(self.device, t.deterministic, t.compile), lock, stop_on_signals(stopping) as stop, bars:
            with timeline.phase("run_directory"):
                if self.dist.main:
                    self._claim()
                self._start()
            for line in self.describe() if self.dist.main else ():
                warn(line)
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
                self.run.write_timings(timings)
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
    def _start(self) -> None:
        """Continue the checkpoint to resume, or start fresh; (re)write config.json."""
        if self.dist.main:
            remove_partial_checkpoints(self.run.path)  # left by a kill; this process holds the run's lock
        if self.resume_from is not None:
            self._load_newest_good()
            for note in self.resume_notes if self.dist.main else ():
                warn(f"note: {note}")
        elif self.resume and self.dist.main:  # killed before its first checkpoint: nothing to load, so start over
            warn(f"note: {self.run.path} has no checkpoint yet; starting from step 0")
        if not self.dist.main:  # rank 0 alone writes the run directory
            return
        if self.resume:
            self.run.cut_metrics(after_step=self.step if self.resume_from is not None else -1)
        self.run.write_config(self.cfg.to_dict())
        changed = self.run.data_changes(self.cfg.data.root, self.dataset.file_list())
        if changed and self.resume:
            warn(f"note: {changed}")
        if self.cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.run.path / "tensorboard"))

    def _state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step, **self.batches.state_dict(),
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "model": self.model.training_state(),
            "rng": rng,
            "best": self.best or {},
            "ema_updates": {name: ema.num_updates for name, ema in self.emas.items()},
        }

    def save(self, name: str | None = None) -> Path:
        """Checkpoint the run (ckpt/step_N, or ckpt/NAME) and refresh report.html."""
        with self.timeline.phase("checkpoints"):
            return self._save(name)

    def _save(self, name: str | None) -> Path:
        self._check_finite_weights()  # on every process: DDP keeps their weights equal, so they all agree
        if not self.dist.main:  # rank 0 writes; the others only say where it goes
            return self.run.path / CKPT_DIR / (name or step_name(self.step))
        networks = {**self.model.networks(), **{f"{name}{EMA_SUFFIX}": ema.module for name, ema in self.emas.items()}}
        path = save_checkpoint(self.run.path, self.step, networks, self._state(), self.cfg.to_dict(),
                               keep_last=self.cfg.train.keep_last, name=name)
        if name is None:
            self.last_save = time.perf_counter()
        try:
            build_report(self.run.path)
        except Exception as err:  # the report is a view: never let it stop training
            warn(f"warning: could not rebuild the report: {err}")
        return path

    def _check_finite_weights(self) -> None:
        """Never checkpoint NaN or infinite weights (nor let --keep-last rotate a finite checkpoint out for them)."""
        networks = {**self.model.networks(), **{f"{name}{EMA_SUFFIX}": ema.module for name, ema in self.emas.items()}}
        bad = nonfinite_networks({name: unwrap(net) for name, net in networks.items()})
        if bad:
            kept = self.run.latest_checkpoint()
            raise NonFiniteError(f"training stopped at step {self.step}: the weights of {', '.join(bad)} are not "
                                 f"finite (NaN or infinity), so no checkpoint was written"
                                 f"{f' ({kept.name} is kept)' if kept else ''}; {ADVICE}")

    def _load_newest_good(self) -> None:
        """Load the newest checkpoint that loads, saying which ones were skipped and why."""
        problems = []
        for ckpt in checkpoints_newest_first(self.run.path):
            try:
                self._load(ckpt)
            except CheckpointError as err:
                problems.append(f"{ckpt.name}: {err}")
                warn(f"warning: skipping checkpoint {ckpt.name}: {err}")
                continue
            if problems:
                warn(f"note: resuming from {ckpt.name}, the newest checkpoint that loads")
            return
        raise RunError(f"no checkpoint of {self.run.path} can be loaded:\n  " + "\n  ".join(problems))

    def _load(self, ckpt: Path) -> None:
        """Every file is read and checked before anything is applied (CheckpointError names a bad one)."""
        weights = {name: load_weights(ckpt / f"{name}.safetensors") for name in self.model.networks()}
        averages = {name: load_weights(f) for name in self.emas
                    if (f := ckpt / f"{name}{EMA_SUFFIX}.safetensors").is_file()}
        state = load_state(ckpt)
        for name, net in self.model.networks().items():
            load_into(unwrap(net), weights[name], ckpt / f"{name}.safetensors")
        try:
            self._apply_state(state)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
            raise CheckpointError(f"{ckpt / 'state.pt'} does not fit this run: {type(err).__name__}: {err}") from err
        for name, ema in self.emas.items():
            if name in averages:
                ema.load_state_dict(averages[name], state.get("ema_updates", {}).get(name, 0))
            else:  # --ema-decay added on resume
                warn(f"note: {ckpt.name} has no {name}{EMA_SUFFIX}; the EMA of {name} starts from its current weights")
                ema.load_state_dict(self.model.networks()[name].state_dict(), 0)

    def _apply_state(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.batches.load_state_dict(state)
        self.best = state.get("best") or None
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            scheduler = self.schedulers[name]
            scheduler.load_state_dict(state["schedulers"][name])
            apply_optimizer_options(optimizer, scheduler, self.cfg.train)
            # the rate for the next step under this run's schedule (the saved one, unless the budget changed)
            for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas,
                                           strict=True):
                group["lr"] = base * factor(scheduler.last_epoch)
        self.scaler.load_state_dict(state["scaler"])
        self.model.load_training_state(state["model"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    # -- every-N actions ---------------------------------------------------------------------------
    def _log(self, meter: LossMeter, bar: tqdm) -> dict[str, float]:
        """Average the window's losses (one host sync), append them to metrics.jsonl, update the bar."""
        since = self.step - meter.steps + 1
        losses, images_per_s = meter.flush(reduce=self.dist.mean)  # the mean over the processes
        check_losses(losses, f"at step {self.step}" if since == self.step else f"in steps {since}-{self.step}")
        images_per_s *= self.dist.world
        lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        self._record({"step": self.step, "epoch": self.batches.epoch, **losses, "lr": lr,
                      "images_per_s": images_per_s})
        bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if "_" not in k} | {"img/s": f"{images_per_s:.2f}"})
        return losses

    def _record(self, record: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        self.run.append_metrics(record)
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in ("step", "epoch"):
                    self.tensorboard.add_scalar(key, value, self.step)

    def _validate(self) -> dict[str, float]:
        """Score the held-out subset, log it, and keep ckpt/best when the chosen metric improved."""
        scores = self.validator(self.model, self.device, self.place.dtype,
                                {name: ema.module for name, ema in self.emas.items()})
        self._record({"step": self.step, "epoch": self.batches.epoch, **scores})
        metric = self.cfg.train.best_metric or default_best_metric(list(scores))
        value = scores[metric]
        better = self.best is None or (value > self.best["value"] if higher_is_better(metric)
                                       else value < self.best["value"])
        if better:
            self.best = {"metric": metric, "value": value, "step": self.step}
            self._save(name="best")  # timed as validation, which this is part of
            self.run.write_best(self.best)
        return scores

    def _write_samples(self, images: dict[str, torch.Tensor]) -> None:
        grid = sample_grid(images)
        self.run.write_samples(self.step, grid)
        if self.tensorboard is not None:
            self.tensorboard.add_image("samples", grid, self.step, dataformats="HWC")


class LossMeter:
    """Sums losses on the device between log lines: no host sync per step, one per `flush`."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.images, self.start = 0, 0, time.perf_counter()

    def add(self, losses: dict[str, torch.Tensor], images: int) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v.float() if k in self.sums else v.float()
        self.steps, self.images = self.steps + 1, self.images + images

    def flush(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> tuple[dict[str, float], float]:
        """The mean of each loss since the last flush (passed through `reduce` before the one host sync), and
        the images per second over that window."""
        keys = list(self.sums)
        values = reduce(torch.stack([self.sums[k] for k in keys]).div(self.steps)).tolist() if keys else []
        images_per_s = self.images / max(time.perf_counter() - self.start, 1e-9)
        self._reset()
        return dict(zip(keys, values, strict=True)), images_per_s


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


def sample_grid(images: dict[str, torch.Tensor], max_rows: int = 4) -> np.ndarray:
    """Rows = samples, columns = the named images side by side (gray shown as RGB)."""
    from torchvision.utils import make_grid

    n = min(max_rows, next(iter(images.values())).shape[0])
    tiles = [img[i].expand(3, -1, -1) if img.shape[1] == 1 else img[i] for i in range(n) for img in images.values()]
    return to_image(make_grid(torch.stack(tiles), nrow=len(images), padding=0))


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
            tqdm.write(group.describe(t.batch_size, t.lr))
        return Trainer(cfg, resume=resume, progress=progress, startup_seconds=startup_seconds).fit()
