"""U-Net generator with skip connections (pix2pix): unet_64/128/256 have 6/7/8 downsamplings."""

from __future__ import annotations

import torch
from torch import nn

from i2i.nets.layers import (
    NORMS,
    check_choice,
    conv_bias,
    norm_layer,
    upsampling_conv,
)


class UNetGenerator(nn.Module):
    """Encoder-decoder whose decoder concatenates each encoder level's activation.

    Layer for layer the reference pix2pix U-Net: 4x4 stride-2 convolutions, LeakyReLU(0.2) down,
    ReLU up, no norm on the outermost and innermost encoder convs, dropout(0.5) on the first
    `num_downs - 5` decoder blocks (the ones at 8x base width) when `dropout` is on. As in the
    reference (whose in-place LeakyReLU alters the tensor it concatenates), each skip carries the
    LeakyReLU-activated encoder output. Inputs must be divisible by 2**num_downs.
    `upsample` picks the decoder's x2 layers (every one, the output layer included): "deconv" is the
    reference's 4x4 stride-2 transposed convolution, "resize" / "pixelshuffle" see i2i.nets.layers.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        base_channels: int = 64,
        norm: str = "batch",
        dropout: bool = True,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        check_choice(norm, NORMS, "generator norm")
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        self.num_downs = num_downs
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        widths = [base_channels * m for m in (1, 2, 4, 8)] + [base_channels * 8] * (num_downs - 4)

        def down(c_in: int, c_out: int, normed: bool) -> nn.Sequential:
            conv = nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=bias)
            return nn.Sequential(conv, make_norm(c_out)) if normed else nn.Sequential(conv)

        def up_conv(c_in: int, c_out: int, bias: bool) -> nn.Module:
            return upsampling_conv(upsample, c_in, c_out, bias,
                                   lambda: nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias))

        def up(c_in: int, c_out: int, drop: bool) -> nn.Sequential:
            layers = [nn.ReLU(), up_conv(c_in, c_out, bias)]
            layers.append(make_norm(c_out))
            if drop:
                layers.append(nn.Dropout(0.5))
            return nn.Sequential(*layers)

        self.stem = nn.Conv2d(in_channels, widths[0], 4, stride=2, padding=1, bias=bias)
        self.act = nn.LeakyReLU(0.2)
        # encoder levels 1..num_downs-1; the last (innermost) has no norm
        self.downs = nn.ModuleList(
            down(widths[i - 1], widths[i], normed=i < num_downs - 1) for i in range(1, num_downs)
        )
        # decoder, innermost first: the innermost up sees no skip, every other sees 2x its width;
        # the num_downs - 5 blocks right after the innermost one get dropout
        ups = []
        for k, i in enumerate(range(num_downs - 1, 0, -1)):
            c_in = widths[i] if k == 0 else widths[i] * 2
            ups.append(up(c_in, widths[i - 1], drop=dropout and 1 <= k <= num_downs - 5))
        self.ups = nn.ModuleList(ups)
        self.head = nn.Sequential(
            nn.ReLU(), up_conv(widths[0] * 2, out_channels, bias=True), nn.Tanh()
        )

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this."""
        return 2**self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"U-Net with {self.num_downs} downsamplings needs H and W divisible by {m}, "
                             f"got {tuple(x.shape[-2:])}; pad or resize the input")
        h = self.stem(x)
        skips = []
        for down in self.downs:
            h = self.act(h)
            skips.append(h)
            h = down(h)
        for up in self.ups:
            h = torch.cat([skips.pop(), up(h)], dim=1)
        return self.head(h)
