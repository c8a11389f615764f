"""Small dataclass configs for a run (data, training, model) and their JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
AUGMENT_ON = ("cpu", "device")  # where training images are resized, cropped and flipped
LAYOUTS = ("auto", "side_by_side", "folders")
DIRECTIONS = ("AtoB", "BtoA")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 where native, else fp32
SIZE_MODES = ("pad", "resize")  # inference: how an image of any size meets the network's size rules
FORMATS = ("same", "png", "jpg")  # inference: output file type
EXPORT_FORMATS = ("onnx", "torchscript")


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
        from i2i import __version__

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
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        from i2i.models import MODELS

        if d.get("model") not in MODELS:
            raise ValueError(f"unknown model {d.get('model')!r} in config; known: {', '.join(MODELS)}")
        config_cls = MODELS[d["model"]].config_class
        return cls(
            model=d["model"],
            model_config=from_dict(config_cls, d["model_config"]),
            data=from_dict(DataConfig, d.get("data", {})),
            train=from_dict(TrainConfig, d.get("train", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))


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
