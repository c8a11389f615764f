"""Small dataclass configs for a run (data, training, model) and their JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
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
FORMATS = ("same", "png", "jpg", "tif", "npy")  # inference: output file type (tif/npy: any channel count)
EXPORT_FORMATS = ("onnx", "torchscript")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile modes; reduce-overhead: CUDA graphs
# Named sets of values for the train command's options (by option name) that the user does not type. "paper" is
# the papers' own setup; "hq" the best combination measured at an equal budget (README, "Quality").
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "hq": {"upsample": "resize", "discriminator": "multiscale", "num_d": 2},
}



def option(default: Any, *, help: str, **cli: Any) -> Any:
    """A config field with the help text of its command-line option (`i2i.cli.commands` generates the options).

    `cli` holds what the option needs beyond the field's type and default: `choices`, `min`/`max` (with
    `min_open`/`max_open`), `flag` (an option name other than the field's), `path` ("dir", "existing_dir",
    "existing"), `data_kind` (only models trained on that kind of data show it), `generators` (only models
    with that many generators show it), `cli=False` (not an option). Mutable defaults are not supported.
    """
    return field(default=default, metadata={"help": help, **cli})

@dataclass
class DataConfig:
    """Where the images are and how they are prepared; inference reuses the preprocessing fields."""

    root: str = option("", help="Dataset root (see datasets/README.md for the layouts).", cli=False)
    layout: str = option("auto", choices=LAYOUTS, data_kind="paired",
                         help="Paired layout: A|B side-by-side files or A/ + B/ folders.")
    preprocess: str = option("resize_and_crop", choices=PREPROCESS_MODES, help="How images are resized and cropped.")
    load_size: int = option(286, min=1, help="Resize to this first.")
    crop_size: int = option(256, min=1, help="Then crop this (at most --load-size).")
    flip: bool = option(True, help="Random horizontal flips.")
    strict: bool = option(False, help="Fail on an unreadable image instead of skipping it.")
    serial: bool = option(False, data_kind="unpaired", help="Pair A[i] with B[i] in order instead of a random B.")
    augment_on: str = option("cpu", choices=AUGMENT_ON,
                             help="Where resize/crop/flip run: 'device' does them on the training device, "
                                  "so the CPU only decodes; worth it on a GPU whose data loader is CPU-bound.")
    input_augment: bool = option(False, data_kind="paired",
                                 help="Colour jitter, blur and noise on the input image only (never the target).")
    inputs: str = option("A", data_kind="paired",
                         help="For A/ + B/ folders: the folders stacked into the A side, matched by file stem, "
                              "e.g. A,A_depth (RGB + one depth band: 4 channels, in that order).")
    a_range: str = option("", help="The raw values of the A files that map to [-1, 1]: LO:HI for every band, or "
                                   "one LO:HI per band, comma-separated (e.g. 0:10000 for reflectance) "
                                   "[default: by dtype: 8-bit 0:255, 16-bit 0:65535, float 0:1].")
    b_range: str = option("", help="The same for the B files.")
    label_nc: int = option(0, min=0, data_kind="paired",
                           help="The input is a label map of this many classes, fed as one-hot channels "
                                "(pix2pixHD): class ids from index/grey PNGs, or colours via --label-colors or a "
                                "palette learned from the training labels (0: the input is an image).")
    label_colors: str = option("", data_kind="paired",
                               help="With --label-nc: a text file of one class colour per line (R G B, class id "
                                    "= line number) for colour-coded labels [default: learned from the training "
                                    "labels if they are in colour].")
    palette: list[list[int]] | None = option(
        None, cli=False, help="The class colours used (written by the run from --label-colors or the training "
                              "labels; none for index labels).")

    def problems(self) -> list[str]:
        """What is wrong with these options (empty when they can be used), checked before anything runs."""
        found = _not_in(self, layout=LAYOUTS, preprocess=PREPROCESS_MODES, augment_on=AUGMENT_ON)
        found += [f"{name} must be >= 1, got {getattr(self, name)}" for name in ("load_size", "crop_size")
                  if getattr(self, name) < 1]
        for name in ("a_range", "b_range"):
            try:
                value_ranges(getattr(self, name))
            except ValueError as err:
                found.append(f"{name}: {err}")
        if not self.inputs.strip() or any(not part.strip() or "/" in part for part in self.inputs.split(",")):
            found.append(f"inputs {self.inputs!r}: give folder names separated by commas, e.g. A,A_depth")
        if self.label_nc:
            if self.input_augment:
                found.append("--input-augment jitters colours, which label maps do not have: drop it with --label-nc")
            if self.augment_on == "device":
                found.append("--augment-on device resizes label maps with interpolation, which mixes class ids: "
                             "use --augment-on cpu with --label-nc")
            if self.palette is not None and len(self.palette) != self.label_nc:
                found.append(f"the palette has {len(self.palette)} colours for --label-nc {self.label_nc}")
        elif self.label_colors:
            found.append("--label-colors needs --label-nc (the number of classes)")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            found.append(f"crop_size {self.crop_size} is larger than load_size {self.load_size}: with preprocess "
                         f"{self.preprocess} images are resized to load_size first, so the crop cannot fit "
                         "(--crop-size must be <= --load-size)")
        return found


@dataclass
class TrainConfig:
    """How long and how the shared trainer runs, and where it writes."""

    name: str = option("run", cli=False,
                       help="Run name: checkpoints/NAME/, inside --runs-dir. Default: DATA-folder_MODEL.")
    runs_dir: str = option("checkpoints", path="dir", help="Folder that holds run directories.")
    max_steps: int | None = option(None, min=1, help="A step budget with its own schedule: the initial learning rate, "
                                                     "then linear decay to zero over the last --decay-steps "
                                                     "(replaces --epochs/--decay-epochs).")
    decay_steps: int | None = option(None, min=0, help="With --max-steps: steps of linear decay at the end of the "
                                                       "budget [default: half of it].")
    step_schedule: bool = option(True, cli=False, help="A record: False for runs from before --max-steps had its own "
                                                       "schedule (they keep the epoch schedule, cut short).")
    epochs: int = option(100, min=0, help="Without --max-steps: epochs at the initial learning rate.")
    decay_epochs: int = option(100, min=0, help="Then epochs of linear decay to zero.")
    batch_size: int = option(1, min=1, help="Images per step (per process under torchrun).")
    lr: float = option(2e-4, min=0, min_open=True, help="Adam learning rate.")
    beta1: float = option(0.5, min=0, max=1, max_open=True, help="Adam beta1.")
    beta2: float = option(0.999, cli=False, help="Adam beta2.")
    device: str = option("auto", choices=DEVICES, help="Training device (auto: CUDA when available).")
    precision: str = option("auto", choices=PRECISIONS,
                            help="Autocast precision; auto: the fastest, timed on this machine before the first step, "
                                 "among those whose output matches fp32's (README: Speed). Losses are always fp32.")
    channels_last: bool | None = option(
        None, help="NHWC memory layout [default: timed on this machine, as for --precision auto].")
    gemm_convolutions: bool | None = option(
        None, help="Run small CPU convolutions as one matrix multiply (same maths) [default: timed on this machine].")
    one_pass_batchnorm: bool | None = option(
        None, help="Score a discriminator's real and fake batch in one call, BatchNorm statistics kept apart "
                   "[default: timed on this machine].")
    speed: dict[str, Any] | None = option(
        None, cli=False, help="What the auto options were measured to be here (written by the run; reused on "
                              "resume on the same device).")
    compile: bool = option(False, help="torch.compile the networks (falls back to eager with a message).")
    compile_mode: str = option("default", choices=COMPILE_MODES,
                               help="With --compile: reduce-overhead replays CUDA graphs (small, launch-bound GPU "
                                    "batches).")
    ema_decay: float = option(0.0, min=0, max=1, max_open=True,
                              help="Keep an exponential moving average of the generators' weights (e.g. 0.999; 0: "
                                   "off); checkpoints hold both, inference uses the average.")
    recipe: str = option("paper", choices=tuple(RECIPES), cli=False,
                         help="A named set of defaults for the options you do not type (README: Quality).")
    recipe_values: dict[str, Any] | None = option(
        None, cli=False, help="The values the recipe set (by option name), recorded when it was applied.")
    seed: int = option(0, help="Seed of initialisation, data order and augmentation.")
    deterministic: bool = option(False, help="Deterministic algorithms only (bit-exact resume on the CPU).")
    workers: int | None = option(None, min=0, help="DataLoader worker processes [default: picked for the machine].")
    val_every: int = option(0, min=0,
                            help="Score held-out images every N steps and keep the best checkpoint (0: never).")
    val_data: str | None = option(None, path="existing_dir", help="Held-out data root [default: --data].")
    val_split: str = option("val", help="Held-out split (falls back to test).")
    val_size: int = option(16, min=1, help="Images scored each time (a fixed, evenly spaced subset).")
    val_fid: bool = option(False, help="Also FID/KID at validation (needs i2i[metrics]; required for CycleGAN).")
    best_metric: str | None = option(
        None, help="Validation metric that picks ckpt/best [default: val_psnr, or the first FID].")
    tensorboard: bool = option(False, help="Also log to RUN/tensorboard (needs the tensorboard package).")
    log_every: int = option(10, min=1, help="Log the losses every N steps.")
    sample_every: int = option(200, min=0, help="Write a sample grid every N steps (0: never).")
    save_every: int = option(500, min=0, help="Checkpoint every N steps (0: only at the end).")
    save_minutes: float = option(10.0, min=0,
                                 help="Also checkpoint when this many minutes passed since the last checkpoint "
                                      "(0: off).")
    keep_last: int = option(3, min=1, help="Checkpoints kept.")
    init_from: str | None = option(
        None, path="existing", help="Start from these weights: a run directory, a checkpoint folder or one "
        ".safetensors (e.g. from `i2i import`). Model options not typed come from it; optimizers, schedule and step "
        "count start fresh.")
    init_from_sha256: str | None = option(None, cli=False, help="The source's weights hash, recorded at the start.")
    init_direction: str | None = option(
        None, choices=DIRECTIONS, generators=2,
        help="With --init-from a one-generator source (a Pix2Pix G, an imported CycleGAN model): the generator it "
             "fills, AtoB (G_AB) or BtoA (G_BA) [default: the direction it translates].")
    # several processes (torchrun): batch_size is per process; see README "Several GPUs and machines"
    sync_bn: bool = option(True, help="Under torchrun: BatchNorm statistics over the global batch (--no-sync-bn: "
                                      "per process).")
    dist_timeout: float = option(1800.0, min=0, min_open=True,
                                 help="Under torchrun: seconds a process waits for the others before the run fails "
                                      "with a message (instead of hanging).")

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        """(steps at the initial LR, steps of linear decay to zero): the step budget's own, else the epochs'."""
        if self.max_steps is not None and self.step_schedule:
            decay = self.max_steps // 2 if self.decay_steps is None else self.decay_steps
            return self.max_steps - decay, decay
        return self.epochs * steps_per_epoch, self.decay_epochs * steps_per_epoch

    def problems(self) -> list[str]:
        """What is wrong with these options (empty when they can be used), checked before anything runs."""
        found = _not_in(self, device=DEVICES, precision=PRECISIONS, compile_mode=COMPILE_MODES, recipe=tuple(RECIPES))
        found += non_finite(self)
        if (problem := name_problem(self.name)) is not None:
            found.append(problem)
        positive = ("batch_size", "log_every", "keep_last", "val_size")
        found += [f"{name} must be >= 1, got {getattr(self, name)}" for name in positive if getattr(self, name) < 1]
        not_negative = ("epochs", "decay_epochs", "val_every", "sample_every", "save_every", "save_minutes")
        found += [f"{name} must be >= 0, got {getattr(self, name)}" for name in not_negative
                  if getattr(self, name) < 0]
        if self.max_steps is not None and self.max_steps < 1:
            found.append(f"max_steps must be >= 1, got {self.max_steps}")
        if self.decay_steps is not None and not 0 <= self.decay_steps <= (self.max_steps or self.decay_steps):
            found.append(f"decay_steps is the end of the max_steps budget: it needs 0 <= decay_steps <= max_steps, "
                         f"got decay_steps={self.decay_steps}, max_steps={self.max_steps}")
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


# training options that --resume applies when they differ from the run's (and says so); the run keeps its seed
RESUME_APPLIED = ("lr", "beta1", "beta2", "batch_size", "epochs", "decay_epochs", "max_steps")
RESUME_REFUSED = ("seed",)


def resume_changes(saved: dict[str, Any], now: TrainConfig) -> tuple[list[str], list[str]]:
    """What resuming the run `saved` (its config.json) with `now` changes: (notes on the options applied,
    problems with the options refused), each naming the option."""
    before = saved.get("train", {}) if isinstance(saved.get("train"), dict) else {}

    def option(key: str) -> str:
        return "--" + key.replace("_", "-")

    changed = [k for k in (*RESUME_APPLIED, *RESUME_REFUSED) if k in before and before[k] != getattr(now, k)]
    notes = [f"{option(k)} {getattr(now, k)} applied (the run had {before[k]})" for k in changed
             if k in RESUME_APPLIED]
    problems = [f"{option(k)} {getattr(now, k)} differs from the run's {before[k]}: a resumed run keeps its {k} "
                f"(its data order and augmentation follow it); resume with {option(k)} {before[k]}"
                for k in changed if k in RESUME_REFUSED]
    return notes, problems


def name_problem(name: str) -> str | None:
    """Why a run name would not name a folder inside the runs folder (None when it does)."""
    if not name.strip():
        return "the run name is empty"
    normal = os.path.normpath(name)
    if os.path.isabs(name) or normal == "." or normal == ".." or normal.startswith(".." + os.sep):
        return f"the run name {name!r} leads outside the runs folder; give a plain name such as facades_run"
    return None


def non_finite(config: Any, prefix: str = "") -> list[str]:
    """One message per float field of a config dataclass (nested ones too) that is NaN or infinite."""
    found = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            found += non_finite(value, f"{prefix}{f.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(f"{prefix}{f.name} must be a finite number, got {value}")
    return found


def value_ranges(text: str) -> list[tuple[float, float]] | None:
    """'LO:HI' or 'LO:HI,LO:HI,...' as (lo, hi) pairs (one for every band, or one per band); '' -> None."""
    if not text.strip():
        return None
    pairs = []
    for part in text.split(","):
        try:
            lo, hi = (float(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not LO:HI (e.g. 0:10000)") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"{part.strip()!r}: LO and HI must be finite with LO < HI")
        pairs.append((lo, hi))
    return pairs


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
        if not _fits(value, hint):
            raise ValueError(f"{cls.__name__}.{key} must be {_shown(hint)}, got {value!r}")
        kwargs[key] = from_dict(hint, value) if dataclasses.is_dataclass(hint) and isinstance(value, dict) else value
    return cls(**kwargs)


def option_name(f: dataclasses.Field) -> str:
    """The command-line option (as a click parameter name) that fills field `f`: its `flag`, else its name."""
    return f.metadata.get("flag", f.name)


def is_option(f: dataclasses.Field) -> bool:
    """Whether field `f` is a command-line option (it has help text and is not marked `cli=False`)."""
    return "help" in f.metadata and f.metadata.get("cli", True)


def from_options(cls: type[T], opts: dict[str, Any], **overrides: Any) -> T:
    """An instance of config dataclass `cls` from options named like its fields' options (paths as strings);
    fields with no option in `opts` take their defaults."""
    values = {f.name: opts[option_name(f)] for f in dataclasses.fields(cls)
              if is_option(f) and option_name(f) in opts} | overrides
    return cls(**{k: str(v) if isinstance(v, Path) else v for k, v in values.items()})


def apply_recipe(cfg: RunConfig, keep: typing.Collection[str] = ()) -> RunConfig:
    """`cfg` with its recipe's values (RECIPES, by option name) in every field that still holds its default and
    whose option is not in `keep` (the options a user typed, or that a source supplied).

    The values set are recorded in `train.recipe_values`; a config that has them is returned as it is, so the
    command line (which knows what was typed) and `i2i.train` (which does not) resolve a recipe once.
    """
    if cfg.train.recipe_values is not None:
        return cfg
    wanted = {k: v for k, v in RECIPES[cfg.train.recipe].items() if k not in keep}
    applied: dict[str, Any] = {}

    def fill(obj: Any) -> Any:
        changes = {}
        fresh = type(obj)()  # the value each field has when nobody chose one
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                changes[f.name] = fill(value)
            elif option_name(f) in wanted and value == getattr(fresh, f.name):
                changes[f.name] = applied[option_name(f)] = wanted[option_name(f)]
        return dataclasses.replace(obj, **changes)

    model_config, data, train = fill(cfg.model_config), fill(cfg.data), fill(cfg.train)
    return dataclasses.replace(cfg, model_config=model_config, data=data,
                               train=dataclasses.replace(train, recipe_values=applied))


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's type (int, float, bool, str, dataclasses, `X | None`; others pass)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    return any(_fits_one(value, option) for option in options)


def _fits_one(value: Any, hint: Any) -> bool:
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    return True


def _shown(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


@dataclass
class ServeConfig:
    """How `i2i serve` shows runs on a web page (the serve extra)."""

    host: str = option("127.0.0.1", help="Address to bind; anything but loopback exposes the page to the network "
                                         "(with a warning).")
    port: int = option(7860, min=0, max=65535, help="Port to listen on (0: any free port).")
    auth: str | None = option(None, envvar="I2I_SERVE_AUTH", metavar="USER:PASS",
                              help="A user and password the browser must give (or set I2I_SERVE_AUTH, which `ps` "
                                   "does not show).")
    max_pixels: int = option(4096 * 4096, min=1, help="Uploads (images, video frames) with more pixels are refused "
                                                      "with a message.")
    max_files: int = option(32, min=1, help="Images translated at once in the 'Several images' tab.")
    device: str = option("auto", choices=DEVICES, help="As for `i2i translate`.")
    precision: str = option("auto", choices=PRECISIONS, help="As for `i2i translate`: auto picks by device and batch "
                                                            "size; fp32 gives exact outputs.")
    batch_size: int | None = option(None, min=1, help="Queued requests translated together [default: 8 on the CPU, "
                                                      "32 on a GPU].")
    ema: bool = option(True, help="Use the generator's EMA weights when the checkpoint has them.")

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
