"""Pix2Pix (Isola et al. 2017): a conditional GAN on paired images, G loss = GAN + lambda * L1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from i2i.config import DIRECTIONS, from_options, option
from i2i.data import DataSpec
from i2i.models.base import Batch, Losses, Model, Update, View, frozen
from i2i.models.losses import GAN_LOSSES, GANLoss, discriminator_loss, feature_matching_loss
from i2i.models.registry import register_model
from i2i.nets import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    discriminator_from_options,
    generator_from_options,
)


@dataclass
class Pix2PixConfig:
    """The Pix2Pix objective and its networks. Direction names what G translates (input -> target)."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    direction: str = option("AtoB", choices=DIRECTIONS, help="AtoB: translate A (left half / A folder) into B.")
    gan_loss: str = option("vanilla", choices=GAN_LOSSES, help="The adversarial objective.")
    lambda_l1: float = option(100.0, min=0, help="Weight of the L1 distance to the target.")
    lambda_gp: float = option(10.0, cli=False, help="Gradient penalty weight (the wgangp loss only).")
    lambda_fm: float = option(0.0, min=0, help="Feature matching on the discriminator's intermediate features "
                                               "(pix2pixHD: 10; 0: off).")


@register_model("pix2pix")
class Pix2Pix(Model):
    """Train Pix2Pix on paired images (U-Net generator + PatchGAN discriminator).

    G maps input -> output; D judges (input, image) pairs. Batches hold "input" and "target".
    """

    config_class = Pix2PixConfig
    data_kind = "paired"
    network_fields: ClassVar[dict[str, str]] = {"G": "generator", "D": "discriminator"}
    channel_options: ClassVar[dict[str, str]] = {"input_channels": "Channels of the input images.",
                       "output_channels": "Channels of the target images."}
    examples = """\
  i2i train pix2pix --data datasets/facades --direction BtoA
  i2i train pix2pix --data my_pairs --name maps --max-steps 20000 --precision bf16
  i2i train pix2pix --data my_pairs --name maps --max-steps 40000 --resume   # continue
  i2i train pix2pix --data my_pairs --name ft --init-from checkpoints/maps    # fine-tune
  i2i train pix2pix --data my_pairs --dry-run                                 # show config
  torchrun --standalone --nproc_per_node 4 -m i2i train pix2pix --data my_pairs   # 4 GPUs, one process each"""

    @classmethod
    def resolve_options(cls, opts: dict[str, Any], keep: set[str]) -> dict[str, Any]:
        """--label-nc K feeds K one-hot channels: the input channels follow unless typed."""
        label_nc = opts.get("label_nc") or 0
        if label_nc and "input_channels" not in keep:
            return opts | {"input_channels": label_nc}
        if label_nc and opts["input_channels"] != label_nc:
            raise ValueError(f"--label-nc {label_nc} feeds {label_nc} one-hot channels, but --input-channels is "
                             f"{opts['input_channels']}: drop --input-channels (it follows --label-nc)")
        return opts

    @classmethod
    def config_from_options(cls, opts: dict[str, Any]) -> Pix2PixConfig:
        g = generator_from_options(opts, opts["input_channels"], opts["output_channels"])
        return from_options(Pix2PixConfig, opts, generator=g,
                            discriminator=discriminator_from_options(opts, g.in_channels + g.out_channels))

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
