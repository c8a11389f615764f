"""Small dataclass configs for a run (data, training, model) and their JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i2i.version import __version__

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
AUGMENT_ON = ("cpu", "device")  # where training images are resized, cropped and flipped
LAYOUTS = ("auto", "side_by_side", "folders")
DIRECTIONS = ("AtoB", "BtoA")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 where native, else fp32
SIZE_MODES = ("pad", "resize")  # inference: how an image of any size meets the network's size rules
FORMATS = ("same", "png", "jpg")  # inference: output file type
EXPORT_FORMATS = ("onnx", "torchscript")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile modes; reduce-overhead: CUDA graphs
# Named sets of values for the train command's options (by option name) that the user does not type. "paper" is
# the papers' own setup; "hq" the best combination measured at an equal budget (README, "Quality").
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "hq": {"upsample": "resize", "discriminator": "multiscale", "num_d": 2},
}


@dataclass
class DataConfig:
    """Where the images are and how they are prepared; inference reuses the preprocessing fields."""

    root: str = ""
    layout: str = "auto"  # paired data only: A|B side-by-side files or A/ + B/ folders
    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    strict: bool = False  # fail on the first unreadable image instead of skipping it
    serial: bool = False  # unpaired data only: pair A[i] with B[i % |B|] instead of a random B
    augment_on: str = "cpu"  # "device": the training device resizes/crops/flips (kornia), the CPU only decodes
    input_augment: bool = False  # paired data: colour jitter, blur and noise on the input image only

    def problems(self) -> list[str]:
        """What is wrong with these options (empty when they can be used), checked before anything runs."""
        found = _not_in(self, layout=LAYOUTS, preprocess=PREPROCESS_MODES, augment_on=AUGMENT_ON)
        found += [f"{name} must be >= 1, got {getattr(self, name)}" for name in ("load_size", "crop_size")
                  if getattr(self, name) < 1]
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            found.append(f"crop_size {self.crop_size} is larger than load_size {self.load_size}: with preprocess "
                         f"{self.preprocess} images are resized to load_size first, so the crop cannot fit "
                         "(--crop-size must be <= --load-size)")
        return found


@dataclass
class TrainConfig:
    """How long and how the shared trainer runs, and where it writes."""

    name: str = "run"
    runs_dir: str = "checkpoints"
    epochs: int = 100  # at the initial learning rate
    decay_epochs: int = 100  # then linear decay to zero
    max_steps: int | None = None  # a step budget that ends training early
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None  # None: on for CUDA (tensor cores like NHWC), off on the CPU (no gain measured)
    compile: bool = False  # torch.compile each network
    compile_mode: str = "default"  # "reduce-overhead" replays CUDA graphs: for launch-bound small-batch GPU steps
    ema_decay: float = 0.0  # keep an exponential moving average of each generator's weights (0: off; e.g. 0.999)
    recipe: str = "paper"  # the named defaults the run started from (RECIPES); its values are in this config
    seed: int = 0
    deterministic: bool = False
    workers: int | None = None  # DataLoader workers; None picks by machine
    val_every: int = 0  # score held-out images every N steps (0: never)
    val_data: str | None = None  # root of the held-out data; None: the training root
    val_split: str = "val"  # falls back to "test" when the data has no val split
    val_size: int = 16  # images scored each time (a fixed, evenly spaced subset)
    val_fid: bool = False  # also FID/KID (needs the metrics extra; required for CycleGAN validation)
    best_metric: str | None = None  # kept as ckpt/best; None: val_psnr for paired models, else the first FID
    tensorboard: bool = False  # also log to RUN/tensorboard (needs the tensorboard package)
    log_every: int = 10
    sample_every: int = 200
    save_every: int = 500
    save_minutes: float = 10.0  # also checkpoint when this long has passed since the last one (0: off)
    keep_last: int = 3
    init_from: str | None = None  # start from these weights (run dir, checkpoint folder, .safetensors)
    init_from_sha256: str | None = None  # the source's weights hash, recorded when the run starts
    init_direction: str | None = None  # the generator a one-generator source fills (None: the direction it translates)
    # several processes (torchrun): batch_size is per process; see README "Several GPUs and machines"
    sync_bn: bool = True  # BatchNorm statistics over the global batch (SyncBatchNorm); False: per process
    dist_timeout: float = 1800.0  # seconds a process waits for the others before the run fails

    def problems(self) -> list[str]:
        """What is wrong with these options (empty when they can be used), checked before anything runs."""
        found = _not_in(self, device=DEVICES, precision=PRECISIONS, compile_mode=COMPILE_MODES, recipe=tuple(RECIPES))
        positive = ("batch_size", "log_every", "keep_last", "val_size")
        found += [f"{name} must be >= 1, got {getattr(self, name)}" for name in positive if getattr(self, name) < 1]
        not_negative = ("epochs", "decay_epochs", "val_every", "sample_every", "save_every", "save_minutes")
        found += [f"{name} must be >= 0, got {getattr(self, name)}" for name in not_negative
                  if getattr(self, name) < 0]
        if self.max_steps is not None and self.max_steps < 1:
            found.append(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_steps is None and self.epochs + self.decay_epochs == 0:
            found.append("epochs + decay_epochs is 0 and no max_steps is given: nothing to train")
        if self.lr <= 0 or not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            found.append(f"Adam needs lr > 0 and betas in [0, 1), got lr={self.lr}, betas=({self.beta1}, {self.beta2})")
        if not 0 <= self.ema_decay < 1:
            found.append(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.dist_timeout <= 0:
            found.append(f"dist_timeout must be > 0 seconds, got {self.dist_timeout}")
        if self.workers is not None and self.workers < 0:
            found.append(f"workers must be >= 0, got {self.workers}")
        if self.init_direction is not None:
            found += _not_in(self, init_direction=DIRECTIONS)
            if self.init_from is None:
                found.append("init_direction places an --init-from source's generator: it needs init_from")
        return found


@dataclass
class RunConfig:
    """Everything one run needs; saved as config.json and inside every weights file."""

    model: str
    model_config: Any  # the model's own dataclass, e.g. Pix2PixConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.train.runs_dir) / self.train.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "i2i_version": __version__,
            "model": self.model,
            "model_config": dataclasses.asdict(self.model_config),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], model_config_class: type) -> RunConfig:
        """Rebuild from `to_dict()` output; the model's config class comes from the model registry
        (`i2i.models.run_config_from_dict` looks it up by name)."""
        return cls(
            model=d["model"],
            model_config=from_dict(model_config_class, d["model_config"]),
            data=from_dict(DataConfig, d.get("data", {})),
            train=from_dict(TrainConfig, d.get("train", {})),
        )


def _not_in(config: Any, **choices: tuple[str, ...]) -> list[str]:
    """One message per field whose value is not among its choices."""
    return [f"{name} must be one of {', '.join(allowed)}, got {getattr(config, name)!r}"
            for name, allowed in choices.items() if getattr(config, name) not in allowed]


T = typing.TypeVar("T")


def from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Build dataclass `cls` from a dict, recursing into nested dataclass fields.

    Unknown keys are an error (a typo in a config must not pass silently); missing keys take defaults.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    kwargs = {}
    for key, value in d.items():
        hint = hints[key]
        kwargs[key] = from_dict(hint, value) if dataclasses.is_dataclass(hint) and isinstance(value, dict) else value
    return cls(**kwargs)


@dataclass
class ServeConfig:
    """How `i2i serve` shows runs on a web page (the serve extra)."""

    host: str = "127.0.0.1"  # the address the page binds to; anything but loopback exposes it (with a warning)
    port: int = 7860  # 0: any free port
    auth: str | None = None  # "USER:PASS" a browser must give (also from I2I_SERVE_AUTH, kept out of `ps`)
    max_pixels: int = 4096 * 4096  # larger uploads (images, video frames) are refused with a message
    max_files: int = 32  # images translated at once in the "Several images" tab
    device: str = "auto"  # as `i2i translate` chooses
    precision: str = "auto"  # as `i2i translate` chooses
    batch_size: int | None = None  # queued requests translated together; None: devices.default_batch_size
    ema: bool = True  # use the generator's EMA weights when the checkpoint has them

    def problems(self) -> list[str]:
        """What is wrong with these options (empty when they can be used), checked before anything runs."""
        found = _not_in(self, device=DEVICES, precision=PRECISIONS)
        if self.auth is not None and (":" not in self.auth or not self.auth.split(":", 1)[0]):
            found.append("auth must be USER:PASS")
        if not 0 <= self.port <= 65535:
            found.append(f"port must lie in [0, 65535], got {self.port}")
        found += [f"{name} must be >= 1, got {getattr(self, name)}" for name in ("max_pixels", "max_files")
                  if getattr(self, name) < 1]
        return found
