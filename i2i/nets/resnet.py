"""ResNet generator (CycleGAN): downsample twice, N residual blocks, upsample twice; reflection padding."""

from __future__ import annotations

import torch
from torch import nn

from i2i.nets.layers import (
    NORMS,
    BlurDownsample,
    BlurUpsample,
    check_choice,
    conv_bias,
    norm_layer,
    upsampling_conv,
)


class ResnetBlock(nn.Module):
    """x + (pad, conv3, norm, ReLU, [dropout], pad, conv3, norm)(x)."""

    def __init__(self, channels: int, norm: str, dropout: bool) -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(channels), nn.ReLU()
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN generator (Johnson et al. style). Inputs must be divisible by 4.

    `upsample` picks the two x2 decoder layers: "deconv" is the reference's 3x3 stride-2 transposed
    convolution, "resize" / "pixelshuffle" see i2i.nets.layers. `antialias` is the reference CUT's layout:
    each stride-2 conv becomes a stride-1 conv, norm, ReLU, then a blur-pool; each transposed conv becomes a
    blur upsampling then a 3x3 conv (its Sequential indices, so the taps 0, 4, 8, 12, 16 are the reference's).
    """

    size_multiple = 4

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        n_blocks: int = 9,
        base_channels: int = 64,
        norm: str = "instance",
        dropout: bool = False,
        upsample: str = "deconv",
        antialias: bool = False,
    ) -> None:
        super().__init__()
        check_choice(norm, NORMS, "generator norm")
        if antialias and upsample != "deconv":
            raise ValueError(f"antialias replaces the transposed convs by blur + conv: upsample must be deconv, "
                             f"got {upsample!r}")
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        c = base_channels
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, c, 7, bias=bias), make_norm(c), nn.ReLU()
        ]
        for mult in (1, 2):
            layers += [nn.Conv2d(c * mult, c * mult * 2, 3, stride=1 if antialias else 2, padding=1, bias=bias),
                       make_norm(c * mult * 2), nn.ReLU()]
            if antialias:
                layers.append(BlurDownsample(c * mult * 2))
        layers += [ResnetBlock(c * 4, norm, dropout) for _ in range(n_blocks)]

        def up_conv(c_in: int, c_out: int) -> nn.Module:
            return upsampling_conv(upsample, c_in, c_out, bias, lambda: nn.ConvTranspose2d(
                c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=bias))

        for mult in (4, 2):
            if antialias:
                layers += [BlurUpsample(c * mult), nn.Conv2d(c * mult, c * mult // 2, 3, padding=1, bias=bias)]
            else:
                layers.append(up_conv(c * mult, c * mult // 2))
            layers += [make_norm(c * mult // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"ResNet generator needs H and W divisible by 4, got {tuple(x.shape[-2:])}")
        return self.model(x)
