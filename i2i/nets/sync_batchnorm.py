"""Synchronised BatchNorm: statistics over the (sub-)batches of every process (torchrun), on the CPU (gloo) as on
GPUs, keeping the one-pass discriminator's sub-batches apart."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from i2i.nets.fast import SplitBatchNorm2d


class SyncBatchNorm2d(SplitBatchNorm2d):
    """SplitBatchNorm2d whose statistics, in training, cover the (sub-)batch of every process together.

    Each part that `separate_batches` splits off is synchronised on its own, so the discriminator's
    one-pass real + fake trick keeps the maths of two passes. Unlike torch.nn.SyncBatchNorm it also runs
    on the CPU (gloo). Same parameters and buffers as BatchNorm2d, so checkpoints load anywhere.
    """

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().normalise(x)
        y, mean, var, count = _SyncBatchNorm.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return y


class _SyncBatchNorm(torch.autograd.Function):
    """Batch normalisation with statistics over all processes: one all-gather forward, one all-reduce backward.

    Forward merges each process's (count, mean, biased variance) exactly (Chan et al.); backward sums
    dy and dy * x_hat over the processes, which gives every process the gradient of the sum of all
    processes' losses, as DistributedDataParallel's averaging expects.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                eps: float) -> tuple[torch.Tensor, ...]:
        channels, dims = x.shape[1], [d for d in range(x.dim()) if d != 1]
        xf = x.float()
        var, mean = torch.var_mean(xf, dim=dims, correction=0)
        count = torch.full((1,), x.numel() // channels, dtype=torch.float32, device=x.device)
        local = torch.cat([count, mean, var])
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local)
        stats = torch.stack(gathered)
        counts, means, variances = stats[:, :1], stats[:, 1:1 + channels], stats[:, 1 + channels:]
        total = counts.sum()
        g_mean = (counts * means).sum(0) / total
        g_var = (counts * (variances + (means - g_mean) ** 2)).sum(0) / total
        invstd = torch.rsqrt(g_var + eps)
        shape = [1, channels] + [1] * (x.dim() - 2)
        x_hat = (xf - g_mean.view(shape)) * invstd.view(shape)
        y = x_hat
        if weight is not None:
            y = y * weight.float().view(shape)
        if bias is not None:
            y = y + bias.float().view(shape)
        ctx.save_for_backward(x_hat, invstd, weight, total)
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(g_mean, g_var, total)
        return y.to(x.dtype), g_mean, g_var, total

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a second derivative is wanted (WGAN-GP's gradient penalty)
            raise RuntimeError("synchronised BatchNorm has no second derivative, which the wgangp gradient penalty "
                               "needs: use --norm instance (as WGAN-GP's critic wants) or --no-sync-bn")
        x_hat, invstd, weight, total = ctx.saved_tensors
        channels, dims = dy.shape[1], [d for d in range(dy.dim()) if d != 1]
        shape = [1, channels] + [1] * (dy.dim() - 2)
        dyf = dy.float()
        sum_dy, sum_dy_xhat = dyf.sum(dims), (dyf * x_hat).sum(dims)
        d_weight = sum_dy_xhat if weight is not None and ctx.needs_input_grad[1] else None
        d_bias = sum_dy if ctx.has_bias and ctx.needs_input_grad[2] else None  # (parameters are fp32)
        d_x = None
        if ctx.needs_input_grad[0]:
            sums = torch.cat([sum_dy, sum_dy_xhat])
            dist.all_reduce(sums)
            mean_dy, mean_dy_xhat = sums[:channels] / total, sums[channels:] / total
            scale = invstd if weight is None else invstd * weight.float()
            d_x = ((dyf - mean_dy.view(shape) - x_hat * mean_dy_xhat.view(shape)) * scale.view(shape)).to(dy.dtype)
        return d_x, d_weight, d_bias, None


def sync_batch_norm(net: nn.Module) -> nn.Module:
    """Turn every SplitBatchNorm2d of `net` into a SyncBatchNorm2d in place, keeping its parameters and buffers
    (the very tensors: optimizers that hold them stay valid)."""
    for name, child in net.named_children():
        if isinstance(child, SplitBatchNorm2d) and not isinstance(child, SyncBatchNorm2d):
            synced = SyncBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                                     track_running_stats=child.track_running_stats)
            synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            synced.train(child.training)
            net.add_module(name, synced)
        else:
            sync_batch_norm(child)
    return net
