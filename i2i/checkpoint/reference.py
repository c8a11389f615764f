"""Read the reference pix2pix/CycleGAN/CUT implementations' `*_net_G.pth` / `*_net_D.pth` state_dicts
(weights_only: nothing is executed) and map them to i2i's networks."""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from i2i.config import RunConfig
from i2i.models import network_config
from i2i.nets import DISCRIMINATORS, GENERATORS, DiscriminatorConfig, GeneratorConfig, build_generator

__all__ = [
    "IMPORT_MODELS", "ImportResult", "ReferenceImportError", "ReferenceNetwork",
    "load_reference_state_dict", "read_reference", "to_i2i",
]

IMPORT_MODELS = ("pix2pix", "cyclegan", "cut")
UNET_NAMES = {6: "unet_64", 7: "unet_128", 8: "unet_256"}  # number of downsamplings -> i2i generator
RESNET_NAMES = {6: "resnet_6blocks", 9: "resnet_9blocks"}
GENERATOR_FAMILIES = ("unet", "resnet")
_ROLE = re.compile(r"net_(G|D)(_A|_B)?\.pth$")  # the reference saves EPOCH_net_NAME.pth
_STATS = {"running_mean", "running_var", "num_batches_tracked"}
# a conv that has a bias exactly when the norm is instance
_NORM_BIAS_KEY = {"unet": "model.model.0.bias", "resnet": "model.1.bias", "nlayer": "model.2.bias",
                  "pixel": "net.2.bias"}
# Reference CycleGAN: G_A maps A -> B and D_A judges domain B (G_A's outputs); i2i's D_A judges domain A.
_CYCLEGAN_NAMES = {"G_A": "G_AB", "G_B": "G_BA", "D_A": "D_B", "D_B": "D_A"}


class ReferenceImportError(ValueError):
    """A file that is not a reference network's plain state_dict, or import options that do not fit it."""


@dataclass
class ReferenceNetwork:
    """One reference network read from its .pth: what its weights determine, and its (cleaned) tensors.

    `config.dropout` of a generator is the reference's default for its family until `to_i2i` decides;
    `dropout_layers` says whether a ResNet file's layout has dropout slots (None: a U-Net keeps no trace).
    """

    path: Path
    family: str  # unet | resnet | nlayer | pixel
    config: GeneratorConfig | DiscriminatorConfig
    tensors: dict[str, torch.Tensor]  # the reference's key names
    dropout_layers: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_generator(self) -> bool:
        return self.family in GENERATOR_FAMILIES

    @property
    def role(self) -> str | None:
        """The reference's network name from the file name (G, D, G_A, G_B, D_A, D_B), if it follows the pattern."""
        match = _ROLE.search(self.path.name)
        return None if match is None else match.group(1) + (match.group(2) or "")

    def describe(self) -> str:
        c = self.config
        if isinstance(c, GeneratorConfig):
            return f"{c.name}, ngf {c.base_channels}, {c.in_channels}->{c.out_channels} channels, {c.norm} norm"
        layers = f" ({c.n_layers} layers)" if c.name == "n_layers" else ""
        return f"{c.name}{layers} discriminator, ndf {c.base_channels}, {c.in_channels} channels, {c.norm} norm"


@dataclass
class ImportResult:
    """What `import_reference` wrote: the run config stored in every file and network name -> file."""

    config: RunConfig
    written: dict[str, Path]
    sources: dict[str, ReferenceNetwork]
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for name, path in self.written.items():
            src = self.sources[name]
            cfg = network_config(self.config, name)
            dropout = f", dropout {'on' if cfg.dropout else 'off'}" if isinstance(cfg, GeneratorConfig) else ""
            out.append(f"{src.path} -> {path}: {self.config.model} {name}, {src.describe()}{dropout}")
        return out + self.notes


# -- reading -----------------------------------------------------------------------------------------


def load_reference_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A .pth file's plain state_dict (DataParallel `module.` prefixes and InstanceNorm statistics removed).

    Loaded with weights_only=True: a file whose unpickling would construct arbitrary objects (a whole
    pickled model, or something crafted) is refused, never executed.
    """
    path = Path(path)
    if not path.is_file():
        raise ReferenceImportError(f"{path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file at all: the zip, pickle and legacy readers raise many kinds
        raise _load_error(path, err) from err
    if not isinstance(loaded, dict) or not loaded:
        raise ReferenceImportError(f"{path} holds a {type(loaded).__name__}, not a state_dict (a dict of tensors)")
    bad = [k for k, v in loaded.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise ReferenceImportError(f"{path} is a dict but not a state_dict: {len(bad)} entries are not "
                                   f"name -> tensor (e.g. {', '.join(map(repr, bad[:4]))})")
    tensors: dict[str, torch.Tensor] = dict(loaded)
    notes = []
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
        notes.append("removed DataParallel 'module.' prefixes")
    dropped = _drop_instance_norm_stats(tensors)
    if dropped:
        notes.append(f"dropped {dropped} InstanceNorm running statistics (unused at test time, as in the reference)")
    return tensors, notes


def _load_error(path: Path, err: Exception) -> ReferenceImportError:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, pickle.UnpicklingError) and any("Unsupported global" in line for line in lines):
        reason = next(line for line in lines if "Unsupported global" in line)
        reason = reason.split("WeightsUnpickler error:")[-1].split(" was not an allowed")[0].strip()
        return ReferenceImportError(
            f"{path} is not a plain state_dict: loading it would construct arbitrary Python objects "
            f"(e.g. a whole pickled model; here: {reason}). It was not loaded. Re-save `net.state_dict()` "
            "with torch.save where the file was made.")
    # weights_only's message ends with its unpickler's own reason; take that, not the long preamble
    detail = next((line for line in reversed(lines) if not line.startswith("Check the documentation")), "")
    if "WeightsUnpickler error:" in detail:
        detail = detail.split("WeightsUnpickler error:")[-1].strip()
    return ReferenceImportError(f"{path} cannot be read as a PyTorch .pth file ({type(err).__name__}"
                                f"{': ' + detail[:200] if detail else ''})")


def _drop_instance_norm_stats(tensors: dict[str, torch.Tensor]) -> int:
    """Remove statistics of norm layers without affine weights: the reference's (non-affine) InstanceNorm.

    Files from PyTorch < 0.4 saved them; the reference drops them on load too. Its BatchNorm is always affine.
    """
    leaves: dict[str, set[str]] = {}
    for key in tensors:
        module, _, leaf = key.rpartition(".")
        leaves.setdefault(module, set()).add(leaf)
    dropped = 0
    for module, names in leaves.items():
        if names <= _STATS:
            for leaf in names:
                del tensors[f"{module}.{leaf}"]
                dropped += 1
    return dropped


def _found(tensors: dict[str, torch.Tensor], limit: int = 6) -> str:
    shown = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(tensors.items())[:limit])
    more = f", ... ({len(tensors)} tensors)" if len(tensors) > limit else ""
    return shown + more


def _family(path: Path, t: dict[str, torch.Tensor]) -> str:
    keys = list(t)
    if "model.model.0.weight" in t:
        return "unet"
    if all(k.startswith("model.") for k in keys) and any(".conv_block." in k for k in keys):
        return "resnet"
    if "net.0.weight" in t and all(re.fullmatch(r"net\.\d+\.\w+", k) for k in keys):
        return "pixel"
    first = t.get("model.0.weight")
    if first is not None and first.dim() == 4 and all(re.fullmatch(r"model\.\d+\.\w+", k) for k in keys):
        return "nlayer"
    raise ReferenceImportError(
        f"{path} is not a reference pix2pix/CycleGAN network (nor a CUT generator, the one CUT network that imports): "
        f"expected the keys of UnetGenerator "
        f"(model.model.*), ResnetGenerator (model.N.conv_block.*), NLayerDiscriminator (model.N.*) or "
        f"PixelDiscriminator (net.N.*); found {_found(t)}")


def _need(path: Path, t: dict[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in t:
        raise ReferenceImportError(f"{path}: looks like a reference {what} but has no {key} (found {_found(t)})")
    return t[key]


def _norm(t: dict[str, torch.Tensor], family: str) -> str:
    if any(k.endswith(".running_mean") for k in t):  # affine BatchNorm with statistics
        return "batch"
    return "instance" if _NORM_BIAS_KEY[family] in t else "none"


def _unet_levels(t: dict[str, torch.Tensor]) -> list[str]:
    """Module prefixes of the nested UnetSkipConnectionBlocks' Sequentials, outermost first."""
    levels, prefix = ["model.model."], "model.model.1.model."
    while any(k.startswith(prefix) for k in t):
        levels.append(prefix)
        prefix += "3.model."
    return levels


def _resnet_blocks(path: Path, t: dict[str, torch.Tensor], start: int) -> int:
    blocks = sorted({int(k.split(".")[1]) for k in t if ".conv_block." in k})
    if blocks != list(range(start, start + len(blocks))):
        raise ReferenceImportError(f"{path}: ResNet blocks at model indices {blocks}, expected {start}, "
                                   f"{start + 1}, ... in a row")
    return len(blocks)


def _check_filters(path: Path, t: dict[str, torch.Tensor], cfg: GeneratorConfig) -> None:
    """The reference CUT's blur filters are fixed buffers: each must hold the values i2i's layers use."""
    expected = {k: v for k, v in build_generator(cfg).state_dict().items() if k.endswith(".filt")}
    found = {k: v for k, v in t.items() if k.endswith(".filt")}
    if sorted(found) != sorted(expected):
        raise ReferenceImportError(f"{path}: blur filters at {', '.join(sorted(found))}, expected them at "
                                   f"{', '.join(sorted(expected))} (CUT's anti-aliased ResNet)")
    wrong = [k for k, v in found.items() if v.shape != expected[k].shape
             or not torch.allclose(v.float(), expected[k], atol=1e-6)]
    if wrong:
        raise ReferenceImportError(f"{path}: the fixed blur filters {', '.join(wrong)} are not the reference's "
                                   "3-tap (down) / 4-tap (up) binomial filters (another filt_size is not supported)")


def read_reference(path: str | Path) -> ReferenceNetwork:
    """Read a reference `*_net_G.pth` / `*_net_D.pth` and detect its architecture from the weights alone."""
    path = Path(path)
    t, notes = load_reference_state_dict(path)
    family = _family(path, t)
    norm = _norm(t, family)
    dropout_layers = None
    if family == "unet":
        num_downs = len(_unet_levels(t))
        if num_downs not in UNET_NAMES:
            known = ", ".join(f"{n} ({d})" for d, n in UNET_NAMES.items())
            raise ReferenceImportError(f"{path}: a U-Net with {num_downs} downsamplings; i2i has {known}")
        first = t["model.model.0.weight"]
        out = _need(path, t, "model.model.3.weight", "UnetGenerator")  # ConvTranspose2d: (in, out, kh, kw)
        config = GeneratorConfig(name=UNET_NAMES[num_downs], in_channels=first.shape[1], out_channels=out.shape[1],
                                 base_channels=first.shape[0], norm=norm, dropout=True)
    elif family == "resnet":
        antialias = "model.7.filt" in t  # CUT's: a blur-pool after each downsampling conv
        start = 12 if antialias else 10
        n_blocks = _resnet_blocks(path, t, start)
        if n_blocks not in RESNET_NAMES:
            raise ReferenceImportError(f"{path}: a ResNet generator with {n_blocks} blocks; i2i has "
                                       f"{', '.join(RESNET_NAMES.values())}")
        first = _need(path, t, "model.1.weight", "ResnetGenerator")
        last = _need(path, t, f"model.{(21 if antialias else 17) + n_blocks}.weight", "ResnetGenerator")
        second = t.get(f"model.{start}.conv_block.6.weight")  # a Dropout slot shifts the second conv from 5 to 6
        dropout_layers = second is not None and second.dim() == 4
        config = GeneratorConfig(name=RESNET_NAMES[n_blocks], in_channels=first.shape[1], out_channels=last.shape[0],
                                 base_channels=first.shape[0], norm=norm, dropout=dropout_layers, antialias=antialias)
        if antialias:
            _check_filters(path, t, config)
    else:
        if any(k.endswith(".filt") for k in t):
            raise ReferenceImportError(f"{path}: an anti-aliased (CUT) discriminator; of a CUT run only the "
                                       "generator (latest_net_G.pth) imports")
        first = t["net.0.weight" if family == "pixel" else "model.0.weight"]
        n_layers = 3
        if family == "nlayer":
            n_layers = len({k.split(".")[1] for k, v in t.items() if k.endswith(".weight") and v.dim() == 4}) - 2
        name = "pixel" if family == "pixel" else "basic" if n_layers == 3 else "n_layers"
        config = DiscriminatorConfig(name=name, in_channels=first.shape[1], base_channels=first.shape[0],
                                     n_layers=n_layers, norm=norm)
    return ReferenceNetwork(path, family, config, t, dropout_layers, notes)


# -- mapping to i2i's names --------------------------------------------------------------------------


def _unet_renamer(t: dict[str, torch.Tensor]) -> Callable[[str], str | None]:
    levels = _unet_levels(t)
    n = len(levels)
    table = {levels[0] + "0": "stem", levels[0] + "3": "head.1"}
    for i, p in enumerate(levels[1:], start=1):
        k = n - 1 - i  # i2i's decoder runs innermost first
        table[p + "1"] = f"downs.{i - 1}.0"
        if i < n - 1:
            table |= {p + "2": f"downs.{i - 1}.1", p + "5": f"ups.{k}.1", p + "6": f"ups.{k}.2"}
        else:  # innermost: no down norm, no submodule
            table |= {p + "3": f"ups.{k}.1", p + "4": f"ups.{k}.2"}
    return table.get


def _resnet_renamer(file_dropout: bool, dropout: bool) -> Callable[[str], str | None]:
    src, dst = (6 if file_dropout else 5), (6 if dropout else 5)  # second conv of a block, norm right after

    def rename(module: str) -> str | None:
        parts = module.split(".")
        if len(parts) == 2:
            return module
        if len(parts) == 4 and parts[2] == "conv_block":
            index = {"1": 1, "2": 2, str(src): dst, str(src + 1): dst + 1}.get(parts[3])
            return None if index is None else f"model.{parts[1]}.body.{index}"
        return None

    return rename


def _renamer(net: ReferenceNetwork, dropout: bool) -> Callable[[str], str | None]:
    if net.family == "unet":
        return _unet_renamer(net.tensors)
    if net.family == "resnet":
        return _resnet_renamer(bool(net.dropout_layers), dropout)
    if net.family == "pixel":
        return lambda module: "model" + module.removeprefix("net")
    return lambda module: module  # NLayerDiscriminator: the same Sequential as i2i's PatchDiscriminator


def _expected(cfg: GeneratorConfig | DiscriminatorConfig) -> dict[str, torch.Tensor]:
    """Names, shapes and dtypes of i2i's network for `cfg` (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        if isinstance(cfg, GeneratorConfig):
            return GENERATORS[cfg.name](cfg).state_dict()
        return DISCRIMINATORS[cfg.name](cfg).state_dict()


def to_i2i(net: ReferenceNetwork, dropout: bool | None = None
           ) -> tuple[GeneratorConfig | DiscriminatorConfig, dict[str, torch.Tensor]]:
    """The i2i config and state_dict of a reference network, every tensor name and shape checked.

    `dropout` (generators): None keeps `net.config.dropout`. A ResNet's tensors are renamed to i2i's
    layout with or without dropout slots, whichever the file had.
    """
    cfg = net.config
    if isinstance(cfg, GeneratorConfig) and dropout is not None:
        cfg = dataclasses.replace(cfg, dropout=dropout)
    rename = _renamer(net, bool(getattr(cfg, "dropout", False)))
    expected = _expected(cfg)
    mapped: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    unexpected = []
    for key, tensor in net.tensors.items():
        module, _, leaf = key.rpartition(".")
        target = rename(module)
        name = f"{target}.{leaf}" if target is not None else None
        if name is None or name not in expected:
            unexpected.append(key)
            continue
        mapped[name], source[name] = tensor, key
    missing = []
    for name, ref in expected.items():
        if name in mapped:
            continue
        if name.endswith(".num_batches_tracked"):  # files from PyTorch < 0.4.1 lack the counter
            mapped[name] = torch.zeros((), dtype=ref.dtype)
        elif cfg.norm == "none" and name.endswith(".bias") and name.removesuffix("bias") + "weight" in mapped:
            mapped[name] = torch.zeros(ref.shape, dtype=ref.dtype)  # the reference's bias-free conv
        else:
            missing.append(name)
    wrong = [f"{source[n]} {tuple(mapped[n].shape)} (i2i {n} needs {tuple(expected[n].shape)})"
             for n in source if mapped[n].shape != expected[n].shape]
    if unexpected or missing or wrong:
        problems = []
        if wrong:
            problems.append(f"shapes that differ: {', '.join(wrong[:6])}")
        if unexpected:
            problems.append(f"tensors with no place in it: {', '.join(unexpected[:6])}")
        if missing:
            problems.append(f"tensors it needs that the file lacks (i2i names): {', '.join(missing[:6])}")
        raise ReferenceImportError(f"{net.path} does not fit i2i's {net.describe()}: " + "; ".join(problems))
    state, storages = {}, set()
    for name, ref in expected.items():
        tensor = mapped[name].detach().to(ref.dtype).contiguous()  # fp16/fp64 saves become i2i's dtypes
        if tensor.untyped_storage().data_ptr() in storages:  # safetensors refuses tensors sharing memory
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        state[name] = tensor
    return cfg, state


