"""Non-finite training, found early: losses checked where they reach the host anyway, weights before a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

ADVICE = ("try a lower --lr, --precision fp32 (fp16/bf16 overflow), or another --gan-loss (e.g. lsgan); "
          "check the loss weights (--lambda-*)")


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite loss or weight; the message names it, the step and what to try."""


def check_losses(losses: dict[str, float], where: str) -> None:
    """Raise NonFiniteError naming every loss of `losses` that is NaN or infinite (`where`: "at step 5")."""
    bad = [f"{name}={value}" for name, value in losses.items() if not math.isfinite(value)]
    if bad:
        raise NonFiniteError(f"training stopped: non-finite loss {', '.join(bad)} {where}; {ADVICE}")


def step_losses(losses: dict[str, torch.Tensor],
                reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> dict[str, float]:
    """One step's losses on the host, passed through `reduce` (the mean over processes) before the one sync: for
    a run's first step, before the loss meter has flushed."""
    keys = list(losses)
    values = reduce(torch.stack([losses[k].float() for k in keys])).tolist() if keys else []
    return dict(zip(keys, values, strict=True))


def nonfinite_networks(networks: dict[str, nn.Module]) -> list[str]:
    """The names of the networks with a NaN or infinite parameter or buffer (one host sync per network)."""
    bad = []
    for name, net in networks.items():
        tensors = [t for t in [*net.parameters(), *net.buffers()] if t.is_floating_point()]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            bad.append(name)
    return bad
