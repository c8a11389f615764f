"""Shared building blocks: normalisation layers by name, weight initialisation, upsampling convolutions,
spectrally normalised convolutions."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "instance", "none")  # generators
D_NORMS = (*NORMS, "spectral")  # discriminators: "spectral" = spectral norm on every conv, no activation norm
INITS = ("normal", "xavier", "kaiming", "orthogonal")
# How decoders double the resolution: transposed convolution (the reference), nearest-neighbour resize then
# a 3x3 convolution (Odena et al. 2016), or a 3x3 convolution to 4x the channels then PixelShuffle(2) with
# ICNR initialisation (Shi et al. 2016; Aitken et al. 2017).
UPSAMPLES = ("deconv", "resize", "pixelshuffle")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """Raise ValueError naming `value` and the valid choices unless `value` is one of them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """Return a constructor `channels -> norm module` for `kind` in D_NORMS ("spectral": no activation norm)."""
    if kind == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if kind == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    if kind in ("none", "spectral"):
        return lambda c: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose from {', '.join(D_NORMS)}")


def upsampling_conv(kind: str, in_channels: int, out_channels: int, bias: bool,
                    deconv: Callable[[], nn.Module]) -> nn.Module:
    """The x2 upsampling layer for `kind` in UPSAMPLES; `deconv()` builds the network's own transposed conv."""
    check_choice(kind, UPSAMPLES, "upsampling")
    if kind == "deconv":
        return deconv()
    cls = ResizeConv2d if kind == "resize" else PixelShuffleConv2d
    return cls(in_channels, out_channels, bias=bias)


def blur_filter(channels: int, size: int) -> torch.Tensor:
    """`channels` copies of the normalised binomial filter of `size` taps (1 2 1 for 3), C x 1 x k x k."""
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float32)
    kernel = row[:, None] * row[None, :]
    return (kernel / kernel.sum()).expand(channels, 1, size, size).contiguous()


class BlurDownsample(nn.Module):
    """Anti-aliased x2 downsampling (Zhang 2019, as the reference CUT's `Downsample`): reflect-pad by 1, then a
    fixed 3x3 binomial blur with stride 2, per channel. The filter is a buffer named `filt`, as in the reference."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", blur_filter(channels, 3))

    def reset_filter(self) -> None:
        """Fill `filt` with its fixed values (after a build on the meta device)."""
        with torch.no_grad():
            self.filt.copy_(blur_filter(self.filt.shape[0], 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt.to(x.dtype), stride=2, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """Anti-aliased x2 upsampling (the reference CUT's `Upsample`): replicate-pad by 1, a fixed 4x4 binomial
    transposed convolution with stride 2 (times 4, keeping the mean), cropped to exactly 2x the input size."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", blur_filter(channels, 4) * 4)

    def reset_filter(self) -> None:
        """Fill `filt` with its fixed values (after a build on the meta device)."""
        with torch.no_grad():
            self.filt.copy_(blur_filter(self.filt.shape[0], 4) * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.filt.to(x.dtype), stride=2,
                                 padding=2, groups=x.shape[1])
        return out[:, :, 1:-1, 1:-1]


def conv_layer(norm: str) -> type[nn.Conv2d]:
    """The convolution class a network with `norm` uses: spectrally normalised for "spectral", else nn.Conv2d."""
    return SpectralNormConv2d if norm == "spectral" else nn.Conv2d


class PerImageBatchNorm(nn.Module):
    """BatchNorm that normalises each image by its own statistics, with the trained affine parameters.

    This is what the reference pix2pix computes at test time (train-mode BatchNorm at batch size 1),
    made independent of the batch: an image's output never depends on its batch mates.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def per_image_norm(net: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in `net` (in place) by PerImageBatchNorm."""
    for name, child in net.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(net, name, PerImageBatchNorm(child))
        else:
            per_image_norm(child)
    return net


def conv_bias(norm: str) -> bool:
    """Convolutions before BatchNorm need no bias (BN's shift replaces it); all others keep one."""
    return norm != "batch"


def _init_weight_(weight: torch.Tensor, kind: str, gain: float) -> None:
    if kind == "normal":
        nn.init.normal_(weight, 0.0, gain)
    elif kind == "xavier":
        nn.init.xavier_normal_(weight, gain=gain)
    elif kind == "kaiming":
        nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
    else:
        nn.init.orthogonal_(weight, gain=gain)


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights as in pix2pix/CycleGAN; norm scales ~ N(1, gain), biases 0.

    Every parameter and buffer is set (BatchNorm running statistics reset too), so `net` may come
    from uninitialised memory; a module with parameters of a kind not listed here is an error.
    PixelShuffleConv2d gets ICNR (one kernel drawn per output channel, shared by its sub-pixels);
    SpectralNormConv2d's power-iteration vector is re-estimated for the new weight.
    """
    check_choice(kind, INITS, "init")

    @torch.no_grad()
    def init_one(m: nn.Module) -> None:
        if isinstance(m, PixelShuffleConv2d):
            base = torch.empty_like(m.weight[: m.weight.shape[0] // m.scale**2])
            _init_weight_(base, kind, gain)
            m.weight.copy_(base.repeat_interleave(m.scale**2, dim=0))  # sub-pixel channels are adjacent
        elif isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            _init_weight_(m.weight, kind, gain)
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, SpectralNormConv2d):
                m.reset_power_iteration()
        elif isinstance(m, BlurDownsample | BlurUpsample):
            m.reset_filter()
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()
        elif any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
            raise TypeError(f"init_weights does not know how to initialise {type(m).__name__}")

    net.apply(init_one)
    return net


SMALL_MAP_POSITIONS = 64  # ResizeConv2d upsamples first on maps of at most this many positions (whole batch)


def _phase_taps(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Nearest x2 upsampling then a kernel of 3 taps along `dim`, per output parity: parity 0 reads input
    positions (i-1, i) with taps (k0, k1 + k2), parity 1 reads (i, i+1) with (k0 + k1, k2). The parity axis
    is put in front."""
    k0, k1, k2 = w.unbind(dim)
    return torch.stack([torch.stack([k0, k1 + k2], dim), torch.stack([k0 + k1, k2], dim)])


class ResizeConv2d(nn.Conv2d):
    """x2 nearest-neighbour upsampling, then a 3x3 convolution (padding 1): resize-convolution (Odena et al. 2016).

    Each output pixel depends on a 2x2 input window, as with the reference's 4x4 stride-2 transposed conv,
    but every input pixel is spread evenly over its 2x2 output block before the learnt filter, so there is no
    uneven overlap to print a checkerboard. Nearest rather than bilinear: Odena et al. got their best results
    with it (bilinear is a fixed low-pass on top of the learnt filter: more blur). Weights are a plain 3x3
    Conv2d's (`weight`, `bias`). On larger maps it is computed exactly but with 4/9 of the multiply-adds of
    upsampling first (those of the transposed conv): the four output phases are 2x2 convolutions of the input
    whose kernels are sums of the 3x3 kernel's taps (one conv to 4x the channels at the input's resolution,
    then interleaved).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 3, stride=1, padding=1, bias=bias)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This layer's convolution with `weight` (any kernel size); i2i.nets.fast swaps in a faster one."""
        return self._conv_forward(x, weight, bias)

    def phase_kernels(self) -> torch.Tensor:
        """(out_channels * 4) x in_channels x 2 x 2: row o*4 + a*2 + b is output channel o's phase (a, b)."""
        k = _phase_taps(_phase_taps(self.weight, 2), 4)  # b, a, o, i, 2, 2 (sums only: autocast leaves them fp32)
        return k.permute(2, 1, 0, 3, 4, 5).reshape(-1, self.in_channels, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if n * h * w <= SMALL_MAP_POSITIONS:
            # on small maps (the U-Net's wide inner layers) deriving the phase kernels costs more than the
            # convolution they save (README: Performance)
            return self._conv(F.interpolate(x, scale_factor=2, mode="nearest"), self.weight, self.bias)
        # (h+1) x (w+1) windows of the 1-padded input; phase (a, b) of output pixel (i, j) is window (i+a, j+b)
        p = self._conv(x, self.phase_kernels(), None).unflatten(1, (self.out_channels, 2, 2))
        rows = [torch.stack([p[:, :, a, b, a:a + h, b:b + w] for b in (0, 1)], dim=-1) for a in (0, 1)]
        out = torch.stack(rows, dim=3).reshape(n, self.out_channels, 2 * h, 2 * w)  # n, o, i, a, j, b
        return out if self.bias is None else out + self.bias.to(out.dtype).view(1, -1, 1, 1)


class PixelShuffleConv2d(nn.Conv2d):
    """A 3x3 convolution to `scale**2` times the channels, then PixelShuffle(scale) (sub-pixel convolution).

    Weights are a plain Conv2d's with out_channels * scale**2 rows; row c * scale**2 + k is output channel c at
    sub-pixel k (PixelShuffle's order). `init_weights` gives it ICNR (Aitken et al. 2017): the scale**2 kernels
    of each output channel start equal, so the initial output is nearest upsampling of a convolution, free of
    checkerboard.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, scale: int = 2) -> None:
        super().__init__(in_channels, out_channels * scale**2, 3, stride=1, padding=1, bias=bias)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self._conv(x, self.weight, self.bias), self.scale)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, weight, bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


class SpectralNormConv2d(nn.Conv2d):
    """nn.Conv2d whose weight is divided by its largest singular value sigma (Miyato et al. 2018).

    sigma = u^T W v for the weight reshaped to out x (in*kh*kw); u (the buffer `weight_u`) is refined by one
    power-iteration step per forward in training mode (in eval it is left as is), with no gradient through
    u and v, as in the paper and torch.nn.utils.parametrizations.spectral_norm. sigma is computed in fp32
    whatever autocast does. One step per *call*: scoring real and fake in one batch takes one step where two
    calls would take two; u follows the slowly changing weight either way, and both halves are then scored
    with the same sigma. The state dict is nn.Conv2d's plus `weight_u`.
    """

    eps = 1e-12

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_u", torch.empty(self.out_channels, device=self.weight.device))

    @torch.no_grad()
    def reset_power_iteration(self, steps: int = 15) -> None:
        """A random start vector refined for the current weight (torch uses 15 steps at registration too)."""
        w = self.weight.detach().float().flatten(1)
        u = F.normalize(torch.randn_like(self.weight_u, dtype=torch.float32), dim=0, eps=self.eps)
        for _ in range(steps):
            u = F.normalize(w @ F.normalize(w.T @ u, dim=0, eps=self.eps), dim=0, eps=self.eps)
        self.weight_u.copy_(u)

    def normalised_weight(self) -> torch.Tensor:
        """The weight divided by its estimated spectral norm (one power-iteration step first when training)."""
        with torch.autocast(self.weight.device.type, enabled=False):
            w = self.weight.float().flatten(1)
            with torch.no_grad():
                v = F.normalize(w.T @ self.weight_u.float(), dim=0, eps=self.eps)
                if self.training:
                    u = F.normalize(w @ v, dim=0, eps=self.eps)
                    self.weight_u.copy_(u)
                else:
                    u = self.weight_u.float().clone()  # a later in-place update must not touch this graph
            sigma = torch.dot(u, w @ v)
        return self.weight / sigma.to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalised_weight(), self.bias)
