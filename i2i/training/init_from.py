"""Start a run from trained weights (`--init-from`): read the source, place its networks, check they fit, load them.

A source is a run directory (its latest checkpoint), a checkpoint folder or one `.safetensors` file,
including the files `i2i import` writes from the reference implementation's .pth. Its stored config
supplies the model options the user did not type (`options_from_source`, called by the CLI); the
trainer then loads every network the source has and the run builds (`init_networks`), refusing,
before anything is written, weights that do not fit. Optimizers, schedule, step count and data order
start fresh. The run records the checkpoint it started from and a content hash of its weights.

Which source network fills which network of the run:
    same model          by name (G -> G; G_AB -> G_AB, D_A -> D_A, ...)
    pix2pix <- cyclegan the source's generator for the run's --direction (or its only one)
    cyclegan <- pix2pix the Pix2Pix G fills the generator of the direction it translates
    one-generator source into a CycleGAN run: `init_direction` (--init-direction) picks the generator it fills
Discriminators carry over within one model only (a Pix2Pix D judges input and output together).
Dropout holds no weights, so it may differ from the source (a ResNet's blocks are renumbered on load).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from i2i.checkpoint.rundir import RunDir
from i2i.checkpoint.weights import file_sha256, load_weights, read_metadata, resolve_checkpoint
from i2i.config import RunConfig, TrainConfig, is_option, option_name
from i2i.models import MODELS, Model, network_config, run_config_from_dict
from i2i.nets import DiscriminatorConfig, GeneratorConfig

__all__ = ["InitFromError", "Source", "carry_record", "init_networks", "model_options", "network_map",
           "options_from_source", "read_source", "source_sha256"]

RESUME_CONFLICT = ("--init-from starts a new run from other weights, --resume continues a run from its own "
                   "checkpoints: drop --init-from to resume (a fine-tuned run keeps the source it recorded)")



def _network_options(cls: type) -> dict[str, str]:
    """The train commands' option names (click parameter names) -> the network config field each fills."""
    return {option_name(f): f.name for f in dataclasses.fields(cls) if is_option(f)}


GENERATOR_OPTIONS = _network_options(GeneratorConfig)  # generator -> name, ngf -> base_channels, ...
DISCRIMINATOR_OPTIONS = _network_options(DiscriminatorConfig)  # discriminator -> name, d_norm -> norm, ...


def _objective_options(model: str) -> tuple[str, ...]:
    """The model config's own options (its scalar fields: direction, gan_loss, the lambdas, ...)."""
    return tuple(option_name(f) for f in dataclasses.fields(MODELS[model].config_class) if is_option(f))


FREE_FIELDS = ("init", "init_gain", "dropout")  # never change which weights a network holds
_RESNET_BODY = re.compile(r"^(model\.\d+\.body\.)(\d+)\.(.+)$")


class InitFromError(ValueError):
    """The source cannot start this run: not i2i weights, networks that do not fit, or conflicting options."""


@dataclass
class Source:
    """Weights to start from: the checkpoint they resolved to, its stored run config, its networks."""

    path: Path  # a checkpoint folder or one weights file
    config: RunConfig
    files: dict[str, Path]  # network name -> weights file
    generators: dict[str, str]  # direction -> generator name, in the source's model

    @property
    def model(self) -> str:
        return self.config.model

    def present_generators(self) -> dict[str, str]:
        """Direction -> name of the source's generators that have weights here."""
        return {d: n for d, n in self.generators.items() if n in self.files}


def read_source(path: str | Path) -> Source:
    """Resolve and read a source (run dir, checkpoint folder, .safetensors) without loading its tensors."""
    path = Path(path)
    if path.suffix in (".pth", ".pt"):
        raise InitFromError(f"{path} is a PyTorch file: convert the reference implementation's weights first "
                            f"(i2i import {path} OUT.safetensors), then --init-from OUT.safetensors")
    resolved = resolve_checkpoint(path)
    weights = [resolved] if resolved.is_file() else sorted(resolved.glob("*.safetensors"))
    if not weights:
        raise InitFromError(f"no weights files in {resolved}")
    metadata = [_metadata(f) for f in weights]
    cfg = run_config_from_dict(metadata[0][0])
    files = {network: f for f, (_, network) in zip(weights, metadata, strict=True)}
    with torch.device("meta"):  # the source model's network names and directions, without memory
        model = MODELS[cfg.model](cfg.model_config)
    unknown = sorted(set(files) - set(model.networks()))
    if unknown:
        raise InitFromError(f"{resolved} holds {', '.join(unknown)}, which a {cfg.model} model does not have "
                            f"({', '.join(model.networks())})")
    return Source(resolved, cfg, files, model.generators())


def _metadata(path: Path) -> tuple[dict[str, Any], str]:
    try:
        return read_metadata(path)
    except SafetensorError as err:
        raise InitFromError(f"{path} is not a safetensors weights file ({err})") from err


def source_sha256(source: Source) -> str:
    """A content hash of the source's weights: a file's sha256; for a folder, the sha256 of what
    `sha256sum *.safetensors` prints there (so either can be checked with standard tools)."""
    if source.path.is_file():
        return file_sha256(source.path)
    files = sorted(source.path.glob("*.safetensors"))
    return hashlib.sha256("".join(f"{file_sha256(f)}  {f.name}\n" for f in files).encode()).hexdigest()


# -- which source network fills which network of the run ----------------------------------------------


def network_map(source: Source, model: str, networks: list[str], generators: dict[str, str],
                init_direction: str | None = None) -> tuple[dict[str, str], list[str]]:
    """Run network -> the source network that fills it, and notes on source networks left unused.

    `networks` and `generators` describe the run's model (`Model.networks()` names, `Model.generators()`).
    """
    present = source.present_generators()
    if init_direction is not None:
        if len(generators) < 2:
            raise InitFromError(f"--init-direction picks which generator a one-generator source fills; a {model} "
                                "run has only one")
        if len(present) != 1:
            raise InitFromError(f"--init-direction is for a source with one generator; {source.path} has "
                                f"{', '.join(present.values()) or 'none'}")
    if source.model == model:
        mapping = {name: name for name in source.files if name in networks}
        lone_direction = next(iter(present)) if len(present) == 1 else None
        if init_direction is not None and init_direction != lone_direction:
            # A and B swap places: the source's discriminators would judge the wrong domain
            mapping = {generators[init_direction]: present[lone_direction]}
    else:
        mapping = {}
        if len(generators) == 1:
            (direction, name), = generators.items()
            if direction in present:
                mapping[name] = present[direction]
            elif len(present) == 1:
                mapping[name] = next(iter(present.values()))
        else:
            for direction, src in present.items():
                mapping[generators[init_direction or direction]] = src
    mapping = {name: mapping[name] for name in networks if name in mapping}  # in the run's order
    unused = [name for name in source.files if name not in mapping.values()]
    notes = [f"{name} of the source ({source.model}) has no place in this {model} run: not used" for name in unused]
    return mapping, notes


# -- the CLI's model options from the source -----------------------------------------------------------


def options_from_source(model: str, opts: dict[str, Any], typed: set[str], run_dir: Path) -> dict[str, Any]:
    """`i2i train MODEL`'s options with the model options the user did not type (`typed`: click parameter
    names) taken from `--init-from`'s source, or, on `--resume`, from the run being resumed."""
    if opts.get("init_from") is not None:
        if opts.get("resume"):
            raise InitFromError(RESUME_CONFLICT)
        source = read_source(opts["init_from"])
        implied = _options_from(source, model, opts)
    elif opts.get("resume") and (saved := RunDir(run_dir).saved_config()) is not None:
        saved_cfg = run_config_from_dict(saved)
        implied = model_options(saved_cfg) if saved_cfg.model == model else {}
    else:
        implied = {}
    if "norm" in typed:  # an untyped --d-norm follows a typed --norm, as it does without a source
        implied.pop("d_norm", None)
    return opts | {k: v for k, v in implied.items() if k not in typed and k in opts}


def model_options(cfg: RunConfig) -> dict[str, Any]:
    """The train command's model options that rebuild `cfg`'s model config (its first generator and discriminator)."""
    model = MODELS[cfg.model]
    fields, objectives, channels = model.network_fields, _objective_options(cfg.model), tuple(model.channel_options)
    m = cfg.model_config
    g = next(getattr(m, f) for f in fields.values() if isinstance(getattr(m, f), GeneratorConfig))
    d = next((getattr(m, f) for f in fields.values() if isinstance(getattr(m, f), DiscriminatorConfig)), None)
    return (_generator_options(g) | ({k: getattr(d, f) for k, f in DISCRIMINATOR_OPTIONS.items()} if d else {})
            | {k: getattr(m, k) for k in objectives}
            | dict(zip(channels, (g.in_channels, g.out_channels), strict=True)))


def _generator_options(g: GeneratorConfig) -> dict[str, Any]:
    return {k: getattr(g, f) for k, f in GENERATOR_OPTIONS.items()}


def _options_from(source: Source, model: str, opts: dict[str, Any]) -> dict[str, Any]:
    networks, generators = _run_layout(model, opts)
    mapping, _ = network_map(source, model, networks, generators, opts.get("init_direction"))
    by_generator = {name: d for d, name in generators.items()}
    placed = [(run, src) for run, src in mapping.items() if run in by_generator]
    channel_options = tuple(MODELS[model].channel_options)
    if source.model == model:
        implied = model_options(source.config)
    elif placed:
        implied = _generator_options(network_config(source.config, placed[0][1]))
    else:
        return {}
    if placed and len(generators) > 1:  # a CycleGAN generator fixes which domain is which
        run, src = placed[0]
        g = network_config(source.config, src)
        a_to_b = (g.in_channels, g.out_channels)
        implied |= dict(zip(channel_options, a_to_b if by_generator[run] == "AtoB" else a_to_b[::-1], strict=True))
    elif placed:
        g = network_config(source.config, placed[0][1])
        implied |= dict(zip(channel_options, (g.in_channels, g.out_channels), strict=True))
    return implied


def _run_layout(model: str, opts: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The run's network names and generator directions (a model with a direction takes the command's)."""
    config = MODELS[model].config_class()
    if "direction" in opts and hasattr(config, "direction"):
        config = dataclasses.replace(config, direction=opts["direction"])
    with torch.device("meta"):
        built = MODELS[model](config)
    return list(built.networks()), built.generators()


# -- loading into the trainer's model ----------------------------------------------------------------


def init_networks(model: Model, cfg: RunConfig) -> list[str]:
    """Load `cfg.train.init_from`'s weights into `model` (built from `cfg`); the lines of the start message.

    Checks every network before loading any, and refuses with the differences when one does not fit.
    Records the checkpoint used and its weights' hash in `cfg.train`; a hash already recorded (a config
    re-run) must match. Does nothing when the run has no source.
    """
    t = cfg.train
    if t.init_from is None:
        return []
    source = read_source(t.init_from)
    networks = model.networks()
    mapping, notes = network_map(source, cfg.model, list(networks), model.generators(), t.init_direction)
    if not mapping:
        raise InitFromError(f"{source.path} ({source.model}: {', '.join(source.files)}) has no network that "
                            f"this {cfg.model} run builds ({', '.join(networks)})")
    states, problems = {}, []
    for name, src in mapping.items():
        state = _fitted(load_weights(source.files[src]), network_config(source.config, src),
                        network_config(cfg, name))
        found = _misfit(state, networks[name].state_dict())
        if found:
            problems.append(_explain(name, src, network_config(source.config, src), network_config(cfg, name),
                                     found))
        states[name] = state
    if problems:
        raise InitFromError(f"--init-from {t.init_from}: its weights do not fit the networks this run builds "
                            "(nothing was written):\n  " + "\n  ".join(problems)
                            + "\nLeave these options out to take the source's architecture.")
    digest = source_sha256(source)
    if t.init_from_sha256 not in (None, digest):
        raise InitFromError(f"{source.path} has changed since this run recorded it (sha256 {t.init_from_sha256}, "
                            f"now {digest})")
    for name, state in states.items():
        networks[name].load_state_dict(state)
    t.init_from, t.init_from_sha256 = str(source.path), digest
    lines = [f"init: from {source.path} ({source.model}, sha256 {digest[:12]}); optimizers, schedule and step "
             "count start fresh"]
    lines += [f"init: {name} <- {source.files[src].name}" for name, src in mapping.items()]
    lines += [f"init: {name} is not in the source: initialised as usual ({_init_kind(cfg, name)})"
              for name in networks if name not in mapping]
    return lines + [f"init: {note}" for note in notes]


def carry_record(t: TrainConfig, saved: dict[str, Any]) -> None:
    """On resume, keep the source the run recorded when it started (the command line no longer names it) and
    what its auto options were measured to be (reused on the same device: the run goes on as it started)."""
    for key in ("init_from", "init_from_sha256", "init_direction", "speed"):
        if getattr(t, key) is None:
            setattr(t, key, saved.get("train", {}).get(key))


def _init_kind(cfg: RunConfig, name: str) -> str:
    net = network_config(cfg, name)
    return net.init if net is not None else "the model's own init"


def _fitted(state: dict[str, torch.Tensor], src: Any, dst: Any) -> dict[str, torch.Tensor]:
    """The source's tensors under the run's names: a ResNet whose dropout differs has its blocks renumbered."""
    if not (isinstance(src, GeneratorConfig) and isinstance(dst, GeneratorConfig)
            and src.name.startswith("resnet") and src.dropout != dst.dropout):
        return state
    shift, first = (1, 4) if dst.dropout else (-1, 5)  # the dropout slot is body.4

    def rename(key: str) -> str:
        match = _RESNET_BODY.match(key)
        if match is None or int(match.group(2)) < first:
            return key
        return f"{match.group(1)}{int(match.group(2)) + shift}.{match.group(3)}"

    return {rename(k): v for k, v in state.items()}


def _misfit(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    found = [f"{len(missing)} tensors missing (e.g. {missing[0]})"] if missing else []
    found += [f"{len(extra)} tensors with no place (e.g. {extra[0]})"] if extra else []
    return found + ([f"{len(shapes)} shapes differ (e.g. {shapes[0]})"] if shapes else [])


def _explain(name: str, src: str, src_cfg: Any, dst_cfg: Any, found: list[str]) -> str:
    """Which architecture fields differ (with the option that sets each), else the tensors that do."""
    into = name if name == src else f"{name} (from the source's {src})"
    if src_cfg is None or dst_cfg is None or type(src_cfg) is not type(dst_cfg):
        return f"{into}: " + "; ".join(found)
    options = GENERATOR_OPTIONS if isinstance(dst_cfg, GeneratorConfig) else DISCRIMINATOR_OPTIONS | {"norm": "norm"}
    flag = {field: "--" + option.replace("_", "-") for option, field in options.items()}
    diffs = [f"{f.name} {getattr(src_cfg, f.name)} in the source, {getattr(dst_cfg, f.name)} here"
             + (f" ({flag[f.name]})" if f.name in flag else "")
             for f in dataclasses.fields(dst_cfg)
             if f.name not in FREE_FIELDS and getattr(src_cfg, f.name) != getattr(dst_cfg, f.name)]
    return f"{into}: " + "; ".join(diffs or found)

