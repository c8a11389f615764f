"""CUDA training and translation: precisions, memory format, compile and CUDA graphs, exact resume, workers.

Marked `gpu`: skipped with the reason on machines without CUDA; `scripts/gpu_check.sh` runs them on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import same_weights, tiny_config, write_pairs
from i2i.training.trainer import train
from i2i.translation.translator import Translator

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_train_resume_translate(paired_root: Path, tmp_path: Path, precision: str) -> None:
    runs = tmp_path / "runs"
    cfg = tiny_config(paired_root, runs, max_steps=2, device="cuda", precision=precision, deterministic=False)
    train(cfg, progress=False)
    cfg.train.max_steps = 4
    summary = train(cfg, resume=True, progress=False)
    assert summary.steps == 4 and all(torch.isfinite(torch.tensor(v)) for v in summary.losses.values())
    translator = Translator.from_pretrained(summary.run_dir, device="cuda", precision=precision)
    x = torch.rand(2, 3, 64, 64, device="cuda") * 2 - 1
    out = translator(x)
    assert out.device.type == "cuda" and out.shape == x.shape and torch.isfinite(out).all()


def test_cuda_and_cpu_translations_agree(paired_root: Path, tmp_path: Path) -> None:
    run = train(tiny_config(paired_root, tmp_path / "runs", max_steps=2, device="cpu"), progress=False).run_dir
    x = torch.rand(3, 64, 64) * 2 - 1
    cpu = Translator.from_pretrained(run, device="cpu", precision="fp32")(x)
    cuda = Translator.from_pretrained(run, device="cuda", precision="fp32")(x.cuda()).cpu()
    assert (cpu - cuda).abs().max() < 1e-2  # cuDNN may use TF32


def test_deterministic_cuda_resume_is_exact(paired_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    straight = train(tiny_config(paired_root, runs, name="straight", max_steps=6, device="cuda"), progress=False)
    train(tiny_config(paired_root, runs, name="split", max_steps=3, device="cuda"), progress=False)
    resumed = train(tiny_config(paired_root, runs, name="split", max_steps=6, device="cuda"), resume=True,
                    progress=False)
    assert same_weights(straight.checkpoint, resumed.checkpoint)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_channels_last_training(paired_root: Path, tmp_path: Path, mode: str) -> None:
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=4, device="cuda", precision="bf16",
                      channels_last=True, compile=True, compile_mode=mode, deterministic=False)
    summary = train(cfg, progress=False)
    assert summary.steps == 4 and all(torch.isfinite(torch.tensor(v)) for v in summary.losses.values())


def test_worker_processes_start_from_a_fork_server(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "pairs", n=8)
    summary = train(tiny_config(root, tmp_path / "runs", max_steps=6, device="cuda", workers=2), progress=False)
    assert summary.steps == 6 and summary.timings["data_start"] >= 0
