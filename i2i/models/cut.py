"""CUT and FastCUT (Park et al. 2020): one generator, one discriminator and a patch MLP head; GAN + PatchNCE."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from i2i.config import from_options, option
from i2i.data import DataSpec
from i2i.models.base import Batch, Losses, Model, Update, View, frozen
from i2i.models.losses import GAN_LOSSES, GANLoss, discriminator_loss, patch_nce_loss
from i2i.models.registry import register_model
from i2i.nets import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    build_patch_mlp,
    discriminator_from_options,
    generator_from_options,
    tap_features,
)

CUT_MODES = ("cut", "fastcut")
# The reference's nce_layers 0,4,8,12,16 of its ResNet Sequential; for a U-Net, the stem and the first encoder levels.
DEFAULT_LAYERS = {"resnet": "model.0,model.4,model.8,model.12,model.16", "unet": "stem,downs.0,downs.1,downs.2,downs.3"}
# What --mode sets (the paper's setups); a typed option wins.
MODE_DEFAULTS = {
    "cut": {"lambda_nce": 1.0, "nce_idt": True, "flip_equivariance": False, "epochs": 200, "decay_epochs": 200},
    "fastcut": {"lambda_nce": 10.0, "nce_idt": False, "flip_equivariance": True, "epochs": 150, "decay_epochs": 50},
}


def _generator() -> GeneratorConfig:
    return GeneratorConfig(name="resnet_9blocks", norm="instance", dropout=False, init="xavier", antialias=True)


def _discriminator() -> DiscriminatorConfig:
    return DiscriminatorConfig(name="basic", in_channels=3, norm="instance", init="xavier", antialias=True)


@dataclass
class CUTConfig:
    """The CUT / FastCUT objective and its networks (G: A -> B, D judges B, F: the patch MLP head)."""

    generator: GeneratorConfig = field(default_factory=_generator)
    discriminator: DiscriminatorConfig = field(default_factory=_discriminator)
    mode: str = option("cut", choices=CUT_MODES,
                       help="The paper's setup for the options you do not type: cut (--lambda-nce 1 --nce-idt, "
                            "200 + 200 epochs) or fastcut (--lambda-nce 10 --no-nce-idt --flip-equivariance, 150 + "
                            "50 epochs).")
    gan_loss: str = option("lsgan", choices=GAN_LOSSES, help="The adversarial objective.")
    lambda_gan: float = option(1.0, min=0, help="Weight of the adversarial loss.")
    lambda_nce: float = option(1.0, min=0, help="PatchNCE weight [default: from --mode].")
    nce_idt: bool = option(True, help="Also PatchNCE between B and G(B) [default: from --mode].")
    flip_equivariance: bool = option(False, help="Feed G a flipped batch half the time, its features flipped back "
                                                 "[default: from --mode].")
    nce_layers: str = option("", help="Generator layers tapped for PatchNCE: module names (model.4, downs.0) or "
                                      "ResNet indices, comma-separated [default: resnet 0,4,8,12,16 as the reference; "
                                      "unet stem,downs.0-3].")
    num_patches: int = option(256, min=1, help="Patches sampled per layer and image.")
    nce_t: float = option(0.07, min=0, min_open=True, help="PatchNCE temperature.")
    mlp_width: int = option(256, cli=False, help="Channels of the patch MLP head (the reference's netF_nc).")
    lambda_gp: float = option(10.0, cli=False, help="Gradient penalty weight (the wgangp loss only).")

    def layers(self) -> list[str]:
        """The tapped module names: a bare index N means the ResNet's `model.N`, as the reference counts."""
        spec = self.nce_layers or DEFAULT_LAYERS["unet" if self.generator.name.startswith("unet") else "resnet"]
        names = [part.strip() for part in spec.split(",") if part.strip()]
        return [f"model.{n}" if n.isdigit() else n for n in names]


@register_model("cut")
class CUT(Model):
    """Train CUT or FastCUT on unpaired folders trainA/ and trainB/ (one G, one D, PatchNCE; A -> B).

    Batches hold unaligned "A" and "B" images. D is updated first, then G together with F.
    """

    config_class = CUTConfig
    data_kind = "unpaired"
    network_fields: ClassVar[dict[str, str]] = {"G": "generator", "D": "discriminator"}
    channel_options: ClassVar[dict[str, str]] = {"a_channels": "Channels of domain A images.",
                                                 "b_channels": "Channels of domain B images."}
    opt_in_options: ClassVar[tuple[str, ...]] = ("antialias",)
    examples = """\
  i2i train cut --data datasets/summer2winter_yosemite
  i2i train cut --data datasets/horse2zebra --mode fastcut --max-steps 20000 --crop-size 128
  i2i train cut --data datasets/horse2zebra --generator unet_256 --no-antialias    # CUT with a U-Net"""

    @classmethod
    def resolve_options(cls, opts: dict[str, Any], keep: set[str]) -> dict[str, Any]:
        """--mode's paper defaults for the options not in `keep`; a U-Net keeps its own sampling."""
        opts = opts | {k: v for k, v in MODE_DEFAULTS[opts["mode"]].items() if k in opts and k not in keep}
        if opts["generator"].startswith("unet") and "antialias" not in keep:
            opts["antialias"] = False  # the blur sampling is the ResNet's
        return opts

    @classmethod
    def config_from_options(cls, opts: dict[str, Any]) -> CUTConfig:
        a, b = opts["a_channels"], opts["b_channels"]
        g = generator_from_options(opts, a, b)
        if g.antialias and not g.name.startswith("resnet"):
            raise ValueError("--antialias is for the ResNet generators, not a U-Net (drop it)")
        d = dataclasses.replace(discriminator_from_options(opts, b),
                                antialias=opts["antialias"] and opts["discriminator"] != "pixel")
        return from_options(CUTConfig, opts, generator=g, discriminator=d)

    def __init__(self, cfg: CUTConfig) -> None:
        super().__init__()
        g, d = cfg.generator, cfg.discriminator
        if cfg.mode not in CUT_MODES:
            raise ValueError(f"unknown CUT mode {cfg.mode!r}; choose from {', '.join(CUT_MODES)}")
        if d.in_channels != g.out_channels:
            raise ValueError(f"D judges G's outputs: it needs {g.out_channels} channels, got {d.in_channels}")
        if cfg.nce_idt and g.in_channels != g.out_channels:
            raise ValueError(f"the NCE identity term feeds B to G, so A and B need the same channels "
                             f"({g.in_channels} vs {g.out_channels}); turn nce_idt off")
        if cfg.num_patches < 1 or cfg.nce_t <= 0 or cfg.mlp_width < 1:
            raise ValueError(f"num_patches and mlp_width must be >= 1 and nce_t > 0, got {cfg.num_patches}, "
                             f"{cfg.mlp_width}, {cfg.nce_t}")
        self.cfg = cfg
        self.layers = cfg.layers()
        self.G = build_generator(g)
        self.D = build_discriminator(d)
        self.F = build_patch_mlp(self._tap_channels(), cfg.mlp_width, g.init, g.init_gain)
        self.gan_loss = GANLoss(cfg.gan_loss)
        self.rng = torch.Generator().manual_seed(0)  # patch positions and flips; checkpointed
        self._flipped = False

    def _tap_channels(self) -> list[int]:
        """The tapped layers' channels, from a pass of a shape-only copy of G (no memory, no compute)."""
        with torch.device("meta"):
            probe = build_generator(self.cfg.generator)
            size = 8 * getattr(probe, "size_multiple", 4)  # large enough for every padding on the way
            features = tap_features(probe, torch.empty(1, self.cfg.generator.in_channels, size, size), self.layers)
        return [f.shape[1] for f in features]

    def data_spec(self) -> DataSpec:
        return DataSpec("unpaired", (self.cfg.generator.in_channels, self.cfg.generator.out_channels))

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, "F": self.F}

    def generators(self) -> dict[str, str]:
        return {"AtoB": "G"}

    def generator_config(self, name: str) -> GeneratorConfig:
        return {"G": self.cfg.generator}[name]

    def views(self) -> dict[str, View]:
        return {"AtoB": View(source="A", target="B", paired=False)}

    def updates(self) -> list[Update]:
        return [Update("D", list(self.D.parameters()), self.discriminator_losses),
                Update("G", [*self.G.parameters(), *self.F.parameters()], self.generator_losses)]

    def training_state(self) -> dict:
        """The sampling generator travels with checkpoints so a resumed run draws the same patches."""
        return {"rng": self.rng.get_state()}

    def load_training_state(self, state: dict) -> None:
        self.rng.set_state(state["rng"])

    def generate(self, batch: Batch) -> Batch:
        real_A = batch["A"]
        real = torch.cat([real_A, batch["B"]]) if self.cfg.nce_idt and self.training else real_A
        self._flipped = (self.cfg.flip_equivariance and self.training
                         and bool(torch.rand((), generator=self.rng) < 0.5))
        fake = self.G(real.flip(3) if self._flipped else real)
        n = real_A.shape[0]
        fakes = {"fake_B": fake[:n]}
        if fake.shape[0] > n:
            fakes["idt_B"] = fake[n:]
        return fakes

    def discriminator_losses(self, batch: Batch, fakes: Batch) -> Losses:
        out = discriminator_loss(self.gan_loss, self.D, batch["B"], fakes["fake_B"].detach(), self.cfg.lambda_gp)
        return {"loss": out.pop("loss"), **{f"D_{k}": v for k, v in out.items()}}

    def nce_per_image(self, sources: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """PatchNCE of each output against its source (G's features of both), averaged over the tapped layers.

        All images go through G's taps and F at once: F is called once per step, so under DistributedDataParallel
        its gradients are synchronised like any network's; the taps run on the bare G (one DDP forward per step).
        """
        g = getattr(self.G, "module", self.G)
        query = tap_features(g, outputs, self.layers)
        if self._flipped:  # the outputs came from flipped inputs: flip their features back into place
            query = [q.flip(3) for q in query]
        key = tap_features(g, sources, self.layers)
        ids = [torch.randperm(k.shape[2] * k.shape[3], generator=self.rng)[: self.cfg.num_patches].to(k.device)
               for k in key]
        pooled = self.F(list(zip(key, query, strict=True)), ids)
        n = sources.shape[0]
        losses = [patch_nce_loss(both[both.shape[0] // 2:], both[: both.shape[0] // 2], n, self.cfg.nce_t,
                                 per_image=True) for both in pooled]
        return self.cfg.lambda_nce * torch.stack(losses).mean(dim=0)

    def generator_losses(self, batch: Batch, fakes: Batch) -> Losses:
        with frozen(self.D):
            gan = self.gan_loss(self.D(fakes["fake_B"]), real=True, for_discriminator=False)
        n = batch["A"].shape[0]
        if "idt_B" in fakes:  # the NCE identity term: G(B) against B, in the same pass
            nce = self.nce_per_image(torch.cat([batch["A"], batch["B"]]), torch.cat([fakes["fake_B"], fakes["idt_B"]]))
            losses = {"G_gan": gan, "G_nce": nce[:n].mean(), "G_nce_idt": nce[n:].mean()}
            total = 0.5 * (losses["G_nce"] + losses["G_nce_idt"])
        else:
            losses = {"G_gan": gan, "G_nce": self.nce_per_image(batch["A"], fakes["fake_B"]).mean()}
            total = losses["G_nce"]
        return {"loss": self.cfg.lambda_gan * gan + total, **losses}

    @torch.no_grad()
    def samples(self, batch: Batch, fakes: Batch) -> Batch:
        """real A | fake B | real B [| G(B)], unflipped."""
        def placed(x: torch.Tensor) -> torch.Tensor:
            return x.flip(3) if self._flipped else x
        out = {"real_A": batch["A"], "fake_B": placed(fakes["fake_B"]), "real_B": batch["B"]}
        if "idt_B" in fakes:
            out["idt_B"] = placed(fakes["idt_B"])
        return out
