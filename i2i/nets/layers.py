"""Shared building blocks: normalisation layers by name and weight initialisation."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

NORMS = ("batch", "instance", "none")
INITS = ("normal", "xavier", "kaiming", "orthogonal")


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """Return a constructor `channels -> norm module` for `kind` in NORMS."""
    if kind == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if kind == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose from {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """Convolutions before BatchNorm need no bias (BN's shift replaces it); all others keep one."""
    return norm != "batch"


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights as in pix2pix/CycleGAN; norm scales ~ N(1, gain), biases 0."""
    if kind not in INITS:
        raise ValueError(f"unknown init {kind!r}; choose from {', '.join(INITS)}")

    def init_one(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(init_one)
    return net
