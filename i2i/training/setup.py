"""A Trainer's set-up, in small functions: where it runs, what options fit together, workers, seeds, the schedule,
the optimizers, the validator, compilation."""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from i2i.config import RunConfig, TrainConfig, non_finite
from i2i.data import DataSpec
from i2i.data.layout import resolve_split
from i2i.models import Model, Update, build_model
from i2i.runtime.devices import DTYPES, pick_device
from i2i.runtime.process import import_dynamo
from i2i.training.init_from import RESUME_CONFLICT
from i2i.training.state import RunError
from i2i.training.validation import Validator, metric_names

log = logging.getLogger(__name__)


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
    """The device `t` asks for, with fp32 and the plain layout until training/speed.py settles what is auto."""
    device = pick_device(t.device)
    if t.precision == "fp16" and device.type == "cpu":
        raise RunError("fp16 training needs CUDA; on the CPU use --precision bf16 or fp32")
    return Placement(device, "fp32", torch.contiguous_format)


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
    if cfg.data.label_nc and spec.channels[0] != cfg.data.label_nc:
        problems.append(f"--label-nc {cfg.data.label_nc} feeds that many one-hot channels, but the generator takes "
                        f"{spec.channels[0]} ({CHANNEL_OPTIONS[spec.kind]})")
    problems += [] if problems else first_item_problems(cfg, spec)
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


def first_item_problems(cfg: RunConfig, spec: DataSpec) -> list[str]:
    """A channel count the data cannot be read as, found on the first training item (one read), so it is refused
    before anything is written; other problems with the data are reported where they are met."""
    from i2i.data import make_dataset
    from i2i.data.sampling import Skipped

    try:
        item = make_dataset(spec, cfg.data, train=False)[0]
    except Exception:  # a data or augmentation problem: reported in its own words where it is met
        return []
    if isinstance(item, Skipped) and "channel(s); the model takes" in item.reason:
        return [f"{CHANNEL_OPTIONS[spec.kind]}: {item.reason}"]
    return []


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


def make_validator(cfg: RunConfig, model: Model) -> Validator:
    t = cfg.train
    root = t.val_data or cfg.data.root
    split = resolve_split(Path(root), t.val_split, unpaired=model.data_spec().kind == "unpaired")
    return Validator(model, cfg.data, root, split, size=t.val_size, fid=t.val_fid)


def compile_networks(networks: Iterable[nn.Module], device: torch.device, mode: str = "default") -> None:
    """torch.compile each network in place (weights keep their names); fall back to eager with a message."""
    if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        log.warning("warning: --compile needs a C++ compiler on the CPU; none found, running eagerly")
        return
    for net in networks:
        net.compile(mode=mode)
