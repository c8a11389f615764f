"""Translation's precision and batch size, chosen by measurement on this machine (as training's, see
i2i/training/speed.py): each candidate is timed on the generator itself at the training crop, in seconds per
image, and a lower precision is kept only where its output is within PRECISION_TOLERANCE grey levels of fp32's.
A typed precision or batch size is not measured; I2I_AUTOTUNE=off keeps the fixed rules (runtime/devices.py)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from i2i.runtime import autotune
from i2i.runtime.devices import DTYPES, autocast, default_batch_size, resolve_precision

PRECISION_TOLERANCE = 3.0  # grey levels (of 255), as for training
BATCHES = {"cpu": (8, 1, 4, 16), "cuda": (32, 8, 64)}  # the first is the fixed rule's


@dataclass(frozen=True)
class TranslationSpeed:
    """The precision and batch size a Translator uses, and why (`summary`: empty when nothing was measured)."""

    precision: str
    batch_size: int
    summary: str = ""


def weights_dtype(precision: str) -> torch.dtype:
    """bf16 casts the weights once (faster than autocasting every forward); fp16 keeps autocast's fp32 islands."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def choose(net: nn.Module, device: torch.device, channels: int, size: int, precision: str = "auto",
           batch_size: int | None = None, timer: Any = None) -> TranslationSpeed:
    """The fastest precision and batch size for `net` (an fp32 network on `device`, in eval mode) on `channels` x
    `size` x `size` inputs, among those typed or left to auto."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    if autotune.mode() == "off" or (precision != "auto" and batch_size is not None):
        size_now = batch_size or default_batch_size(device)
        return TranslationSpeed(resolve_precision(precision, device, size_now), size_now)
    notes = []
    if precision != "auto":
        precisions: tuple[str, ...] = (precision,)
    elif kind == "cuda":
        precisions = ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    else:
        ratio = autotune.bf16_slowdown(device)
        precisions = ("fp32", "bf16") if ratio < autotune.BF16_NOT_NATIVE else ("fp32",)
        if len(precisions) == 1:
            notes.append(f"bf16 not timed: its matmuls run {ratio:.1f}x slower than fp32 here")
    axes = {"precision": precisions, "batch_size": (batch_size,) if batch_size else BATCHES[kind]}
    what = {"kind": "translate", "net": [(n, tuple(p.shape)) for n, p in net.named_parameters()][:8],
            "parameters": sum(p.numel() for p in net.parameters()), "channels": channels, "size": size, "axes": axes}
    nets: dict[str, nn.Module] = {"fp32": net}
    best = [float("inf")]
    seeded = torch.Generator().manual_seed(0)
    sample = torch.rand(max(axes["batch_size"]), channels, size, size, generator=seeded) * 2 - 1

    def seconds(setting: autotune.Setting) -> float:
        p, n = setting["precision"], setting["batch_size"]
        if p not in nets:
            nets[p] = copy.deepcopy(net).to(weights_dtype(p))
        x = sample[:n].to(device, weights_dtype(p))

        @torch.no_grad()
        def step() -> None:
            with autocast(device, DTYPES[p] if weights_dtype(p) == torch.float32 else torch.float32):
                nets[p](x)

        if p != "fp32" and not _close(nets["fp32"], nets[p], sample[:1].to(device), p, device):
            return float("inf")
        per_batch = timer(setting, step) if timer is not None else autotune.best_of(
            step, device, give_up_after=3 * best[0] * n)
        best[0] = min(best[0], per_batch / n)
        return per_batch / n  # seconds per image

    verdict = autotune.tune_cached(autotune.machine_key(device, what), axes, seconds, autotune.budget_seconds(device),
                                   relative_cost=lambda setting: setting["batch_size"])
    line = verdict.summary(axes, lambda k, v: v if k == "precision" else f"batch {v}", notes)
    return TranslationSpeed(verdict.chosen["precision"], verdict.chosen["batch_size"], line)


@torch.no_grad()
def _close(exact: nn.Module, lower: nn.Module, x: torch.Tensor, precision: str, device: torch.device) -> bool:
    reference = exact(x).float()
    with autocast(device, DTYPES[precision] if weights_dtype(precision) == torch.float32 else torch.float32):
        other = lower(x.to(weights_dtype(precision))).float()
    return (reference - other).abs().mean().item() * 127.5 <= PRECISION_TOLERANCE
