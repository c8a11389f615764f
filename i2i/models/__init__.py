"""Model registry: the name a user picks on the CLI -> the model class, and configs rebuilt by model name."""

from __future__ import annotations

from typing import Any

from i2i.config import RunConfig
from i2i.models.base import Model, Update, View
from i2i.models.cut import CUT, CUTConfig
from i2i.models.cyclegan import CycleGAN, CycleGANConfig
from i2i.models.pix2pix import Pix2Pix, Pix2PixConfig
from i2i.models.registry import MODELS, register_model

__all__ = ["CUT", "MODELS", "CUTConfig", "CycleGAN", "CycleGANConfig", "Model", "Pix2Pix", "Pix2PixConfig", "Update",
           "View", "build_model", "network_config", "register_model", "run_config_from_dict"]


def run_config_from_dict(d: dict[str, Any]) -> RunConfig:
    """A RunConfig from its saved dict (config.json, weights metadata), with the model's own config class."""
    if d.get("model") not in MODELS:
        raise ValueError(f"unknown model {d.get('model')!r} in config; known: {', '.join(MODELS)}")
    return RunConfig.from_dict(d, MODELS[d["model"]].config_class)


def network_config(cfg: RunConfig, name: str) -> Any:
    """The config (GeneratorConfig, DiscriminatorConfig, ...) of network `name` of `cfg`'s model, or None when the
    model has no such network (its `network_fields` say which field describes which network)."""
    fields = MODELS[cfg.model].network_fields
    return getattr(cfg.model_config, fields[name]) if name in fields else None


def build_model(cfg: RunConfig) -> Model:
    """The model `cfg` names, built (on the CPU, initialised) from its model config."""
    return MODELS[cfg.model](cfg.model_config)
