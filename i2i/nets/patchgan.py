"""PatchGAN discriminators: N-layer (basic = 3 layers, 70x70 receptive field), pixel (1x1), multi-scale (pix2pixHD).

Every discriminator has `forward(x)`: a logit map (a list of them, finest scale first, for the multi-scale one),
and `features(x)`: per scale, the output of each LeakyReLU block then the logits (the features pix2pixHD's
feature-matching loss compares), from the same computation as `forward`.
"""

from __future__ import annotations

import torch
from torch import nn

from i2i.nets.layers import BlurDownsample, conv_bias, conv_layer, norm_layer


def _block_outputs(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of each LeakyReLU in `model`, then `model`'s output."""
    out = []
    for layer in model:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            out.append(x)
    return [*out, x]


class PatchDiscriminator(nn.Module):
    """Classifies overlapping patches as real or fake; outputs a map of logits.

    `antialias` (the reference CUT's): each stride-2 conv becomes a stride-1 conv, its norm and LeakyReLU, then a
    blur-pool (i2i.nets.layers.BlurDownsample).
    """

    def __init__(self, in_channels: int, base_channels: int = 64, n_layers: int = 3, norm: str = "batch",
                 antialias: bool = False) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        make_norm, bias, conv = norm_layer(norm), conv_bias(norm), conv_layer(norm)
        c = base_channels
        down = 1 if antialias else 2
        layers: list[nn.Module] = [conv(in_channels, c, 4, stride=down, padding=1), nn.LeakyReLU(0.2)]
        if antialias:
            layers.append(BlurDownsample(c))
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = down if n < n_layers else 1
            layers += [conv(c * prev, c * mult, 4, stride=stride, padding=1, bias=bias),
                       make_norm(c * mult), nn.LeakyReLU(0.2)]
            if antialias and n < n_layers:
                layers.append(BlurDownsample(c * mult))
        layers.append(conv(c * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """[[block 1, ..., block n_layers + 1, logits]]: one scale."""
        return [_block_outputs(self.model, x)]


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: judges each pixel's colour on its own."""

    def __init__(self, in_channels: int, base_channels: int = 64, norm: str = "batch") -> None:
        super().__init__()
        make_norm, bias, conv = norm_layer(norm), conv_bias(norm), conv_layer(norm)
        c = base_channels
        self.model = nn.Sequential(
            conv(in_channels, c, 1), nn.LeakyReLU(0.2),
            conv(c, c * 2, 1, bias=bias), make_norm(c * 2), nn.LeakyReLU(0.2),
            conv(c * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """[[block 1, block 2, logits]]: one scale."""
        return [_block_outputs(self.model, x)]


class MultiscaleDiscriminator(nn.Module):
    """`num_d` independent PatchGANs (pix2pixHD): scale k sees the input average-pooled k times.

    The pooling is pix2pixHD's 3x3 stride-2 average with count_include_pad=False (edges are not darkened).
    Pooling mixes pixels of one image only, so BatchNorm's per-sub-batch statistics (`separate_batches`)
    stay exact at every scale.
    """

    def __init__(self, in_channels: int, base_channels: int = 64, n_layers: int = 3, norm: str = "batch",
                 num_d: int = 2, antialias: bool = False) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError(f"num_d must be >= 1, got {num_d}")
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, base_channels, n_layers, norm, antialias)
                                    for _ in range(num_d))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def _inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        pyramid = [x]
        for _ in range(len(self.scales) - 1):
            pyramid.append(self.downsample(pyramid[-1]))
        return pyramid

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logit maps, finest scale first."""
        return [d(x_k) for d, x_k in zip(self.scales, self._inputs(x), strict=True)]

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale (finest first): each block's output, then the logits."""
        return [d.features(x_k)[0] for d, x_k in zip(self.scales, self._inputs(x), strict=True)]
