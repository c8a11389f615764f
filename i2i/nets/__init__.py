"""Network registries: generator and discriminator names -> constructors (keys feed the CLI's choices)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from i2i.config import from_options, option
from i2i.nets.layers import D_NORMS, INITS, NORMS, UPSAMPLES, check_choice, init_weights
from i2i.nets.patchgan import MultiscaleDiscriminator, PatchDiscriminator, PixelDiscriminator
from i2i.nets.resnet import ResnetGenerator
from i2i.nets.taps import PatchMLP, tap_features, tap_names
from i2i.nets.unet import UNetGenerator

__all__ = [
    "DISCRIMINATORS", "D_NORMS", "GENERATORS", "INITS", "NORMS", "UPSAMPLES", "DiscriminatorConfig", "GeneratorConfig",
    "PatchMLP", "build_discriminator", "build_generator", "build_patch_mlp", "discriminator_from_options",
    "generator_from_options", "tap_features", "tap_names",
]


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


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a generator (saved with its weights)."""

    name: str = option("unet_256", flag="generator", choices=tuple(GENERATORS), help="Generator architecture.")
    in_channels: int = option(3, cli=False, help="Input channels.")
    out_channels: int = option(3, cli=False, help="Output channels.")
    base_channels: int = option(64, flag="ngf", min=1, help="Generator base channels.")
    norm: str = option("batch", choices=NORMS, help="Normalisation of the generator (and, unless --d-norm is "
                                                    "given, the discriminator).")
    dropout: bool = option(True, help="Generator dropout.")
    init: str = option("normal", choices=INITS, help="Weight initialisation of every network.")
    init_gain: float = option(0.02, cli=False, help="Scale of the initial weights.")
    upsample: str = option("deconv", choices=UPSAMPLES,
                           help="Generator upsampling: deconv (transposed conv, the papers'), resize (nearest x2 + "
                                "conv: no checkerboard), pixelshuffle (ICNR-initialised sub-pixel conv).")
    antialias: bool = option(False, opt_in=True,
                             help="The reference CUT's anti-aliased sampling: blur-pool down, blur + transposed conv "
                                  "up (ResNet G), stride-1 convs then blur-pool (PatchGAN D).")


@dataclass
class DiscriminatorConfig:
    """Everything needed to rebuild a discriminator.

    `n_layers` is used by the `n_layers` and `multiscale` variants, `num_d` (the number of scales) by
    `multiscale` only (None: 2 there, else 1); `norm` is one of D_NORMS ("spectral": spectral norm on every conv,
    no activation norm).
    """

    name: str = option("basic", flag="discriminator", choices=tuple(DISCRIMINATORS), help="Discriminator architecture.")
    in_channels: int = option(6, cli=False, help="Input channels (a conditional D sees input and output).")
    base_channels: int = option(64, flag="ndf", min=1, help="Discriminator base channels.")
    n_layers: int = option(3, flag="n_layers_d", min=1, help="Depth of the n_layers discriminator.")
    norm: str = option("batch", flag="d_norm", choices=D_NORMS, cli_default=None,
                       help="Discriminator normalisation; spectral: spectral norm on every conv [default: --norm].")
    init: str = option("normal", cli=False, help="Weight initialisation (the CLI's --init sets both networks').")
    init_gain: float = option(0.02, cli=False, help="Scale of the initial weights.")
    num_d: int | None = option(None, min=1, max=4, cli_default=None,
                               help="Scales of --discriminator multiscale (pix2pixHD) [default: 2 there, else 1].")
    antialias: bool = option(False, cli=False, help="PatchGANs: stride-1 convolutions then blur-pool, as the reference "
                                                    "CUT's (the CLI's --antialias sets G's and D's).")

    def __post_init__(self) -> None:
        if self.num_d is None:
            self.num_d = 2 if self.name == "multiscale" else 1


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



def generator_from_options(opts: dict, in_channels: int, out_channels: int) -> GeneratorConfig:
    """The generator the command line's network options describe (`i2i.config.from_options`)."""
    return from_options(GeneratorConfig, opts, in_channels=in_channels, out_channels=out_channels)


def discriminator_from_options(opts: dict, in_channels: int) -> DiscriminatorConfig:
    """The discriminator the network options describe: its norm follows --norm unless --d-norm is given, its
    initialisation is --init's."""
    return from_options(DiscriminatorConfig, opts, in_channels=in_channels, norm=opts["d_norm"] or opts["norm"],
                        init=opts["init"])


def build_patch_mlp(channels: list[int], width: int, init: str = "normal", gain: float = 0.02) -> nn.Module:
    """Construct and initialise CUT's patch MLP head for tapped layers of these channel counts (on the CPU)."""
    return _build(lambda: PatchMLP(channels, width), init, gain)
