"""The shared training loop for every model: device, precision, optimizers, schedule, logging, checkpoints."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from i2i.checkpoint import latest_checkpoint, load_state, load_weights, save_checkpoint
from i2i.config import RunConfig
from i2i.data.device_augment import DeviceAugment
from i2i.data.io import atomic_write_bytes, write_image
from i2i.data.sampling import EpochSampler, batch_size_of, collate_skipping
from i2i.data.tensors import to_image
from i2i.devices import DTYPES, autocast, pick_device, resolve_precision, tune_cpu_allocator
from i2i.evaluate import resolve_split
from i2i.models import MODELS
from i2i.report import build_report
from i2i.startup import import_dynamo
from i2i.validation import Validator, higher_is_better


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


def default_workers(device: torch.device) -> int:
    """DataLoader workers: on a small CPU box workers take cores from the model, so decode in-process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
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


class Trainer:
    """Runs any registered model: its `update_order` says which optimizer steps when, the loop does the rest."""

    def __init__(self, cfg: RunConfig, resume: bool = False, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        t = cfg.train
        self.run_dir = cfg.run_dir
        self.device = pick_device(t.device)
        self.precision = resolve_precision(t.precision, self.device)
        if self.precision == "fp16" and self.device.type == "cpu":
            raise RunError("fp16 training needs CUDA; on the CPU use --precision bf16 or fp32")
        self.dtype = DTYPES[self.precision]
        channels_last = self.device.type == "cuda" if t.channels_last is None else t.channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if self.device.type == "cpu":
            tune_cpu_allocator()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not t.deterministic  # fixed crop sizes: pick the fastest kernels
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
        seed_everything(t.seed)

        # Weight init is C++ work that releases the GIL: overlap it with importing the data pipeline
        # (albumentations, ~0.4 s). The model constructors import nothing, so the threads cannot deadlock.
        with ThreadPoolExecutor(max_workers=1) as pool:
            building = pool.submit(MODELS[cfg.model], cfg.model_config)
            import i2i.data.transforms  # noqa: F401
            self.model = building.result().to(self.device, memory_format=self.memory_format)
        self.model.train()
        if t.compile:
            compile_networks(self.model.networks().values(), self.device)
        self.dataset = self.model.make_dataset(cfg.data, train=True)
        self.augment = DeviceAugment(cfg.data) if cfg.data.augment_on == "device" else None
        self.sampler = EpochSampler(len(self.dataset), seed=t.seed, shuffle=True)
        workers = default_workers(self.device) if t.workers is None else t.workers
        self.loader = DataLoader(
            self.dataset, batch_size=t.batch_size, sampler=self.sampler, collate_fn=collate_skipping,
            num_workers=workers, pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            # its own generator: starting an iterator must not draw from the global RNG (resume would drift)
            generator=torch.Generator().manual_seed(t.seed),
        )
        self.steps_per_epoch = math.ceil(len(self.dataset) / t.batch_size)
        schedule_steps = (t.epochs + t.decay_epochs) * self.steps_per_epoch
        self.total_steps = t.max_steps if t.max_steps is not None else schedule_steps

        fused = self.device.type in ("cuda", "cpu")
        import_dynamo()
        self.optimizers = {
            group: torch.optim.Adam(params, lr=t.lr, betas=(t.beta1, t.beta2), fused=fused)
            for group, params in self.model.optim_groups().items()
        }
        constant, decay = t.epochs * self.steps_per_epoch, t.decay_epochs * self.steps_per_epoch
        self.schedulers = {
            group: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, constant, decay))
            for group, opt in self.optimizers.items()
        }
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

        self.step, self.epoch, self.position = 0, 0, 0
        self.skipped: set[str] = set()  # unreadable files seen so far (each is warned about once)
        self.best: dict[str, Any] | None = None  # {"metric", "value", "step"} of ckpt/best
        self.last_save = time.perf_counter()
        self.validator = self._make_validator() if t.val_every else None
        self._prepare_run_dir(resume)
        self.tensorboard = _tensorboard_writer(self.run_dir) if t.tensorboard else None

    def _make_validator(self) -> Validator:
        t = self.cfg.train
        root = t.val_data or self.cfg.data.root
        split = resolve_split(Path(root), t.val_split, unpaired=self.model.data_kind == "unpaired")
        if self.model.data_kind == "unpaired" and not t.val_fid:
            raise RunError("validating an unpaired model compares distributions: add --val-fid")
        return Validator(self.model, self.cfg.data, root, split, size=t.val_size, fid=t.val_fid)

    # -- run directory ---------------------------------------------------------------------------
    def _prepare_run_dir(self, resume: bool) -> None:
        ckpt = latest_checkpoint(self.run_dir)
        if resume:
            if (self.run_dir / "config.json").is_file():
                self._check_same_run()
            if ckpt is None:  # killed before its first checkpoint: nothing to load, so start over
                tqdm.write(f"note: {self.run_dir} has no checkpoint yet; starting from step 0", file=sys.stderr)
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
            else:
                self._load(ckpt)
        elif ckpt is not None:
            raise RunError(f"{self.run_dir} already holds a run (latest checkpoint {ckpt.name}); "
                           "pass --resume to continue it or pick another --name")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.run_dir / "config.json", self.cfg.to_json().encode())

    def _check_same_run(self) -> None:
        saved = json.loads((self.run_dir / "config.json").read_text())
        now = self.cfg.to_dict()
        diffs = [f"{section}: saved {saved.get(section)} != now {now[section]}"
                 for section in ("model", "model_config", "data") if saved.get(section) != now[section]]
        if diffs:
            raise RunError("--resume needs the same model and data options as the run it continues; "
                           "differences:\n  " + "\n  ".join(diffs))

    def _state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step, "epoch": self.epoch, "position": self.position, "skipped": sorted(self.skipped),
            "optimizers": {g: o.state_dict() for g, o in self.optimizers.items()},
            "schedulers": {g: s.state_dict() for g, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "model": self.model.training_state(),
            "rng": rng,
            "best": self.best or {},
        }

    def save(self, name: str | None = None) -> Path:
        """Checkpoint the run (ckpt/step_N, or ckpt/NAME) and refresh report.html."""
        path = save_checkpoint(self.run_dir, self.step, self.model.networks(), self._state(),
                               self.cfg.to_dict(), keep_last=self.cfg.train.keep_last, name=name)
        if name is None:
            self.last_save = time.perf_counter()
        try:
            build_report(self.run_dir)
        except Exception as err:  # the report is a view: never let it stop training
            tqdm.write(f"warning: could not rebuild the report: {err}", file=sys.stderr)
        return path

    def _load(self, ckpt: Path) -> None:
        for name, net in self.model.networks().items():
            net.load_state_dict(load_weights(ckpt / f"{name}.safetensors"))
        state = load_state(ckpt)
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.skipped = set(state["skipped"])
        self.best = state.get("best") or None
        for group, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][group])
            self.schedulers[group].load_state_dict(state["schedulers"][group])
        self.scaler.load_state_dict(state["scaler"])
        self.model.load_training_state(state["model"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self._truncate_metrics(self.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (the killed run's last moments)."""
        path = self.run_dir / "metrics.jsonl"
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            atomic_write_bytes(path, "".join(ln + "\n" for ln in lines).encode())

    # -- the loop --------------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        return autocast(self.device, self.dtype)

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One generator forward, then each optimizer's update in the model's order; returns losses, fakes."""
        with self.autocast():
            fakes = self.model.generate(batch)
        steps = self.model.steps()
        losses: dict[str, torch.Tensor] = {}
        for group in self.model.update_order:
            with self.autocast():
                out = steps[group](batch, fakes)
            opt = self.optimizers[group]
            opt.zero_grad(set_to_none=True)
            self.scaler.scale(out["loss"]).backward()
            self.scaler.step(opt)
            losses[group] = out["loss"].detach()
            losses.update({k: v.detach() for k, v in out.items() if k != "loss"})
        self.scaler.update()
        for scheduler in self.schedulers.values():
            scheduler.step()
        return losses, fakes

    def fit(self) -> Summary:
        """Train until the step budget is spent, checkpointing along the way; resumable at any checkpoint."""
        t = self.cfg.train
        start_step, started = self.step, time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        last: dict[str, float] = {}
        window_steps, window_images, window_start = 0, 0, time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress, unit="step",
                   dynamic_ncols=True)
        while self.step < self.total_steps:
            self.sampler.set_epoch(self.epoch, start=self.position * t.batch_size)
            pass_start, trained = self.position, False
            for raw in self.loader:
                self.position += 1
                for bad in raw["skipped"]:
                    if bad.path not in self.skipped:
                        self.skipped.add(bad.path)
                        tqdm.write(f"warning: skipping unreadable image ({bad.reason})", file=sys.stderr)
                n = batch_size_of(raw)
                if n == 0:
                    continue
                if self.augment is not None:
                    batch = self.augment(raw, self.device, self.memory_format)
                else:
                    batch = to_device(raw, self.device, self.memory_format)
                losses, fakes = self.train_step(batch)
                self.step += 1
                trained = True
                window_steps, window_images = window_steps + 1, window_images + n
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v.float()
                bar.update(1)
                if self.step % t.log_every == 0 or self.step == self.total_steps:
                    elapsed = time.perf_counter() - window_start
                    last = self._log(sums, window_steps, window_images / max(elapsed, 1e-9), bar)
                    sums, window_steps, window_images, window_start = {}, 0, 0, time.perf_counter()
                if t.sample_every and self.step % t.sample_every == 0:
                    self._write_samples(self.model.samples(batch, fakes))
                if t.val_every and self.step % t.val_every == 0:
                    self._validate()
                due = t.save_every and self.step % t.save_every == 0
                overdue = t.save_minutes and time.perf_counter() - self.last_save > 60 * t.save_minutes
                if (due or overdue) and self.step != self.total_steps:
                    self.save()
                if self.step >= self.total_steps:
                    break
            if self.position >= self.steps_per_epoch:
                if pass_start == 0 and not trained:
                    raise RunError(f"no readable images in {self.cfg.data.root}: every one was skipped")
                self.epoch, self.position = self.epoch + 1, 0
        bar.close()
        ckpt = self.save()
        if self.tensorboard is not None:
            self.tensorboard.close()
        seconds = time.perf_counter() - started
        images = (self.step - start_step) * t.batch_size
        summary = Summary(self.run_dir, ckpt, self.step, self.epoch, seconds, images / max(seconds, 1e-9),
                          len(self.skipped), last)
        return summary

    def _log(self, sums: dict[str, torch.Tensor], steps: int, images_per_s: float, bar: tqdm) -> dict[str, float]:
        """Average the window's losses (one host sync), append them to metrics.jsonl, update the bar."""
        keys = list(sums)
        values = torch.stack([sums[k] for k in keys]).div(steps).tolist() if keys else []
        losses = dict(zip(keys, values, strict=True))
        lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        record = {"step": self.step, "epoch": self.epoch, **losses, "lr": lr, "images_per_s": images_per_s}
        self._append_metrics(record)
        bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if "_" not in k} | {"img/s": f"{images_per_s:.2f}"})
        return losses

    def _append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in ("step", "epoch"):
                    self.tensorboard.add_scalar(key, value, self.step)

    def _validate(self) -> dict[str, float]:
        """Score the held-out subset, log it, and keep ckpt/best when the chosen metric improved."""
        scores = self.validator(self.model, self.device, self.dtype)
        self._append_metrics({"step": self.step, "epoch": self.epoch, **scores})
        metric = self.cfg.train.best_metric or next(
            (k for k in scores if "psnr" in k), next((k for k in scores if "fid" in k), None))
        if metric not in scores:
            raise RunError(f"--best-metric {metric} is not among the validation metrics: {', '.join(scores)}")
        value = scores[metric]
        better = self.best is None or (value > self.best["value"] if higher_is_better(metric)
                                       else value < self.best["value"])
        if better:
            self.best = {"metric": metric, "value": value, "step": self.step}
            self.save(name="best")
            atomic_write_bytes(self.run_dir / "best.json", json.dumps(self.best).encode())
        return scores

    def _write_samples(self, images: dict[str, torch.Tensor]) -> None:
        grid = sample_grid(images)
        write_image(self.run_dir / "samples" / f"step_{self.step:06d}.png", grid)
        if self.tensorboard is not None:
            self.tensorboard.add_image("samples", grid, self.step, dataformats="HWC")


def _tensorboard_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise RunError("--tensorboard needs the tensorboard package: pip install tensorboard") from err
    return SummaryWriter(str(run_dir / "tensorboard"))


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


def compile_networks(networks: Iterable[nn.Module], device: torch.device) -> None:
    """torch.compile each network in place (weights keep their names); fall back to eager with a message."""
    if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        tqdm.write("warning: --compile needs a C++ compiler on the CPU; none found, running eagerly", file=sys.stderr)
        return
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly instead
    for net in networks:
        net.compile()


def sample_grid(images: dict[str, torch.Tensor], max_rows: int = 4) -> np.ndarray:
    """Rows = samples, columns = the named images side by side (gray shown as RGB)."""
    rows = []
    n = min(max_rows, next(iter(images.values())).shape[0])
    for i in range(n):
        cols = [to_image(img[i].expand(3, -1, -1) if img.shape[1] == 1 else img[i]) for img in images.values()]
        rows.append(np.concatenate(cols, axis=1))
    return np.concatenate(rows, axis=0)


def train(cfg: RunConfig, resume: bool = False, progress: bool = True) -> Summary:
    """Train the run `cfg` describes (the Python twin of `i2i train`)."""
    return Trainer(cfg, resume=resume, progress=progress).fit()


