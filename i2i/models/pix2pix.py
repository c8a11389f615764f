"""Pix2Pix (Isola et al. 2017): a conditional GAN on paired images, G loss = GAN + lambda * L1."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from i2i.data import DataSpec
from i2i.models.base import Batch, Losses, Model, Update, View, frozen
from i2i.models.losses import GANLoss, discriminator_loss, feature_matching_loss
from i2i.nets import DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator


@dataclass
class Pix2PixConfig:
    """The Pix2Pix objective and its networks. Direction names what G translates (input -> target)."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    direction: str = "AtoB"
    gan_loss: str = "vanilla"
    lambda_l1: float = 100.0
    lambda_gp: float = 10.0  # used by the wgangp loss only
    lambda_fm: float = 0.0  # feature matching on D's intermediate features (pix2pixHD: 10); 0 turns it off


class Pix2Pix(Model):
    """G maps input -> output; D judges (input, image) pairs. Batches hold "input" and "target"."""

    config_class = Pix2PixConfig

    def __init__(self, cfg: Pix2PixConfig) -> None:
        super().__init__()
        g, d = cfg.generator, cfg.discriminator
        if d.in_channels != g.in_channels + g.out_channels:
            raise ValueError(f"the conditional discriminator sees input and output concatenated: it needs "
                             f"{g.in_channels + g.out_channels} channels, got {d.in_channels}")
        self.cfg = cfg
        self.G = build_generator(g)
        self.D = build_discriminator(d)
        self.gan_loss = GANLoss(cfg.gan_loss)

    def data_spec(self) -> DataSpec:
        g = self.cfg.generator
        return DataSpec("paired", (g.in_channels, g.out_channels), self.cfg.direction)

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def generators(self) -> dict[str, str]:
        return {self.cfg.direction: "G"}

    def generator_config(self, name: str) -> GeneratorConfig:
        return {"G": self.cfg.generator}[name]

    def views(self) -> dict[str, View]:
        return {self.cfg.direction: View(source="input", target="target", paired=True)}

    def updates(self) -> list[Update]:
        # D learns from this step's fake first, then G is updated against the new D (as the reference does).
        return [Update("D", list(self.D.parameters()), self.discriminator_losses),
                Update("G", list(self.G.parameters()), self.generator_losses)]

    def generate(self, batch: Batch) -> Batch:
        """The generator forward shared by both updates of one step."""
        return {"output": self.G(batch["input"])}

    def discriminator_losses(self, batch: Batch, fakes: Batch) -> Losses:
        real_pair = torch.cat([batch["input"], batch["target"]], dim=1)
        fake_pair = torch.cat([batch["input"], fakes["output"].detach()], dim=1)
        out = discriminator_loss(self.gan_loss, self.D, real_pair, fake_pair, self.cfg.lambda_gp)
        return {"loss": out.pop("loss"), **{f"D_{k}": v for k, v in out.items()}}

    def generator_losses(self, batch: Batch, fakes: Batch) -> Losses:
        fake_pair = torch.cat([batch["input"], fakes["output"]], dim=1)
        losses = {}
        with frozen(self.D):
            if self.cfg.lambda_fm > 0:
                fake_features = self.D.features(fake_pair)
                with torch.no_grad():  # the real pair's features are targets
                    real_features = self.D.features(torch.cat([batch["input"], batch["target"]], dim=1))
                logits = [scale[-1] for scale in fake_features]
                losses["G_fm"] = feature_matching_loss(real_features, fake_features)
            else:
                logits = self.D(fake_pair)
            losses["G_gan"] = self.gan_loss(logits, real=True, for_discriminator=False)
        losses["G_l1"] = F.l1_loss(fakes["output"].float(), batch["target"].float())
        loss = losses["G_gan"] + self.cfg.lambda_l1 * losses["G_l1"]
        if "G_fm" in losses:
            loss = loss + self.cfg.lambda_fm * losses["G_fm"]
        return {"loss": loss, **losses}

    @torch.no_grad()
    def samples(self, batch: Batch, fakes: Batch) -> Batch:
        return {"input": batch["input"], "output": fakes["output"], "target": batch["target"]}
