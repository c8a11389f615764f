"""The model contract: what a model implements so that the one trainer, validation, evaluation and
inference can serve it. ARCHITECTURE.md walks through it; pix2pix.py is the smallest complete example."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from i2i.data import DataSpec
from i2i.nets import GeneratorConfig

Batch = dict[str, torch.Tensor]
Losses = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Update:
    """One optimizer's update within a training step.

    `name` names the optimizer, its learning-rate schedule and their state in checkpoints ("D", "G").
    `loss(batch, fakes)` returns the losses of this update: "loss" is back-propagated into `parameters`,
    the other entries are logged (prefix them with the update's name, e.g. "D_real").
    """

    name: str
    parameters: list[nn.Parameter]
    loss: Callable[[Batch, Batch], Losses]


class View(NamedTuple):
    """How one translation direction is scored: its inputs are `batch[source]`, and its outputs are compared
    with `batch[target]`, image by image when `paired` (PSNR/SSIM), else as distributions (FID/KID)."""

    source: str
    target: str
    paired: bool


class Model(nn.Module, ABC):
    """A trainable image-to-image objective. Subclasses set the two class attributes and implement the
    abstract methods; the trainer owns everything else (devices, precision, optimizers, the loop, files).

    A training step is: `fakes = generate(batch)` once under autocast, then for each `Update` of
    `updates()`, in order, its loss is computed, back-propagated and its optimizer stepped.
    """

    config_class: ClassVar[type]  # the model's config dataclass; an instance is the constructor's one argument
    name: ClassVar[str]  # set by @register_model: the CLI command and the configs' "model" field
    data_kind: ClassVar[str]  # "paired" or "unpaired": which data options its train command shows
    network_fields: ClassVar[dict[str, str]]  # network name (networks()) -> the config field describing it
    channel_options: ClassVar[dict[str, str]]  # the train command's channel options (input, output) -> help
    examples: ClassVar[str] = ""  # the train command's examples, one per line
    opt_in_options: ClassVar[tuple[str, ...]] = ()  # network options (marked opt_in) this model's command shows

    @classmethod
    def resolve_options(cls, opts: dict[str, Any], keep: set[str]) -> dict[str, Any]:
        """The train command's options with model-specific defaults filled in (those not in `keep`, the options
        typed or taken from a source); the default changes nothing."""
        return opts

    @classmethod
    @abstractmethod
    def config_from_options(cls, opts: dict[str, Any]) -> Any:
        """The model's config from the train command's options (named like the config fields' options)."""

    @abstractmethod
    def data_spec(self) -> DataSpec:
        """What data the model trains on (paired or unpaired, channels, direction)."""

    @abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """Every network by the name its weights file gets (G.safetensors, D_A.safetensors, ...)."""

    @abstractmethod
    def generators(self) -> dict[str, str]:
        """Direction ("AtoB"/"BtoA") -> the name (in `networks()`) of the generator that translates it."""

    @abstractmethod
    def generator_config(self, name: str) -> GeneratorConfig:
        """The architecture config of generator `name` (channels, size rules) for inference."""

    @abstractmethod
    def updates(self) -> list[Update]:
        """The optimizer updates of one training step, in the order they run."""

    @abstractmethod
    def generate(self, batch: Batch) -> Batch:
        """The generator forward pass that every update of a step shares."""

    @abstractmethod
    def samples(self, batch: Batch, fakes: Batch) -> Batch:
        """Images for the sample grid, in column order (NCHW in [-1, 1])."""

    @abstractmethod
    def views(self) -> dict[str, View]:
        """Direction -> how validation scores that direction's generator."""

    def training_state(self) -> dict[str, Any]:
        """Model-owned state to checkpoint beside the weights (e.g. CycleGAN's image pools)."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what `training_state` returned."""

    def wrap_networks(self, wrap: Callable[[str, nn.Module], nn.Module]) -> None:
        """Replace each network of `networks()` by `wrap(name, network)` (e.g. DistributedDataParallel), so the
        model's own calls (`self.G(x)`) go through the wrappers and `networks()` returns them.

        This default finds each network among the model's direct submodules, by identity; a model that
        keeps a network elsewhere (nested, or referenced twice) overrides it to re-assign its own attributes.
        """
        networks = self.networks()
        found = [(name, attr) for name, net in networks.items()
                 for attr, child in self._modules.items() if child is net]
        if sorted(name for name, _ in found) != sorted(networks):
            raise TypeError(f"{type(self).__name__}: each of its networks ({', '.join(networks)}) must be one direct "
                            "submodule for the default wrap_networks; override it to re-assign them")
        for name, attr in found:
            self.add_module(attr, wrap(name, networks[name]))  # replaces the registered child in place


@contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """Turn off gradients for `net`'s parameters (they still pass gradients through to inputs)."""
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
