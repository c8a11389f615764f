"""PatchGAN discriminators: N-layer (basic = 3 layers, 70x70 receptive field) and pixel (1x1)."""

from __future__ import annotations

import torch
from torch import nn

from i2i.nets.layers import conv_bias, norm_layer


class PatchDiscriminator(nn.Module):
    """Classifies overlapping patches as real or fake; outputs a map of logits."""

    def __init__(self, in_channels: int, base_channels: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        c = base_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(c * prev, c * mult, 4, stride=stride, padding=1, bias=bias),
                       make_norm(c * mult), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(c * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: judges each pixel's colour on its own."""

    def __init__(self, in_channels: int, base_channels: int = 64, norm: str = "batch") -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        c = base_channels
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, c, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, c * 2, 1, bias=bias), make_norm(c * 2), nn.LeakyReLU(0.2),
            nn.Conv2d(c * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
