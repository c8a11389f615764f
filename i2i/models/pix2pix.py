"""Pix2Pix (Isola et al. 2017): a conditional GAN on paired images, G loss = GAN + lambda * L1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from i2i.config import DataConfig
from i2i.models.common import Batch, frozen
from i2i.models.losses import GANLoss, discriminator_loss
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


class Pix2Pix(nn.Module):
    """G maps input -> output; D judges (input, image) pairs. Batches hold "input" and "target"."""

    config_class = Pix2PixConfig
    data_kind = "paired"
    # D learns from this step's fake first, then G is updated against the new D (as the reference does).
    update_order = ("D", "G")

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

    def networks(self) -> dict[str, nn.Module]:
        """Every network by the name its weights file gets."""
        return {"G": self.G, "D": self.D}

    def generators(self) -> dict[str, str]:
        """Direction label -> name of the network that translates it."""
        return {self.cfg.direction: "G"}

    def val_views(self) -> dict[str, tuple[str, str, bool]]:
        """Direction -> (batch key of its inputs, batch key of the images to compare with, paired?)."""
        return {self.cfg.direction: ("input", "target", True)}

    def generator_config(self, name: str) -> GeneratorConfig:
        """The architecture config of generator `name` (channels, size rules) for inference."""
        return {"G": self.cfg.generator}[name]

    def make_dataset(self, data: DataConfig, split: str = "train", train: bool = True) -> Dataset:
        """The paired data this model trains on, with the channel counts and direction it expects."""
        from i2i.data.paired import PairedDataset  # the data pipeline is only needed for training
        from i2i.data.transforms import paired_transform

        g = self.cfg.generator
        return PairedDataset(data.root, split=split, layout=data.layout, direction=self.cfg.direction,
                             in_channels=g.in_channels, out_channels=g.out_channels,
                             transform=paired_transform(data, train), strict=data.strict)

    def training_state(self) -> dict:
        """Model-owned state to checkpoint beside the weights (Pix2Pix has none)."""
        return {}

    def load_training_state(self, state: dict) -> None:
        pass

    def optim_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"G": list(self.G.parameters()), "D": list(self.D.parameters())}

    def generate(self, batch: Batch) -> Batch:
        """The generator forward shared by both updates of one step."""
        return {"output": self.G(batch["input"])}

    def discriminator_step(self, batch: Batch, fakes: Batch) -> Batch:
        real_pair = torch.cat([batch["input"], batch["target"]], dim=1)
        fake_pair = torch.cat([batch["input"], fakes["output"].detach()], dim=1)
        out = discriminator_loss(self.gan_loss, self.D, real_pair, fake_pair, self.cfg.lambda_gp)
        return {"loss": out.pop("loss"), **{f"D_{k}": v for k, v in out.items()}}

    def generator_step(self, batch: Batch, fakes: Batch) -> Batch:
        with frozen(self.D):
            fake_pair = torch.cat([batch["input"], fakes["output"]], dim=1)
            loss_gan = self.gan_loss(self.D(fake_pair), real=True, for_discriminator=False)
        loss_l1 = F.l1_loss(fakes["output"].float(), batch["target"].float())
        return {"loss": loss_gan + self.cfg.lambda_l1 * loss_l1, "G_gan": loss_gan, "G_l1": loss_l1}

    def steps(self) -> dict[str, Callable[[Batch, Batch], Batch]]:
        """Update name -> the step that computes its losses (in `update_order`)."""
        return {"D": self.discriminator_step, "G": self.generator_step}

    @torch.no_grad()
    def samples(self, batch: Batch, fakes: Batch) -> Batch:
        """Images for the sample grid, in column order."""
        return {"input": batch["input"], "output": fakes["output"], "target": batch["target"]}
