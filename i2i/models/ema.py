"""Exponential moving average (EMA) of a network's weights, kept in a shadow copy used for inference."""

from __future__ import annotations

import copy

import torch
from torch import nn

EMA_SUFFIX = "_ema"  # a checkpoint keeps the EMA of network G as G_ema.safetensors


class EMA:
    """A shadow copy of `network` (`.module`) whose parameters follow an exponential moving average of its own.

    `update()` after each optimiser step: shadow <- shadow + w * (live - shadow), where w = 1 - decay, or
    with `debias` (default) w = (1 - decay) / (1 - decay**n) at the n-th update: the shadow is then the
    decay-weighted mean of the weights after updates 1..n (Adam's bias correction), so the random initial
    weights never leak in; w approaches 1 - decay once n is a few times 1 / (1 - decay). Without it, at
    decay 0.999 the shadow after a 2,000-step run would still be 14 % (e^-2) the initial weights. Buffers
    (BatchNorm running statistics) are copied, not averaged, as in StyleGAN2-ADA. Updates are foreach
    kernels with a Python float weight: no host-device synchronisation. Create the EMA once the network is
    on its device (or call `to`). The shadow is in eval mode with gradients off.
    """

    def __init__(self, network: nn.Module, decay: float = 0.999, *, debias: bool = True) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        self.network, self.decay, self.debias = network, decay, debias
        self.num_updates = 0
        self.module = copy.deepcopy(network).eval().requires_grad_(False)

    def update_weight(self) -> float:
        """The share of the live weights in the next update."""
        n = self.num_updates + 1
        if not self.debias:
            return 1.0 - self.decay
        if self.decay == 1.0:
            return 1.0 / n  # the limit of the debiased weight: a plain running mean
        return (1.0 - self.decay) / (1.0 - self.decay**n)

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadow towards the network's current weights; copy its buffers."""
        weight = self.update_weight()
        shadow, live = list(self.module.parameters()), list(self.network.parameters())
        if len(shadow) != len(live):
            raise RuntimeError(f"the network has {len(live)} parameters but its EMA {len(shadow)}")
        torch._foreach_lerp_(shadow, live, weight)
        buffers = list(self.module.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(self.network.buffers()))
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow's state dict: same keys and shapes as the network's (loads into a plain generator)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int | None = None) -> None:
        """Restore the shadow (and, when resuming, the update count the debiasing needs)."""
        self.module.load_state_dict(state)
        if num_updates is not None:
            self.num_updates = num_updates

    def copy_to(self, network: nn.Module) -> nn.Module:
        """Load the averaged weights (and buffers) into `network`; returns it."""
        network.load_state_dict(self.module.state_dict())
        return network

    def to(self, device: torch.device | str) -> EMA:
        """Move the shadow to `device` (where the network now lives)."""
        self.module.to(device)
        return self
