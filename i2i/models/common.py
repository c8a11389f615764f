"""Small pieces every model uses: the batch type and a context manager that freezes a network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


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
