"""Speed swaps: faster stand-ins for plain layers, same parameters, buffers and maths, applied in place to a built
network by the trainer and the Translator (nets/ themselves stay plain PyTorch, as the papers describe them).

- `gemm_convolutions`: the U-Net's convolutions, and every resize / pixel-shuffle upsampling layer, run as one
  matrix multiply on small CPU feature maps, where oneDNN spends its time reordering weights.
- `split_batchnorm`: BatchNorm layers that can normalise equal sub-batches on their own (`separate_batches`),
  so a discriminator scores its real and its fake batch in one call with the statistics two calls would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from i2i.nets.layers import PixelShuffleConv2d, ResizeConv2d
from i2i.nets.unet import UNetGenerator

# Up to this many output (conv) or input (transposed conv) positions in a whole batch, oneDNN's CPU
# convolutions spend their time on weight reorders, not maths (the U-Net's inner 4x4 layers: <= 8x8
# positions at batch 1, millions of weights each), and one matrix multiply is faster (README: Performance).
# Larger maps and batches stay with oneDNN, which wins there.
GEMM_MAX_POSITIONS = 64


def _eager_cpu(x: torch.Tensor) -> bool:
    """Traced, compiled and exported graphs keep the standard convolution op (portable, shape-generic)."""
    return x.device.type == "cpu" and not (
        torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
    )


class MatmulConv:
    """A convolution's `_conv` that runs as unfold + one matmul on small CPU feature maps (a mixin for
    nn.Conv2d subclasses: same weights, same maths)."""

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This layer's convolution (stride, padding) with `weight` (any kernel size) and `bias`."""
        k, s, p = weight.shape[-2:], self.stride, self.padding
        plain = (self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros"
                 and not isinstance(p, str) and x.dim() == 4)
        if not plain or not _eager_cpu(x):
            return self._conv_forward(x, weight, bias)
        n, _, h, w = x.shape
        ho, wo = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
        if n * ho * wo > GEMM_MAX_POSITIONS:
            return self._conv_forward(x, weight, bias)
        cols = F.unfold(x, k, padding=p, stride=s)  # N x (C_in*kh*kw) x positions
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # one matmul for the whole batch (a view at N=1)
        c_out = weight.shape[0]
        out = weight.reshape(c_out, -1) @ cols
        out = out.view(c_out, n, ho, wo).transpose(0, 1)
        return out if bias is None else out + bias.to(out.dtype).view(1, -1, 1, 1)


class MatmulConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (same weights, same maths) that runs as one matmul + fold on small CPU inputs.

    A transposed convolution is the adjoint of a convolution: fold (col2im) of W^T @ x.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        k, s, p = self.kernel_size, self.stride, self.padding
        plain = (self.groups == 1 and self.dilation == (1, 1) and self.output_padding == (0, 0)
                 and output_size is None and x.dim() == 4)
        if not plain or not _eager_cpu(x) or x.shape[0] * x.shape[-2] * x.shape[-1] > GEMM_MAX_POSITIONS:
            return super().forward(x, output_size)
        n, c, h, w = x.shape
        ho, wo = (h - 1) * s[0] - 2 * p[0] + k[0], (w - 1) * s[1] - 2 * p[1] + k[1]
        # x^T @ W keeps the weight contiguous (autocast casting a transposed weight copies it slowly)
        cols = x.reshape(n, c, h * w).transpose(1, 2) @ self.weight.reshape(c, -1)  # N x positions x C_out*kh*kw
        out = F.fold(cols.transpose(1, 2), (ho, wo), k, padding=p, stride=s)
        return out if self.bias is None else out + self.bias.to(out.dtype).view(1, -1, 1, 1)


class MatmulConv2d(MatmulConv, nn.Conv2d):
    """nn.Conv2d whose convolution runs as one matmul on small CPU feature maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight, self.bias)


class MatmulResizeConv2d(MatmulConv, ResizeConv2d):
    """ResizeConv2d whose convolutions run as one matmul on small CPU feature maps."""


class MatmulPixelShuffleConv2d(MatmulConv, PixelShuffleConv2d):
    """PixelShuffleConv2d whose convolution runs as one matmul on small CPU feature maps."""


_UPSAMPLING = {ResizeConv2d: MatmulResizeConv2d, PixelShuffleConv2d: MatmulPixelShuffleConv2d}
_UNET = {nn.Conv2d: MatmulConv2d, nn.ConvTranspose2d: MatmulConvTranspose2d}


def gemm_convolutions(net: nn.Module) -> nn.Module:
    """Swap, in place, the layers the GEMM convolutions were measured to speed up: a U-Net's convolutions and
    transposed convolutions, and resize / pixel-shuffle upsampling anywhere. Exact types only (a spectrally
    normalised conv stays as it is); outputs change only by floating-point summation order."""
    for m, swap in _gemm_swaps(net):
        m.__class__ = swap  # the stand-ins add no state: same parameters, buffers and state_dict keys
    return net


def has_gemm_convolutions(net: nn.Module) -> bool:
    """Whether `gemm_convolutions` would swap any layer of `net` (else there is nothing to choose)."""
    return any(True for _ in _gemm_swaps(net))


def _gemm_swaps(net: nn.Module) -> Iterator[tuple[nn.Module, type]]:
    unets = [m for m in net.modules() if isinstance(m, UNetGenerator)]
    in_unet = {id(m) for u in unets for m in u.modules()}
    for m in net.modules():
        swap = _UPSAMPLING.get(type(m)) or (_UNET.get(type(m)) if id(m) in in_unet else None)
        if swap is not None:
            yield m, swap


class SplitBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (same parameters) that can treat its batch as equal sub-batches with their own statistics.

    Inside `separate_batches(net, k)` a batch of k stacked sub-batches is normalised exactly as k
    separate calls would be, running statistics updated in the same order. So a discriminator can
    score its real and its fake batch in one call (one convolution per layer instead of two).
    """

    splits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.splits == 1:
            return self.normalise(x)
        return torch.cat([self.normalise(part) for part in x.chunk(self.splits)])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """One (sub-)batch by its own statistics (i2i.nets.sync_batchnorm shares them between processes)."""
        return super().forward(x)


def split_batchnorm(net: nn.Module) -> nn.Module:
    """Swap every plain nn.BatchNorm2d of `net` for SplitBatchNorm2d in place (same parameters and buffers)."""
    for m in net.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SplitBatchNorm2d
    return net


def one_pass_keeps_batches_apart(net: nn.Module) -> bool:
    """Whether `separate_batches` can keep stacked sub-batches apart in `net`: it has no plain BatchNorm."""
    return not any(isinstance(m, nn.BatchNorm2d) and not isinstance(m, SplitBatchNorm2d) for m in net.modules())


@contextmanager
def separate_batches(net: nn.Module, splits: int) -> Iterator[None]:
    """Within the block, `net`'s SplitBatchNorm2d layers normalise each of `splits` equal sub-batches on their own
    (a network without them, e.g. one not swapped by `split_batchnorm`, is an error: it would mix the halves)."""
    norms = [m for m in net.modules() if isinstance(m, SplitBatchNorm2d)]
    if not one_pass_keeps_batches_apart(net):
        raise TypeError("separate_batches needs SplitBatchNorm2d layers: apply i2i.nets.fast.split_batchnorm first")
    for m in norms:
        m.splits = splits
    try:
        yield
    finally:
        for m in norms:
            m.splits = 1
