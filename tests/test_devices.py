"""Device and precision choice, and the trainer's speed switches (channels_last, compile fallback)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from i2i.runtime.devices import has_fast_bf16, pick_device, resolve_precision
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


# Where a 64 MiB tensor lives, read from glibc's own accounting (mallinfo2) in a fresh process: mmapped bytes while it
# is alive, and the heap's free bytes after it is freed. Page faults follow from that, but how many a given step takes
# also depends on where glibc places each block inside the heap, so the test checks the mechanism, not a fault count.
_WHERE_A_BIG_TENSOR_LIVES = """
import ctypes, json, sys
import torch
from i2i.runtime.process import tune_cpu_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert tune_cpu_allocator()
mmapped_before = mallinfo2().hblkhd
tensor = torch.empty(16 * 2**20).fill_(1.0)
mmapped = mallinfo2().hblkhd - mmapped_before
del tensor
print(json.dumps({"mmapped": mmapped, "kept_free_in_heap": mallinfo2().fordblks}))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc" or platform.libc_ver()[1] < "2.33",
    reason="glibc 2.33 or newer only (mallinfo2)",
)
@pytest.mark.parametrize("mode", ["tuned", "untuned"])
def test_tuned_allocator_keeps_a_freed_big_tensor_in_the_heap(mode: str) -> None:
    """Untuned, glibc maps a 64 MiB block straight from the kernel and unmaps it on free, so the next step faults its
    16 k pages back in; tuned, the block comes from the heap and stays there once freed, ready for the next step."""
    out = subprocess.run(
        [sys.executable, "-c", _WHERE_A_BIG_TENSOR_LIVES, mode], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    where = json.loads(out)
    block = 64 * 2**20
    if mode == "tuned":
        assert where["mmapped"] < block and where["kept_free_in_heap"] >= block
    else:
        assert where["mmapped"] >= block and where["kept_free_in_heap"] < block
