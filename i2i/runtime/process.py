"""Process-wide tuning (garbage collector, allocator, thread pools, torch flags), applied only where i2i owns
the process, and scoped and restored wherever that is possible.

Importing i2i changes none of this. Who calls what:
- the `i2i` command (`i2i/__main__.py`) imports its modules under `long_lived()` and keeps the CPU
  allocator warm (`tune_cpu_allocator`): a short-lived tool owns its whole process;
- a training run (`Trainer.fit`) sets its torch and OpenCV flags with `training_flags()`, and puts them back
  when it returns;
- a run on several processes (`i2i.training.distributed.session`) makes its local GPU the current one (`cuda_device`);
- `import_offline()` imports a library that would otherwise phone home (albumentations' version check);
The measured effect of each knob is in the README's performance table.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run a block with the cyclic GC off and restore its previous state after (for large imports).

    Importing torch, and torch._dynamo (which the first torch.optim optimizer imports), creates about a
    million objects; meanwhile the collector walks the growing heap again and again (six full collections,
    0.55 s of a Pix2Pix run's start-up, measured).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def long_lived() -> Iterator[None]:
    """`collector_paused()`, then freeze what the block created so later collections skip it (CLI only).

    gc.freeze() moves every object alive now to a permanent generation: later collections, and the
    one at exit (~1 s after a training run, measured), no longer walk torch's module graphs. Garbage
    that exists before the block is collected first, so it is never frozen.
    """
    gc.collect()
    try:
        with collector_paused():
            yield
    finally:
        gc.freeze()


def import_dynamo() -> None:
    """Import torch._dynamo with the collector paused: the first torch.optim optimizer imports it anyway."""
    if "torch._dynamo" not in sys.modules:
        with collector_paused():
            import torch._dynamo  # noqa: F401


def import_offline(name: str) -> ModuleType:
    """Import module `name` with NO_ALBUMENTATIONS_UPDATE=1, so albumentations makes no network request
    (its import checks PyPI for a newer version otherwise; offline GPU nodes are common). The variable
    is restored afterwards."""
    if name in sys.modules:
        return sys.modules[name]
    key, before = "NO_ALBUMENTATIONS_UPDATE", os.environ.get("NO_ALBUMENTATIONS_UPDATE")
    os.environ[key] = "1"
    try:
        return importlib.import_module(name)
    finally:
        if before is None:
            del os.environ[key]
        else:
            os.environ[key] = before


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process (glibc) so each step does not page-fault its tensors back in.

    PyTorch's CPU allocator is plain malloc: every activation, gradient and bf16 weight copy of a
    step is freed and re-allocated, and glibc hands large blocks back to the kernel. On the Pix2Pix
    step that cost ~15k page faults and ~50 ms (0.48 -> 0.43 s, measured). glibc offers no way to read
    these settings back, so only the `i2i` command calls this. Returns False where this is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 2**30)  # blocks up to 1 GiB come from the heap
    ok &= mallopt(m_trim_threshold, 2**31 - 1)  # never shrink the heap
    ok &= mallopt(m_top_pad, 64 * 2**20)  # grow it in large steps
    return bool(ok)


def single_threaded_opencv() -> None:
    """One OpenCV thread: images are resized one at a time beside the model, whose threads OpenCV's pool
    would compete with (measured 0.3-0.4 s per 30 Pix2Pix steps). For DataLoader workers (i2i's processes)."""
    import cv2

    cv2.setNumThreads(1)


@contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's thread count for the block, restored after."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


@contextmanager
def _deterministic(on: bool) -> Iterator[None]:
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(on)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables that are unset, for the block."""
    added = [key for key in values if key not in os.environ]
    os.environ.update({key: values[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextmanager
def _cuda_flags(deterministic: bool) -> Iterator[None]:
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32
    cudnn.benchmark = not deterministic  # fixed crop sizes: let cuDNN pick the fastest kernels
    cudnn.allow_tf32 = matmul.allow_tf32 = True
    # deterministic cuBLAS needs a fixed workspace, read when its first handle is made (the first step)
    workspace = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"} if deterministic else {}
    try:
        with _environment(**workspace):
            yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before


@contextmanager
def cuda_device(index: int) -> Iterator[None]:
    """Make cuda:`index` the current CUDA device for the block, then restore the previous one.

    Under torchrun each process drives the GPU of its local rank: "cuda" must mean that one (NCCL and
    every tensor made with device="cuda"), and no process may open a context on GPU 0 by accident.
    """
    import torch

    with torch.cuda.device(index):
        yield


@contextmanager
def training_flags(device: torch.device, deterministic: bool, compiled: bool) -> Iterator[None]:
    """The flags a training run wants, for the length of the run: deterministic algorithms when asked,
    cuDNN autotuning and TF32 on CUDA, one OpenCV thread, and with `compiled` dynamo's fallback to eager
    for graphs it cannot compile. Everything is put back on exit."""
    with ExitStack() as stack:
        stack.enter_context(_deterministic(deterministic))
        stack.enter_context(opencv_threads(1))
        if device.type == "cuda":
            stack.enter_context(_cuda_flags(deterministic))
        if compiled:
            import torch._dynamo

            stack.enter_context(torch._dynamo.config.patch(suppress_errors=True))
        yield


def process_age() -> float | None:
    """Seconds since this process started (from /proc on Linux; None elsewhere): what start-up cost before i2i
    got control (the interpreter and imports)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: start time in ticks
    except (OSError, ValueError, IndexError):
        return None
