"""Feature taps by module name (forward hooks, any generator) and CUT's patch MLP head (PatchSampleF's role)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _Tapped(Exception):
    """Raised by the last tap's hook: the rest of the network (its decoder) is not computed."""


def tap_names(net: nn.Module, layers: Sequence[str]) -> None:
    """Raise ValueError unless every name in `layers` is a submodule of `net` (named as in `named_modules()`)."""
    known = dict(net.named_modules())
    missing = [name for name in layers if name not in known or not name]
    if missing:
        tops = ", ".join(name for name, _ in net.named_children())
        raise ValueError(f"no layer {', '.join(map(repr, missing))} in {type(net).__name__} to tap; layers are "
                         f"named by module path, e.g. {tops} and their children (model.4, downs.0)")


def tap_features(net: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> list[torch.Tensor]:
    """The outputs of `net`'s submodules named `layers` (in that order) on input `x`; the forward pass stops
    after the last of them. A module called several times in one pass is tapped at its first call."""
    tap_names(net, layers)
    modules = dict(net.named_modules())
    found: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            found.setdefault(name, output)
            if len(found) == len(set(layers)):
                raise _Tapped
        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in dict.fromkeys(layers)]
    try:
        net(x)
    except _Tapped:
        pass
    finally:
        for h in handles:
            h.remove()
    return [found[name] for name in layers]


class PatchMLP(nn.Module):
    """One 2-layer MLP per tapped layer (Linear, ReLU, Linear to `width`), then L2 normalisation: CUT's netF.

    Built from the tapped layers' channel counts, so it exists (and is saved, resumed and wrapped for several
    processes) from the start; the reference creates it on the first batch.
    """

    def __init__(self, channels: Sequence[int], width: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.ReLU(), nn.Linear(width, width))
                                  for c in channels)

    def forward(self, features: Sequence[Sequence[torch.Tensor]], patch_ids: Sequence[torch.Tensor],
                ) -> list[torch.Tensor]:
        """Per layer: the features at `patch_ids` (flat positions, the same for every image) of each of that
        layer's feature maps (N x C x H x W each, stacked in order), projected and normalised, as a
        (images * patches) x width matrix, image by image. The maps are sampled before they are stacked: a full
        size copy of a 256x256 map costs more than the whole head."""
        out = []
        for mlp, maps, ids in zip(self.mlps, features, patch_ids, strict=True):
            sample = torch.cat([m.flatten(2)[:, :, ids] for m in maps])  # images x C x patches
            out.append(F.normalize(mlp(sample.transpose(1, 2).flatten(0, 1)).float(), dim=1, eps=1e-7))
        return out
