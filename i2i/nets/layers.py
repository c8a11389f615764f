"""Shared building blocks: normalisation layers by name, weight initialisation, CPU-friendly convolutions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "instance", "none")
INITS = ("normal", "xavier", "kaiming", "orthogonal")


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """Return a constructor `channels -> norm module` for `kind` in NORMS."""
    if kind == "batch":
        return lambda c: SplitBatchNorm2d(c, affine=True, track_running_stats=True)
    if kind == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose from {', '.join(NORMS)}")


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
        """One (sub-)batch by its own statistics (i2i.distributed overrides this to share them between processes)."""
        return super().forward(x)


@contextmanager
def separate_batches(net: nn.Module, splits: int) -> Iterator[None]:
    """Within the block, `net`'s BatchNorm layers normalise each of `splits` equal sub-batches on its own."""
    norms = [m for m in net.modules() if isinstance(m, SplitBatchNorm2d)]
    for m in norms:
        m.splits = splits
    try:
        yield
    finally:
        for m in norms:
            m.splits = 1


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


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights as in pix2pix/CycleGAN; norm scales ~ N(1, gain), biases 0.

    Every parameter and buffer is set (BatchNorm running statistics reset too), so `net` may come
    from uninitialised memory; a module with parameters of a kind not listed here is an error.
    """
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
            m.reset_running_stats()
        elif any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
            raise TypeError(f"init_weights does not know how to initialise {type(m).__name__}")

    net.apply(init_one)
    return net


# Up to this many output (conv) or input (transposed conv) positions in a whole batch, oneDNN's CPU
# convolutions spend their time on weight reorders, not maths: on the U-Net's inner 4x4 layers
# (<= 8x8 positions at batch 1, up to 8.4 M weights each) one matrix multiply was 1.5-2.5x faster,
# fwd + bwd in bf16 (the training step 0.44 -> 0.37 s, batch-1 translation ~20 % faster). Larger
# maps and batches stay with oneDNN, which wins there.
GEMM_MAX_POSITIONS = 64


def _eager_cpu(x: torch.Tensor) -> bool:
    """Traced, compiled and exported graphs keep the standard convolution op (portable, shape-generic)."""
    return x.device.type == "cpu" and not (
        torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
    )


class MatmulConv2d(nn.Conv2d):
    """nn.Conv2d (same weights, same maths) that runs as unfold + one matmul on small CPU feature maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel_size, self.stride, self.padding
        plain = (self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros"
                 and not isinstance(p, str) and x.dim() == 4)
        if not plain or not _eager_cpu(x):
            return super().forward(x)
        n, _, h, w = x.shape
        ho, wo = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
        if n * ho * wo > GEMM_MAX_POSITIONS:
            return super().forward(x)
        cols = F.unfold(x, k, padding=p, stride=s)  # N x (C_in*kh*kw) x positions
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # one matmul for the whole batch (a view at N=1)
        out = self.weight.reshape(self.out_channels, -1) @ cols
        out = out.view(self.out_channels, n, ho, wo).transpose(0, 1)
        return out if self.bias is None else out + self.bias.to(out.dtype).view(1, -1, 1, 1)


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
