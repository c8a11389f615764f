"""Device and precision choice, and the trainer's speed switches (channels_last, compile fallback)."""

from __future__ import annotations

import platform
import resource
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from i2i.runtime.devices import has_fast_bf16, pick_device, resolve_precision
from i2i.runtime.process import tune_cpu_allocator
from i2i.training.state import RunError
from i2i.training.trainer import Trainer, train
from i2i.translation.translator import Translator


def test_auto_precision_follows_the_hardware() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if has_fast_bf16(cpu) else "fp32")
    assert resolve_precision("fp16", cpu) == "fp16"
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        resolve_precision("int8", cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_asking_for_cuda_without_one_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no CUDA device"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_fp16_training_on_the_cpu_is_refused(paired_root: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="fp16"):
        Trainer(tiny_config(paired_root, tmp_path / "runs", precision="fp16", device="cpu"), progress=False)


def test_channels_last_trains_and_saves_loadable_weights(paired_root: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(paired_root, tmp_path / "runs", max_steps=2, channels_last=True), progress=False)
    out = Translator.from_pretrained(summary.run_dir)(torch.rand(3, 64, 64) * 2 - 1)
    assert out.shape == (3, 64, 64) and torch.isfinite(out).all()


def test_compile_without_a_compiler_falls_back_with_a_message(
    paired_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, messages: Callable[[], str]
) -> None:
    monkeypatch.setattr("i2i.training.setup.shutil.which", lambda name: None)
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=1, compile=True, device="cpu")  # the check is CPU-only
    summary = train(cfg, progress=False)
    assert summary.steps == 1
    assert "--compile needs a C++ compiler" in messages()


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_allocator_reuses_freed_memory_instead_of_faulting_it_back() -> None:
    """A training step's pattern: tensors of mixed sizes alive together, then freed. Untuned glibc
    returns the large ones to the kernel and faults them back in every step (~10 k faults in this thread for these
    ten steps, measured); tuned, the heap keeps them."""
    assert tune_cpu_allocator()
    sizes = [8 * 2**20, 4 * 2**20, 2 * 2**20, 2**20, 2**19, 3 * 2**20]  # float32: 32 MiB down to 2 MiB

    def step() -> None:
        held = [torch.empty(n).fill_(1.0) for n in sizes]
        del held

    for _ in range(5):
        step()
    # this thread's faults only: threads left by earlier tests (checkpoint writers, loaders) fault on their own
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(10):
        step()
    assert resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before < 3000
