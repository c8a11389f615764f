"""Model registry: the name a user picks on the CLI -> the model class (its `config_class` builds it)."""

from __future__ import annotations

from i2i.models.cyclegan import CycleGAN, CycleGANConfig
from i2i.models.pix2pix import Pix2Pix, Pix2PixConfig

MODELS = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN}

__all__ = ["MODELS", "CycleGAN", "CycleGANConfig", "Pix2Pix", "Pix2PixConfig"]
