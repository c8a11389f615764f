"""CycleGAN (Zhu et al. 2017): two generators, two discriminators, cycle consistency, unpaired data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from i2i.config import from_options, option
from i2i.data import DataSpec
from i2i.models.base import Batch, Losses, Model, Update, View, frozen
from i2i.models.image_pool import ImagePool
from i2i.models.losses import GAN_LOSSES, GANLoss, discriminator_loss
from i2i.models.registry import register_model
from i2i.nets import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    discriminator_from_options,
    generator_from_options,
)


def _generator() -> GeneratorConfig:
    return GeneratorConfig(name="resnet_9blocks", norm="instance", dropout=False)


def _discriminator() -> DiscriminatorConfig:
    return DiscriminatorConfig(name="basic", in_channels=3, norm="instance")


@dataclass
class CycleGANConfig:
    """The CycleGAN objective and its four networks (G_AB: A -> B, G_BA: B -> A, D_A and D_B judge A and B)."""

    g_ab: GeneratorConfig = field(default_factory=_generator)
    g_ba: GeneratorConfig = field(default_factory=_generator)
    d_a: DiscriminatorConfig = field(default_factory=_discriminator)
    d_b: DiscriminatorConfig = field(default_factory=_discriminator)
    gan_loss: str = option("lsgan", choices=GAN_LOSSES, help="The adversarial objective.")
    lambda_cycle: float = option(10.0, min=0, help="Weight of both cycle-consistency L1 terms (lambda_A = lambda_B "
                                                   "in the paper).")
    lambda_identity: float = option(0.5, min=0, help="Identity loss weight, times --lambda-cycle (0: off; needs "
                                                     "equal channels).")
    pool_size: int = option(50, min=0, help="History of generated images shown to the discriminators (0: off).")
    lambda_gp: float = option(10.0, cli=False, help="Gradient penalty weight (the wgangp loss only).")


@register_model("cyclegan")
class CycleGAN(Model):
    """Train CycleGAN on unpaired folders trainA/ and trainB/ (two ResNet generators, two PatchGANs).

    Batches hold unaligned "A" and "B" images. G is updated first, then both discriminators.
    """

    config_class = CycleGANConfig
    data_kind = "unpaired"
    network_fields: ClassVar[dict[str, str]] = {"G_AB": "g_ab", "G_BA": "g_ba", "D_A": "d_a", "D_B": "d_b"}
    channel_options: ClassVar[dict[str, str]] = {"a_channels": "Channels of domain A images.",
                                                 "b_channels": "Channels of domain B images."}
    examples = """\
  i2i train cyclegan --data datasets/summer2winter_yosemite
  i2i train cyclegan --data datasets/horse2zebra --max-steps 20000 --crop-size 128 --precision bf16
  i2i train cyclegan --data datasets/horse2zebra --max-steps 40000 --resume     # continue"""

    @classmethod
    def config_from_options(cls, opts: dict[str, Any]) -> CycleGANConfig:
        a, b = opts["a_channels"], opts["b_channels"]
        return from_options(CycleGANConfig, opts, g_ab=generator_from_options(opts, a, b),
                            g_ba=generator_from_options(opts, b, a), d_a=discriminator_from_options(opts, a),
                            d_b=discriminator_from_options(opts, b))

    def __init__(self, cfg: CycleGANConfig) -> None:
        super().__init__()
        a, b = cfg.g_ab.in_channels, cfg.g_ab.out_channels
        if (cfg.g_ba.in_channels, cfg.g_ba.out_channels, cfg.d_a.in_channels, cfg.d_b.in_channels) != (b, a, a, b):
            raise ValueError(f"inconsistent channels: G_AB maps {a} -> {b}, so G_BA must map {b} -> {a}, "
                             f"D_A must see {a} and D_B {b}")
        if cfg.lambda_identity > 0 and a != b:
            raise ValueError(f"the identity loss needs A and B to have the same channels ({a} vs {b}); "
                             "set lambda_identity to 0")
        self.cfg = cfg
        self.G_AB, self.G_BA = build_generator(cfg.g_ab), build_generator(cfg.g_ba)
        self.D_A, self.D_B = build_discriminator(cfg.d_a), build_discriminator(cfg.d_b)
        self.gan_loss = GANLoss(cfg.gan_loss)
        self.pool_A, self.pool_B = ImagePool(cfg.pool_size, seed=0), ImagePool(cfg.pool_size, seed=1)

    def data_spec(self) -> DataSpec:
        return DataSpec("unpaired", (self.cfg.g_ab.in_channels, self.cfg.g_ab.out_channels))

    def networks(self) -> dict[str, nn.Module]:
        return {"G_AB": self.G_AB, "G_BA": self.G_BA, "D_A": self.D_A, "D_B": self.D_B}

    def generators(self) -> dict[str, str]:
        return {"AtoB": "G_AB", "BtoA": "G_BA"}

    def generator_config(self, name: str) -> GeneratorConfig:
        return {"G_AB": self.cfg.g_ab, "G_BA": self.cfg.g_ba}[name]

    def views(self) -> dict[str, View]:
        """Outputs of each direction are compared with the real images of its target domain (unpaired)."""
        return {"AtoB": View(source="A", target="B", paired=False), "BtoA": View(source="B", target="A", paired=False)}

    def updates(self) -> list[Update]:
        return [Update("G", [*self.G_AB.parameters(), *self.G_BA.parameters()], self.generator_losses),
                Update("D", [*self.D_A.parameters(), *self.D_B.parameters()], self.discriminator_losses)]

    def training_state(self) -> dict:
        """The image pools travel with checkpoints so a resumed run sees the same history."""
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def load_training_state(self, state: dict) -> None:
        device = next(self.parameters()).device
        self.pool_A.load_state_dict(state["pool_A"], device)
        self.pool_B.load_state_dict(state["pool_B"], device)

    def generate(self, batch: Batch) -> Batch:
        fake_B = self.G_AB(batch["A"])
        fake_A = self.G_BA(batch["B"])
        return {"fake_B": fake_B, "rec_A": self.G_BA(fake_B), "fake_A": fake_A, "rec_B": self.G_AB(fake_A)}

    def generator_losses(self, batch: Batch, fakes: Batch) -> Losses:
        real_A, real_B = batch["A"], batch["B"]
        with frozen(self.D_A), frozen(self.D_B):
            gan_AB = self.gan_loss(self.D_B(fakes["fake_B"]), real=True, for_discriminator=False)
            gan_BA = self.gan_loss(self.D_A(fakes["fake_A"]), real=True, for_discriminator=False)
        lam = self.cfg.lambda_cycle
        cycle_A = F.l1_loss(fakes["rec_A"].float(), real_A.float())
        cycle_B = F.l1_loss(fakes["rec_B"].float(), real_B.float())
        losses = {"G_gan_AB": gan_AB, "G_gan_BA": gan_BA, "G_cycle_A": cycle_A, "G_cycle_B": cycle_B}
        loss = gan_AB + gan_BA + lam * (cycle_A + cycle_B)
        if self.cfg.lambda_identity > 0:
            # G_AB should leave a B image unchanged, and G_BA an A image
            idt_B = F.l1_loss(self.G_AB(real_B).float(), real_B.float())
            idt_A = F.l1_loss(self.G_BA(real_A).float(), real_A.float())
            losses.update(G_idt_A=idt_A, G_idt_B=idt_B)
            loss = loss + lam * self.cfg.lambda_identity * (idt_A + idt_B)
        return {"loss": loss, **losses}

    def discriminator_losses(self, batch: Batch, fakes: Batch) -> Losses:
        gp = self.cfg.lambda_gp
        d_A = discriminator_loss(self.gan_loss, self.D_A, batch["A"], self.pool_A.query(fakes["fake_A"]), gp)["loss"]
        d_B = discriminator_loss(self.gan_loss, self.D_B, batch["B"], self.pool_B.query(fakes["fake_B"]), gp)["loss"]
        return {"loss": d_A + d_B, "D_A": d_A, "D_B": d_B}

    @torch.no_grad()
    def samples(self, batch: Batch, fakes: Batch) -> Batch:
        """real A | fake B | reconstructed A | real B | fake A | reconstructed B."""
        return {"real_A": batch["A"], "fake_B": fakes["fake_B"], "rec_A": fakes["rec_A"],
                "real_B": batch["B"], "fake_A": fakes["fake_A"], "rec_B": fakes["rec_B"]}
