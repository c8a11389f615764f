"""How a run computes, chosen by measurement: precision, memory layout and the speed swaps of i2i/nets/fast.py.

Every option left at `auto` (None) becomes an axis of candidates; each candidate setting is timed on a copy of the
run's own freshly built networks, on a batch of the run's own shape (one forward + backward of every update, no
optimizer step), and the fastest whose generator output matches fp32's within PRECISION_TOLERANCE is kept
(i2i/runtime/autotune.py: coordinate descent, a fixed budget, a cached verdict). Where one step at the run's crop
is too slow for the budget (CycleGAN on a CPU), the candidates are timed at a smaller crop, the largest that
fits, which the generator still accepts: a proxy that keeps the networks and the batch as they are. Options the
user typed are used as typed and not measured; with I2I_AUTOTUNE=off the fixed rules below decide.
The random streams of the process are left as they were, so a measured run trains exactly as a typed one.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from i2i.config import RunConfig
from i2i.models import Model
from i2i.nets.fast import SplitBatchNorm2d, gemm_convolutions, has_gemm_convolutions, split_batchnorm
from i2i.runtime import autotune
from i2i.runtime.devices import DTYPES, autocast, resolve_precision
from i2i.training.distributed import Group

PRECISION_TOLERANCE = 3.0  # grey levels (of 255): the mean |output - fp32 output| a lower precision may differ by
Timer = Callable[[autotune.Setting, Callable[[], None]], float]  # (setting, one step) -> seconds per step

SMALLEST_PROXY = 64  # the smallest crop timed in place of the run's (a PatchGAN still sees several patches)


@dataclass(frozen=True)
class Speed:
    """How the networks run (see TrainConfig for each option)."""

    precision: str
    channels_last: bool
    gemm_convolutions: bool
    one_pass_batchnorm: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def apply(model: Model, speed: Speed) -> None:
    """Swap the chosen speed layers into every network of `model`, in place (same weights and maths)."""
    for net in model.networks().values():
        if speed.gemm_convolutions:
            gemm_convolutions(net)
        if speed.one_pass_batchnorm:
            split_batchnorm(net)


def choose(cfg: RunConfig, model: Model, device: torch.device, group: Group, sync_bn: bool = False,
           timer: Timer | None = None) -> tuple[Speed, dict[str, Any] | None]:
    """The Speed for this run and its record (what was measured, for config.json; None when nothing was).

    Rank 0 decides and every other process takes its verdict (they must agree: DDP keeps one model in step). A
    verdict the run recorded on this same device and torch (a resumed run) is reused without measuring."""
    t = cfg.train
    slow_bf16 = None
    if t.precision == "auto" and device.type == "cpu" and autotune.mode() != "off":
        ratio = autotune.bf16_slowdown(device)
        slow_bf16 = ratio if ratio >= autotune.BF16_NOT_NATIVE else None
    axes = candidate_axes(cfg, model, device, sync_bn=sync_bn and group.active, skip_bf16=slow_bf16 is not None)
    if all(len(options) == 1 for options in axes.values()):
        return Speed(**{k: v[0] for k, v in axes.items()}), None
    if autotune.mode() == "off":
        return rules(cfg, device, axes), None
    here = {"device": autotune.device_name(device), "torch": torch.__version__}
    recorded = t.speed if isinstance(t.speed, dict) else None
    if recorded is not None and all(recorded.get(k) == v for k, v in here.items()):
        chosen = recorded.get("chosen", {})
        if all(chosen.get(k) in v for k, v in axes.items()):
            return Speed(**{k: chosen[k] for k in axes}), recorded
    record = None
    if group.main:
        verdict = measure(cfg, model, device, axes, timer)
        notes = [f"bf16 not timed: its matmuls run {slow_bf16:.1f}x slower than fp32 here"] if slow_bf16 else []
        line = summary(verdict, axes, notes)
        record = here | {"chosen": verdict.chosen, "summary": line, "cached": verdict.cached,
                         "tuning_seconds": round(verdict.tuning_seconds, 2),
                         "timings": [timed | {"seconds": round(timed["seconds"], 4)} for timed in verdict.timings]}
    record = group.gather(record)[0]  # rank 0's verdict, on every process
    return Speed(**{k: record["chosen"][k] for k in axes}), record


def candidate_axes(cfg: RunConfig, model: Model, device: torch.device, sync_bn: bool = False,
                   skip_bf16: bool = False) -> dict[str, tuple]:
    """Per Speed field, the options worth timing here (the first is the baseline); a typed option has one."""
    t = cfg.train
    cuda = device.type == "cuda"
    if t.precision != "auto":
        precision: tuple = (t.precision,)
    elif cuda:
        precision = ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    else:
        precision = ("fp32",) if skip_bf16 else ("fp32", "bf16")
    nets = list(model.networks().values())
    has_batchnorm = any(type(m) in (nn.BatchNorm2d, SplitBatchNorm2d) for net in nets for m in net.modules())
    has_gemm = any(has_gemm_convolutions(net) for net in nets)

    def axis(typed: bool | None, when_auto: tuple) -> tuple:
        return (typed,) if typed is not None else when_auto

    axes = {
        "precision": precision,
        "channels_last": axis(t.channels_last, (True, False) if cuda else (False, True)),
        # the GEMM convolutions act on the CPU only; there they are the baseline (measured faster where written)
        "gemm_convolutions": axis(t.gemm_convolutions, (True, False) if has_gemm and not cuda else (not cuda,)),
        # one-pass BatchNorm has nothing to do without BatchNorm, and synchronised BatchNorm (DDP) needs it
        "one_pass_batchnorm": axis(t.one_pass_batchnorm, (True, False) if has_batchnorm and not sync_bn else (True,)),
    }
    # the order axes are timed in, the likeliest to pay first (the budget may not reach the last): channels last
    # is a GPU layout (1.15x slower on the CPUs measured), the GEMM convolutions' payoff varies by CPU
    order = (("precision", "channels_last", "one_pass_batchnorm", "gemm_convolutions") if cuda else
             ("precision", "gemm_convolutions", "one_pass_batchnorm", "channels_last"))
    return {name: axes[name] for name in order}


def rules(cfg: RunConfig, device: torch.device, axes: dict[str, tuple]) -> Speed:
    """The fixed rules (I2I_AUTOTUNE=off): precision by device kind and batch size, every axis at its baseline."""
    first = {k: v[0] for k, v in axes.items()}
    precision = resolve_precision(cfg.train.precision, device, cfg.train.batch_size)
    return Speed(**(first | {"precision": precision}))


def measure(cfg: RunConfig, model: Model, device: torch.device, axes: dict[str, tuple],
            timer: Timer | None = None) -> autotune.Verdict:
    """Time the candidate settings of `axes` on copies of `model` (which is left untouched), cached per machine."""
    what = {"kind": "train", "model": cfg.model, "config": dataclasses.asdict(cfg.model_config),
            "batch": cfg.train.batch_size, "crop": cfg.data.crop_size, "axes": axes}
    key = autotune.machine_key(device, what)
    found = autotune.lookup(key, axes)
    if found is not None:
        return found
    budget = autotune.budget_seconds(device)
    baseline = {k: v[0] for k, v in axes.items()}
    timed: dict[int, float] = {}  # crop -> the baseline's seconds per step there (the proxy probe's)
    best = [float("inf")]

    def seconds_at(crop: int, setting: autotune.Setting) -> float:
        if setting == baseline and crop in timed:
            return timed[crop]
        step, close_enough = training_step(cfg, model, device, Speed(**setting), crop)
        if not close_enough:
            return float("inf")
        if timer is not None:
            result = timer(setting, step)
        else:
            result = autotune.best_of(step, device, give_up_after=3 * best[0])
        best[0] = min(best[0], result)
        return result

    with preserved_random_state(device):
        started = time.perf_counter()
        crop, notes, probe_cost = cfg.data.crop_size, [], 0.0
        crops = proxy_crops(cfg, model)
        settings = 1 + sum(len(options) - 1 for options in axes.values())
        if len(crops) > 1:  # time the baseline at the smallest crop first: does the run's own fit?
            smallest = crops[-1]
            timed[smallest] = seconds_at(smallest, baseline)
            probe_cost = time.perf_counter() - started
            left = budget - probe_cost
            # a setting costs its warm-up and two timed steps, building the copy about half a step more
            crop = next((c for c in crops if timed[smallest] * (c / smallest) ** 2 * 3.5 * settings <= left),
                        smallest)
            if crop != cfg.data.crop_size:
                notes = [f"timed at {crop}x{crop}, a proxy of the run's {cfg.data.crop_size}x{cfg.data.crop_size}"]
            best[0] = timed.get(crop, float("inf"))
        verdict = autotune.tune(axes, lambda setting: seconds_at(crop, setting),
                                budget - (time.perf_counter() - started),
                                setting_cost=probe_cost if crop in timed else None)
        verdict.budget, verdict.notes, verdict.key = budget, notes, key
        verdict.tuning_seconds = time.perf_counter() - started
    autotune.store(key, verdict)
    return verdict


def proxy_crops(cfg: RunConfig, model: Model) -> list[int]:
    """The run's crop, then its halves down to SMALLEST_PROXY that every generator accepts (largest first)."""
    multiple = max(getattr(net, "size_multiple", 1) for name, net in model.networks().items()
                   if name in model.generators().values())
    crops = [cfg.data.crop_size]
    while crops[-1] % 2 == 0 and crops[-1] // 2 >= SMALLEST_PROXY and (crops[-1] // 2) % multiple == 0:
        crops.append(crops[-1] // 2)
    return crops


def training_step(cfg: RunConfig, model: Model, device: torch.device, speed: Speed, crop: int | None = None,
                  ) -> tuple[Callable[[], None], bool]:
    """One training step's forward and backward on a copy of `model` set up as `speed` says, on a batch of the
    run's shape (or `crop`), and whether its generator matches fp32 within PRECISION_TOLERANCE."""
    net = copy.deepcopy(model)
    apply(net, speed)
    net.to(device, memory_format=speed.memory_format).train()
    batch = synthetic_batch(cfg, model, device, speed.memory_format, crop)
    dtype = DTYPES[speed.precision]
    updates = net.updates()
    parameters = [p for u in updates for p in u.parameters]

    def step() -> None:
        with autocast(device, dtype):
            fakes = net.generate(batch)
        for update in updates:
            with autocast(device, dtype):
                loss = update.loss(batch, fakes)["loss"]
            loss.backward()
        for p in parameters:
            p.grad = None

    return step, dtype == torch.float32 or matches_fp32(net, batch, device, dtype)


def matches_fp32(model: Model, batch: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `model`'s first generator gives fp32's output under `dtype` autocast, within PRECISION_TOLERANCE."""
    name = next(iter(model.generators().values()))
    generator = model.networks()[name]
    source = next(iter(batch.values()))
    was_training = generator.training
    generator.eval()  # no dropout: the two passes see the same network
    with torch.no_grad():
        exact = generator(source).float()
        with autocast(device, dtype):
            lower = generator(source).float()
    generator.train(was_training)
    return (exact - lower).abs().mean().item() * 127.5 <= PRECISION_TOLERANCE


def synthetic_batch(cfg: RunConfig, model: Model, device: torch.device, memory_format: torch.memory_format,
                    crop: int | None = None) -> dict[str, torch.Tensor]:
    """Random images of the run's batch size, crop (or `crop`) and channels, keyed as the model's data kind is."""
    spec = model.data_spec()
    cin, cout = spec.channels
    keys = ("input", "target") if spec.kind == "paired" else ("A", "B")
    n, size = cfg.train.batch_size, crop or cfg.data.crop_size
    seeded = torch.Generator().manual_seed(0)
    return {key: (torch.rand(n, c, size, size, generator=seeded) * 2 - 1).to(device, memory_format=memory_format)
            for key, c in zip(keys, (cin, cout), strict=True)}


@contextmanager
def preserved_random_state(device: torch.device) -> Iterator[None]:
    """Restore torch's (CPU and CUDA), Python's and NumPy's random streams on exit."""
    saved = (torch.get_rng_state(), random.getstate(), np.random.get_state(),
             torch.cuda.get_rng_state_all() if device.type == "cuda" else None)
    try:
        yield
    finally:
        cpu, python, numpy, cuda = saved
        torch.set_rng_state(cpu)
        random.setstate(python)
        np.random.set_state(numpy)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def summary(verdict: autotune.Verdict, axes: dict[str, tuple], notes: Sequence[str] = ()) -> str:
    """One line: what was chosen, then how the others compared ('fp32, ...; bf16 1.90x slower')."""
    def label(name: str, value: Any) -> str:
        if name == "precision":
            return str(value)
        return f"{name.replace('_', ' ')} {'on' if value else 'off'}"

    return verdict.summary(axes, label, notes)
