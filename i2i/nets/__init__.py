"""Network registries: generator and discriminator names -> constructors (keys feed the CLI's choices)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from i2i.nets.layers import D_NORMS, INITS, NORMS, UPSAMPLES, check_choice, init_weights
from i2i.nets.patchgan import MultiscaleDiscriminator, PatchDiscriminator, PixelDiscriminator
from i2i.nets.resnet import ResnetGenerator
from i2i.nets.taps import PatchMLP, tap_features, tap_names
from i2i.nets.unet import UNetGenerator

__all__ = [
    "DISCRIMINATORS", "D_NORMS", "GENERATORS", "INITS", "NORMS", "UPSAMPLES", "DiscriminatorConfig", "GeneratorConfig",
    "PatchMLP", "build_discriminator", "build_generator", "build_patch_mlp", "tap_features", "tap_names",
]


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a generator (saved with its weights); `upsample` is one of UPSAMPLES."""

    name: str = "unet_256"
    in_channels: int = 3
    out_channels: int = 3
    base_channels: int = 64
    norm: str = "batch"
    dropout: bool = True
    init: str = "normal"
    init_gain: float = 0.02
    upsample: str = "deconv"
    antialias: bool = False  # ResNet only: the reference CUT's blur-pool down / blur up sampling (CUT's default)


@dataclass
class DiscriminatorConfig:
    """Everything needed to rebuild a discriminator.

    `n_layers` is used by the `n_layers` and `multiscale` variants, `num_d` (the number of scales) by
    `multiscale` only; `norm` is one of D_NORMS ("spectral": spectral norm on every conv, no activation norm).
    """

    name: str = "basic"
    in_channels: int = 6
    base_channels: int = 64
    n_layers: int = 3
    norm: str = "batch"
    init: str = "normal"
    init_gain: float = 0.02
    num_d: int = 1
    antialias: bool = False  # PatchGANs: stride-1 convs then blur-pool, as the reference CUT's (CUT's default)


def _unet(num_downs: int) -> Callable[[GeneratorConfig], nn.Module]:
    return lambda c: UNetGenerator(c.in_channels, c.out_channels, num_downs, c.base_channels, c.norm, c.dropout,
                                   c.upsample)


def _resnet(n_blocks: int) -> Callable[[GeneratorConfig], nn.Module]:
    return lambda c: ResnetGenerator(c.in_channels, c.out_channels, n_blocks, c.base_channels, c.norm, c.dropout,
                                     c.upsample, c.antialias)


GENERATORS: dict[str, Callable[[GeneratorConfig], nn.Module]] = {
    "unet_64": _unet(6),  # small images and the embedded demo
    "unet_128": _unet(7),
    "unet_256": _unet(8),
    "resnet_6blocks": _resnet(6),
    "resnet_9blocks": _resnet(9),
}

DISCRIMINATORS: dict[str, Callable[[DiscriminatorConfig], nn.Module]] = {
    "basic": lambda c: PatchDiscriminator(c.in_channels, c.base_channels, 3, c.norm, c.antialias),
    "n_layers": lambda c: PatchDiscriminator(c.in_channels, c.base_channels, c.n_layers, c.norm, c.antialias),
    "pixel": lambda c: PixelDiscriminator(c.in_channels, c.base_channels, c.norm),
    "multiscale": lambda c: MultiscaleDiscriminator(c.in_channels, c.base_channels, c.n_layers, c.norm, c.num_d,
                                                    c.antialias),
}


def _build(make: Callable[[], nn.Module], init: str, gain: float) -> nn.Module:
    # Built on the meta device, then allocated and initialised once: PyTorch's default init
    # would otherwise fill every weight a first time only for init_weights to overwrite it
    # (0.24 s of a 0.45 s unet_256 build). init_weights covers every parameter and buffer.
    # A caller that builds under `with torch.device("meta")` is about to load weights: the
    # network stays on the meta device, neither allocated nor initialised.
    stay_meta = torch.empty(0).device.type == "meta"
    with torch.device("meta"):
        net = make()
    return net if stay_meta else init_weights(net.to_empty(device="cpu"), init, gain)


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    """Construct and initialise the generator `cfg` describes (on the CPU)."""
    check_choice(cfg.name, tuple(GENERATORS), "generator")
    check_choice(cfg.norm, NORMS, "generator norm")
    check_choice(cfg.upsample, UPSAMPLES, "upsampling")
    if cfg.antialias and not cfg.name.startswith("resnet"):
        raise ValueError(f"antialias is an option of the ResNet generators, not {cfg.name!r}")
    return _build(lambda: GENERATORS[cfg.name](cfg), cfg.init, cfg.init_gain)


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    """Construct and initialise the discriminator `cfg` describes (on the CPU)."""
    check_choice(cfg.name, tuple(DISCRIMINATORS), "discriminator")
    check_choice(cfg.norm, D_NORMS, "discriminator norm")
    if cfg.num_d != 1 and cfg.name != "multiscale":
        raise ValueError(f"num_d must be 1 for the {cfg.name!r} discriminator (only 'multiscale' has several "
                         f"scales), got {cfg.num_d}")
    if cfg.antialias and cfg.name == "pixel":
        raise ValueError("antialias changes the PatchGANs' downsampling; the pixel discriminator has none")
    return _build(lambda: DISCRIMINATORS[cfg.name](cfg), cfg.init, cfg.init_gain)


def build_patch_mlp(channels: list[int], width: int, init: str = "normal", gain: float = 0.02) -> nn.Module:
    """Construct and initialise CUT's patch MLP head for tapped layers of these channel counts (on the CPU)."""
    return _build(lambda: PatchMLP(channels, width), init, gain)
