"""`i2i import`: the reference implementations' .pth files -> self-describing i2i weights files."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from i2i.checkpoint.reference import (
    _CYCLEGAN_NAMES,
    IMPORT_MODELS,
    ImportResult,
    ReferenceImportError,
    ReferenceNetwork,
    read_reference,
    to_i2i,
)
from i2i.checkpoint.weights import CKPT_DIR, CONFIG_KEY, LATEST, file_sha256
from i2i.config import DIRECTIONS, DataConfig, RunConfig, TrainConfig
from i2i.models import CUTConfig, CycleGANConfig, Pix2PixConfig
from i2i.nets import DiscriminatorConfig, GeneratorConfig


def _guess_model(nets: Sequence[ReferenceNetwork]) -> str:
    """The model the reference most likely trained these networks in (--model overrides).

    Its CycleGAN saves net_G_A/G_B/D_A/D_B, its Pix2Pix net_G/net_D; the published CycleGAN models
    are single net_G files, so a generator's family decides next (U-Net -> pix2pix, ResNet -> cyclegan,
    the reference's defaults; an anti-aliased ResNet is CUT's). A discriminator alone and unnamed: Pix2Pix's
    sees input and output together (2, 4, 6 channels), CycleGAN's one domain (1 or 3).
    """
    roles = [n.role or "" for n in nets]
    if any(r.endswith(("_A", "_B")) for r in roles):
        return "cyclegan"
    generators = [n for n in nets if n.is_generator]
    if any(getattr(n.config, "antialias", False) for n in generators):
        return "cut"
    if generators:
        return "pix2pix" if generators[0].family == "unet" else "cyclegan"
    if "D" in roles:
        return "pix2pix"
    return "cyclegan" if nets[0].config.in_channels in (1, 3) else "pix2pix"


def _i2i_name(net: ReferenceNetwork, model: str, direction: str) -> str:
    kind = "G" if net.is_generator else "D"
    role = net.role or kind
    if role[0] != kind:
        raise ReferenceImportError(f"{net.path} is named as network {role} but holds a "
                                   f"{'generator' if kind == 'G' else 'discriminator'} ({net.describe()})")
    if model in ("pix2pix", "cut"):
        if role != kind:
            raise ReferenceImportError(f"{net.path} is a CycleGAN network ({role}); import it with --model cyclegan")
        if model == "cut" and kind == "D":
            raise ReferenceImportError(f"{net.path}: of a CUT run only the generator (net_G) imports")
        return kind
    if role in _CYCLEGAN_NAMES:
        return _CYCLEGAN_NAMES[role]
    # A lone G (e.g. a published CycleGAN model) translates `direction`; a lone D judges that direction's outputs.
    if kind == "G":
        return "G_AB" if direction == "AtoB" else "G_BA"
    return "D_B" if direction == "AtoB" else "D_A"


def _pix2pix_config(nets: dict[str, GeneratorConfig | DiscriminatorConfig], direction: str, notes: list[str]
                    ) -> Pix2PixConfig:
    g, d = nets.get("G"), nets.get("D")
    if g is None:
        assert isinstance(d, DiscriminatorConfig)
        c_in = d.in_channels // 2
        g = GeneratorConfig(in_channels=c_in, out_channels=d.in_channels - c_in, norm=d.norm)
        notes.append(f"no generator imported: G's config is i2i's default ({g.name}, {c_in}->{g.out_channels})")
    if d is None:
        d = DiscriminatorConfig(in_channels=g.in_channels + g.out_channels, norm=g.norm)
    assert isinstance(g, GeneratorConfig) and isinstance(d, DiscriminatorConfig)
    if d.in_channels != g.in_channels + g.out_channels:
        raise ReferenceImportError(f"the discriminator sees {d.in_channels} channels but the generator maps "
                                   f"{g.in_channels}->{g.out_channels} (Pix2Pix's D sees both: "
                                   f"{g.in_channels + g.out_channels})")
    return Pix2PixConfig(generator=g, discriminator=d, direction=direction)


def _cyclegan_config(nets: dict[str, GeneratorConfig | DiscriminatorConfig]) -> CycleGANConfig:
    # Each imported network fixes the channels of domain A and/or B; they must agree.
    claims: dict[str, list[tuple[int, str]]] = {"A": [], "B": []}
    for name, cfg in nets.items():
        if isinstance(cfg, GeneratorConfig):
            src, dst = ("A", "B") if name == "G_AB" else ("B", "A")
            claims[src].append((cfg.in_channels, name))
            claims[dst].append((cfg.out_channels, name))
        else:
            claims[name[-1]].append((cfg.in_channels, name))
    channels = {}
    for domain, said in claims.items():
        if len({c for c, _ in said}) > 1:
            raise ReferenceImportError(f"the networks disagree on domain {domain}'s channels: "
                                       + ", ".join(f"{n} {c}" for c, n in said))
        channels[domain] = said[0][0] if said else 3
    a, b = channels["A"], channels["B"]
    default = CycleGANConfig()
    like = next((c for c in nets.values() if isinstance(c, GeneratorConfig)), default.g_ab)
    norm = next(iter(nets.values())).norm

    def gen(name: str, c_in: int, c_out: int) -> GeneratorConfig:
        cfg = nets.get(name)
        if isinstance(cfg, GeneratorConfig):
            return cfg
        return dataclasses.replace(like, in_channels=c_in, out_channels=c_out)

    def disc(name: str, c: int) -> DiscriminatorConfig:
        cfg = nets.get(name)
        if isinstance(cfg, DiscriminatorConfig):
            return cfg
        return dataclasses.replace(default.d_a, in_channels=c, norm=norm)

    return CycleGANConfig(g_ab=gen("G_AB", a, b), g_ba=gen("G_BA", b, a), d_a=disc("D_A", a), d_b=disc("D_B", b),
                          lambda_identity=default.lambda_identity if a == b else 0.0)


def _cut_config(nets: dict[str, GeneratorConfig | DiscriminatorConfig], direction: str) -> CUTConfig:
    if direction != "AtoB":
        raise ReferenceImportError("a CUT generator translates A -> B (the reference's --direction BtoA swaps the "
                                   "folders, not the model): import it with --direction AtoB")
    g = nets["G"]
    assert isinstance(g, GeneratorConfig)
    default = CUTConfig()
    d = dataclasses.replace(default.discriminator, in_channels=g.out_channels, antialias=g.antialias)
    return CUTConfig(generator=g, discriminator=d, nce_idt=default.nce_idt and g.in_channels == g.out_channels)


def _outputs(out: Path, names: list[str], overwrite: bool) -> dict[str, Path]:
    """Where each network goes: OUT itself when it ends in .safetensors (one network), else OUT/NAME.safetensors."""
    if out.suffix == ".safetensors":
        if len(names) != 1:
            raise ReferenceImportError(f"{out} is one file but {len(names)} networks are imported "
                                       f"({', '.join(names)}); give a folder as OUT")
        if out.is_dir():
            raise ReferenceImportError(f"{out} is a folder; a weights file name is needed here")
        targets = {names[0]: out}
    else:
        if out.exists() and not out.is_dir():
            raise ReferenceImportError(f"{out} exists and is not a folder (name a new .safetensors file to write one)")
        if (out / LATEST).exists() or (out / CKPT_DIR).is_dir():
            raise ReferenceImportError(f"{out} is an i2i run directory; import into a new folder")
        targets = {name: out / f"{name}.safetensors" for name in names}
        others = sorted(p.name for p in out.glob("*.safetensors") if p not in targets.values()) if out.is_dir() else []
        if others:  # a checkpoint folder's networks must share one config: do not mix with earlier files
            raise ReferenceImportError(f"{out} already holds {', '.join(others)}, which this import would not "
                                       "replace; use an empty folder")
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise ReferenceImportError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace")
    return targets


def _save_atomic(target: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """safetensors written beside `target` and renamed into place (streamed: no second copy in memory)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.touch()
        mode = tmp.stat().st_mode  # the usual permissions for a new file here (safetensors' own are 0600)
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.chmod(mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def import_reference(
    paths: Sequence[str | Path], out: str | Path, *, model: str | None = None, direction: str = "AtoB",
    dropout: bool | None = None, load_size: int = 286, crop_size: int = 256, overwrite: bool = False,
) -> ImportResult:
    """Convert reference .pth state_dicts into self-describing i2i weights files (all checked before any is written).

    `model`: pix2pix or cyclegan (None: guessed, see _guess_model). `direction`: what a Pix2Pix G
    translates; for CycleGAN it places files without an _A/_B suffix (a lone G translates it).
    `dropout`: None means a ResNet file's own layout, else the model's reference default (Pix2Pix on,
    CycleGAN off). OUT ending in .safetensors receives the single network; any other OUT is a
    checkpoint folder receiving NAME.safetensors per network (G, D; G_AB, G_BA, D_A, D_B).
    """
    if not paths:
        raise ReferenceImportError("no .pth files given")
    if model is not None and model not in IMPORT_MODELS:
        raise ReferenceImportError(f"unknown model {model!r}; choose from {', '.join(IMPORT_MODELS)}")
    if direction not in DIRECTIONS:
        raise ReferenceImportError(f"unknown direction {direction!r}; choose from {', '.join(DIRECTIONS)}")
    out = Path(out)
    nets = [read_reference(p) for p in paths]
    model = model or _guess_model(nets)
    by_name: dict[str, ReferenceNetwork] = {}
    for net in nets:
        name = _i2i_name(net, model, direction)
        if name in by_name:
            raise ReferenceImportError(f"{by_name[name].path} and {net.path} would both become {model} network {name}")
        by_name[name] = net
    model_default = model == "pix2pix"  # the reference: --no_dropout is off for pix2pix, on for CycleGAN
    configs, states = {}, {}
    for name, net in by_name.items():
        chosen = dropout if dropout is not None else net.dropout_layers if net.family == "resnet" else model_default
        configs[name], states[name] = to_i2i(net, chosen if net.is_generator else None)
    notes: list[str] = []
    if model == "cut":
        model_config = _cut_config(configs, direction)
    else:
        model_config = _pix2pix_config(configs, direction, notes) if model == "pix2pix" else _cyclegan_config(configs)
    run_name = out.stem if out.suffix == ".safetensors" else out.name
    cfg = RunConfig(model=model, model_config=model_config, data=DataConfig(load_size=load_size, crop_size=crop_size),
                    train=TrainConfig(name=run_name or "imported"))
    config_json = json.dumps(cfg.to_dict())
    targets = _outputs(out, list(by_name), overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix != ".safetensors":
        out.mkdir(exist_ok=True)
    for name, target in targets.items():
        src = by_name[name].path
        metadata = {CONFIG_KEY: config_json, "network": name, "imported_from": src.name,
                    "imported_sha256": file_sha256(src)}
        _save_atomic(target, states[name], metadata)
    for net in nets:
        notes += [f"{net.path.name}: {note}" for note in net.notes]
    lone = [n for n in ("G_AB", "G_BA") if n in targets]
    if model == "cyclegan" and len(lone) == 1 and out.suffix != ".safetensors":
        direction_of = {"G_AB": "AtoB", "G_BA": "BtoA"}
        notes.append(f"{out} holds one CycleGAN generator: translate with --direction {direction_of[lone[0]]} "
                     "(a single .safetensors OUT needs none)")
    return ImportResult(cfg, targets, by_name, notes)
