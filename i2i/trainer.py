"""The shared training loop for every model: device, precision, optimizers, schedule, logging, checkpoints.

Set-up happens in small functions called by `Trainer.__init__`, which validates every option and reads
what it needs but writes nothing; the run directory is created when `fit()` starts. `fit()` reads top to
bottom: take a batch, run the model's updates, then the every-N actions (log, samples, validation,
checkpoint).
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
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

from i2i import distributed
from i2i.checkpoint import CKPT_DIR, load_state, load_weights, save_checkpoint, step_name, unwrap
from i2i.config import RunConfig, TrainConfig
from i2i.data import make_dataset
from i2i.data.device_augment import DeviceAugment
from i2i.data.layout import DataError, resolve_split
from i2i.data.stream import BatchStream
from i2i.data.tensors import to_image
from i2i.devices import DTYPES, autocast, pick_device, resolve_precision
from i2i.models import Model, Update, build_model
from i2i.process import import_dynamo, training_flags
from i2i.report import build_report
from i2i.rundir import RunDir
from i2i.validation import Validator, default_best_metric, higher_is_better, metric_names


class RunError(RuntimeError):
    """The run cannot start or continue as asked (e.g. resuming with a different model)."""


@dataclass
class Summary:
    """What a finished `fit()` reports."""

    run_dir: Path
    checkpoint: Path
    steps: int
    epochs: int
    seconds: float
    images_per_s: float
    skipped: int
    losses: dict[str, float]

    def line(self) -> str:
        losses = " ".join(f"{k}={v:.4g}" for k, v in self.losses.items())
        return (f"done: {self.steps} steps ({self.epochs} epochs) in {self.seconds:.1f} s, "
                f"{self.images_per_s:.2f} img/s, {self.skipped} unreadable images skipped; {losses}; "
                f"checkpoint {self.checkpoint}")


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
    precision = resolve_precision(t.precision, device)
    if precision == "fp16" and device.type == "cpu":
        raise RunError("fp16 training needs CUDA; on the CPU use --precision bf16 or fp32")
    channels_last = device.type == "cuda" if t.channels_last is None else t.channels_last
    return Placement(device, precision, torch.channels_last if channels_last else torch.contiguous_format)


def check_options(cfg: RunConfig, model: Model) -> None:
    """Every problem with the options, found before anything is written or trained."""
    t = cfg.train
    problems = cfg.data.problems() + t.problems()
    if t.val_every:
        views = model.views()
        if not t.val_fid and not any(v.paired for v in views.values()):
            problems.append("validating an unpaired model compares distributions: add --val-fid")
        names = metric_names(views, t.val_fid)
        if t.best_metric is not None and t.best_metric not in names:
            problems.append(f"--best-metric {t.best_metric} is not among the validation metrics: {', '.join(names)}")
    if t.tensorboard and importlib.util.find_spec("tensorboard") is None:
        problems.append("--tensorboard needs the tensorboard package: pip install tensorboard")
    if problems:
        raise RunError("invalid options:\n  " + "\n  ".join(problems))


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
    constant, decay = t.epochs * steps_per_epoch, t.decay_epochs * steps_per_epoch
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, constant, decay))
                  for name, opt in optimizers.items()}
    return optimizers, schedulers


def make_validator(cfg: RunConfig, model: Model) -> Validator:
    t = cfg.train
    root = t.val_data or cfg.data.root
    split = resolve_split(Path(root), t.val_split, unpaired=model.data_spec().kind == "unpaired")
    return Validator(model, cfg.data, root, split, size=t.val_size, fid=t.val_fid)


def compile_networks(networks: Iterable[nn.Module], device: torch.device) -> None:
    """torch.compile each network in place (weights keep their names); fall back to eager with a message."""
    if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        warn("warning: --compile needs a C++ compiler on the CPU; none found, running eagerly")
        return
    for net in networks:
        net.compile()


def warn(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


# -- the trainer -------------------------------------------------------------------------------------

class Trainer:
    """Trains any registered model: the model lists its updates (see i2i/models/base.py), the trainer does
    the rest. Constructing one validates the options and prepares everything; `fit()` trains."""

    def __init__(self, cfg: RunConfig, resume: bool = False, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        t = cfg.train
        self.dist = distributed.current()  # one process, or one of several (torchrun; see i2i/distributed.py)
        self.place = place(t)
        self.place.device = self.dist.device(self.place.device)
        seed_everything(t.seed)
        self.model = build_in_background(cfg)
        check_options(cfg, self.model)
        self.model.to(self.place.device, memory_format=self.place.memory_format).train()
        distributed.distribute(self.model, self.dist, self.place.device, sync_bn=t.sync_bn)
        if t.compile:
            compile_networks(self.model.networks().values(), self.place.device)

        workers = default_workers(self.place.device, self.dist.local_world) if t.workers is None else t.workers
        self.batches = BatchStream(make_dataset(self.model.data_spec(), cfg.data), batch_size=t.batch_size,
                                   seed=t.seed, workers=workers, pin_memory=self.place.device.type == "cuda",
                                   warn=warn, rank=self.dist.rank, world=self.dist.world)
        self.augment = DeviceAugment(cfg.data) if cfg.data.augment_on == "device" else None
        schedule_steps = (t.epochs + t.decay_epochs) * self.batches.steps_per_epoch
        self.total_steps = t.max_steps if t.max_steps is not None else schedule_steps

        self.updates = self.model.updates()
        self.optimizers, self.schedulers = make_optimizers(self.updates, t, self.batches.steps_per_epoch,
                                                           self.place.device)
        self.scaler = torch.amp.GradScaler(self.place.device.type, enabled=self.place.precision == "fp16")
        self.validator = make_validator(cfg, self.model) if t.val_every and self.dist.main else None

        self.run = RunDir(cfg.run_dir)
        self.resume = resume
        self.resume_from = self._checkpoint_to_resume() if resume else None
        if not resume and self.run.latest_checkpoint() is not None:
            raise RunError(f"{self.run.path} already holds a run (latest checkpoint "
                           f"{self.run.latest_checkpoint().name}); pass --resume to continue it or pick another --name")
        self.dist.agree(self.resume_from and self.resume_from.name, "the checkpoint to resume",
                        hint=f"every process must see the run directory {self.run.path} (shared storage)")
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

    def _checkpoint_to_resume(self) -> Path | None:
        saved = self.run.saved_config()
        if saved is not None:
            now = self.cfg.to_dict()
            diffs = [f"{section}: saved {saved.get(section)} != now {now[section]}"
                     for section in ("model", "model_config", "data") if saved.get(section) != now[section]]
            if diffs:
                raise RunError("--resume needs the same model and data options as the run it continues; "
                               "differences:\n  " + "\n  ".join(diffs))
        return self.run.latest_checkpoint()

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> Summary:
        """Train until the step budget is spent, checkpointing along the way; resumable at any checkpoint."""
        t = self.cfg.train
        with training_flags(self.device, t.deterministic, t.compile):
            self._start()
            self.dist.seed(t.seed, self.step)
            started, start_step = time.perf_counter(), self.step
            meter, last = LossMeter(), {}
            bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.progress and self.dist.main),
                       unit="step", dynamic_ncols=True)
            for batch in self._device_batches() if self.step < self.total_steps else ():
                losses, fakes = self.train_step(batch)
                self.step += 1
                meter.add(losses, images=next(iter(batch.values())).shape[0])
                bar.update(1)
                if self.step % t.log_every == 0 or self.step == self.total_steps:
                    last = self._log(meter, bar)
                if t.sample_every and self.step % t.sample_every == 0 and self.dist.main:
                    self._write_samples(self.model.samples(batch, fakes))
                if t.val_every and self.step % t.val_every == 0 and self.dist.main:
                    self._validate()
                if self.step == self.total_steps:
                    break
                if self._checkpoint_due():
                    self.save()
            bar.close()
            checkpoint = self.save()
            if self.tensorboard is not None:
                self.tensorboard.close()
        seconds = time.perf_counter() - started
        images = (self.step - start_step) * t.batch_size * self.dist.world
        return Summary(self.run.path, checkpoint, self.step, self.batches.epoch, seconds,
                       images / max(seconds, 1e-9), len(self.batches.skipped), last)

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
        if self.resume_from is not None:
            self._load(self.resume_from)
        elif self.resume and self.dist.main:  # killed before its first checkpoint: nothing to load, so start over
            warn(f"note: {self.run.path} has no checkpoint yet; starting from step 0")
        if not self.dist.main:  # rank 0 alone writes the run directory
            return
        if self.resume:
            self.run.cut_metrics(after_step=self.step if self.resume_from is not None else -1)
        self.run.write_config(self.cfg.to_dict())
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
        }

    def save(self, name: str | None = None) -> Path:
        """Checkpoint the run (ckpt/step_N, or ckpt/NAME) and refresh report.html (rank 0 writes, the others
        only return where it goes)."""
        if not self.dist.main:
            return self.run.path / CKPT_DIR / (name or step_name(self.step))
        path = save_checkpoint(self.run.path, self.step, self.model.networks(), self._state(),
                               self.cfg.to_dict(), keep_last=self.cfg.train.keep_last, name=name)
        if name is None:
            self.last_save = time.perf_counter()
        try:
            build_report(self.run.path)
        except Exception as err:  # the report is a view: never let it stop training
            warn(f"warning: could not rebuild the report: {err}")
        return path

    def _load(self, ckpt: Path) -> None:
        for name, net in self.model.networks().items():
            unwrap(net).load_state_dict(load_weights(ckpt / f"{name}.safetensors"))
        state = load_state(ckpt)
        self.step = state["step"]
        self.batches.load_state_dict(state)
        self.best = state.get("best") or None
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])
        self.model.load_training_state(state["model"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    # -- every-N actions ---------------------------------------------------------------------------
    def _log(self, meter: LossMeter, bar: tqdm) -> dict[str, float]:
        """Average the window's losses (one host sync), append them to metrics.jsonl, update the bar."""
        losses, images_per_s = meter.flush(reduce=self.dist.mean)  # the mean over the processes
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
        scores = self.validator(self.model, self.device, self.place.dtype)
        self._record({"step": self.step, "epoch": self.batches.epoch, **scores})
        metric = self.cfg.train.best_metric or default_best_metric(list(scores))
        value = scores[metric]
        better = self.best is None or (value > self.best["value"] if higher_is_better(metric)
                                       else value < self.best["value"])
        if better:
            self.best = {"metric": metric, "value": value, "step": self.step}
            self.save(name="best")
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
    rows = []
    n = min(max_rows, next(iter(images.values())).shape[0])
    for i in range(n):
        cols = [to_image(img[i].expand(3, -1, -1) if img.shape[1] == 1 else img[i]) for img in images.values()]
        rows.append(np.concatenate(cols, axis=1))
    return np.concatenate(rows, axis=0)


def train(cfg: RunConfig, resume: bool = False, progress: bool = True) -> Summary:
    """Train the run `cfg` describes (the Python twin of `i2i train`), on this process alone or, under torchrun,
    as one of several (README: "Several GPUs and machines")."""
    t = cfg.train
    with distributed.session(t.device, t.dist_timeout, again="Run the same command with --resume to continue "
                             "from the last checkpoint, on any number of processes.") as group:
        if group.active and group.main:
            tqdm.write(group.describe(t.batch_size, t.lr))
        return Trainer(cfg, resume=resume, progress=progress).fit()
