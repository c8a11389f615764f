"""The package's shape: imports change nothing in the process, runs restore what they set, options are checked
before anything is written, and a new model is one class that the trainer, checkpoints and inference serve."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import same_weights, tiny_config, write_pairs
from i2i.checkpoint.weights import latest_checkpoint, load_state
from i2i.config import from_options, option
from i2i.data import DataSpec
from i2i.models import MODELS, Model, Update, View
from i2i.nets import GeneratorConfig, build_generator, generator_from_options
from i2i.training.state import RunError
from i2i.training.trainer import Trainer, train
from i2i.translation.translator import Translator


def python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_importing_i2i_changes_nothing_in_the_process() -> None:
    out = python(
        "import gc, sys, i2i\n"
        "assert gc.isenabled() and gc.get_freeze_count() == 0\n"
        "print('torch' in sys.modules, i2i.__version__)\n"
    )
    assert out.split() == ["False", i2i_version()]


def i2i_version() -> str:
    from i2i.version import __version__

    return __version__


def test_importing_the_whole_library_leaves_flags_threads_and_network_alone() -> None:
    """Every module imported, with the network cut: no connection attempt, no flag, thread or GC change."""
    out = python(
        "import socket, os, gc\n"
        "tried = []\n"
        "def refuse(self, *a, **k):\n"
        "    tried.append(a)\n"
        "    raise OSError('network is off in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = lambda *a, **k: refuse(None, *a)\n"
        "import cv2, torch\n"
        "before = (cv2.getNumThreads(), torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),\n"
        "          torch.backends.cudnn.benchmark)\n"
        "import i2i.cli.commands, i2i.training.trainer, i2i.translation.translator, i2i.evaluation.evaluate\n"
        "import i2i.translation.export, i2i.demo, i2i.data.transforms\n"
        "import i2i.data.device_augment, albumentations\n"
        "after = (cv2.getNumThreads(), torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),\n"
        "         torch.backends.cudnn.benchmark)\n"
        "assert before == after, (before, after)\n"
        "assert gc.isenabled() and gc.get_freeze_count() == 0\n"
        "assert 'NO_ALBUMENTATIONS_UPDATE' not in os.environ\n"
        "import logging\n"
        "assert not logging.getLogger('i2i').handlers and not logging.getLogger().handlers  # logging untouched\n"
        "print(len(tried))\n"
    )
    assert out.strip() == "0"


def test_a_training_run_restores_the_flags_it_set(paired_root: Path, tmp_path: Path) -> None:
    import cv2

    threads = cv2.getNumThreads()
    assert not torch.are_deterministic_algorithms_enabled()
    train(tiny_config(paired_root, tmp_path / "runs", max_steps=2, deterministic=True), progress=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert cv2.getNumThreads() == threads


@pytest.mark.parametrize(("change", "message"), [
    ({"crop_size": 300, "load_size": 286}, "crop_size 300 is larger than load_size 286"),
    ({"val_every": 2, "best_metric": "val_accuracy"}, "--best-metric val_accuracy is not among"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
])
def test_bad_options_fail_before_anything_is_written(paired_root: Path, tmp_path: Path, change: dict,
                                                     message: str) -> None:
    cfg = tiny_config(paired_root, tmp_path / "runs")
    for key, value in change.items():
        setattr(cfg.data if hasattr(cfg.data, key) else cfg.train, key, value)
    with pytest.raises(RunError, match=message):
        Trainer(cfg, progress=False)
    assert not (tmp_path / "runs").exists()


def test_constructing_a_trainer_writes_nothing(paired_root: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(paired_root, tmp_path / "runs", max_steps=2), progress=False)
    assert not (tmp_path / "runs").exists()
    trainer.fit()
    assert (tmp_path / "runs" / "tiny" / "config.json").is_file()


def test_checkpoints_of_earlier_versions_resume(paired_root: Path, tmp_path: Path) -> None:
    """Earlier versions counted the data position in batches ("position"); such a checkpoint resumes exactly."""
    runs = tmp_path / "runs"
    straight = train(tiny_config(paired_root, runs, name="straight", max_steps=6, batch_size=2), progress=False)
    train(tiny_config(paired_root, runs, name="old", max_steps=2, batch_size=2), progress=False)
    ckpt = latest_checkpoint(runs / "old")
    state = load_state(ckpt)
    position = state.pop("epoch_position")
    state["position"] = position // 2  # batches of 2, as version 0.1.0 wrote it
    torch.save(state, ckpt / "state.pt")
    resumed = train(tiny_config(paired_root, runs, name="old", max_steps=6, batch_size=2), resume=True,
                    progress=False)
    assert same_weights(straight.checkpoint, resumed.checkpoint)


# -- a third model, written against the contract alone ------------------------------------------------

@dataclass
class RegressionConfig:
    """A generator trained by L1 alone: the smallest complete model."""

    generator: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(name="unet_64", base_channels=4))
    direction: str = option("AtoB", choices=("AtoB", "BtoA"), help="What G translates.")


class Regression(Model):
    """Train a generator by L1 alone."""

    config_class = RegressionConfig
    name = "regression"
    data_kind = "paired"
    network_fields: ClassVar[dict[str, str]] = {"G": "generator"}
    channel_options: ClassVar[dict[str, str]] = {"input_channels": "Input channels.",
                                                 "output_channels": "Output channels."}

    @classmethod
    def config_from_options(cls, opts: dict) -> RegressionConfig:
        return from_options(RegressionConfig, opts, generator=generator_from_options(
            opts, opts["input_channels"], opts["output_channels"]))

    def __init__(self, cfg: RegressionConfig) -> None:
        super().__init__()
        self.cfg, self.G = cfg, build_generator(cfg.generator)

    def data_spec(self) -> DataSpec:
        return DataSpec("paired", (3, 3), self.cfg.direction)

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G}

    def generators(self) -> dict[str, str]:
        return {self.cfg.direction: "G"}

    def generator_config(self, name: str) -> GeneratorConfig:
        return self.cfg.generator

    def updates(self) -> list[Update]:
        return [Update("G", list(self.G.parameters()), self.l1)]

    def l1(self, batch: dict, fakes: dict) -> dict:
        return {"loss": F.l1_loss(fakes["output"].float(), batch["target"].float())}

    def generate(self, batch: dict) -> dict:
        return {"output": self.G(batch["input"])}

    def samples(self, batch: dict, fakes: dict) -> dict:
        return {"input": batch["input"], "output": fakes["output"]}

    def views(self) -> dict[str, View]:
        return {self.cfg.direction: View("input", "target", paired=True)}


def test_a_new_model_is_one_class_and_a_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model defined in one place (here) gets training, validation, resume, its CLI command, --init-from and
    the Translator without an edit anywhere else."""
    monkeypatch.setitem(MODELS, "regression", Regression)
    root = write_pairs(tmp_path / "pairs")
    (root / "train").rename(root / "val")
    write_pairs(root)
    cfg = tiny_config(root, tmp_path / "runs", max_steps=4, val_every=2)
    cfg.model, cfg.model_config = "regression", RegressionConfig()
    summary = train(cfg, progress=False)
    records = [json.loads(line) for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val_psnr" in r for r in records) and [r["G"] for r in records if "G" in r][-1] > 0
    assert (summary.run_dir / "ckpt" / "best" / "G.safetensors").is_file()
    cfg.train.max_steps = 6
    assert train(cfg, resume=True, progress=False).steps == 6
    translator = Translator.from_pretrained(summary.run_dir)
    assert translator.data_spec.kind == "paired"
    assert translator(torch.zeros(3, 64, 64)).shape == (3, 64, 64)

    from click.testing import CliRunner

    from i2i.cli.commands import main

    help_text = CliRunner().invoke(main, ["train", "regression", "--help"]).output
    assert "Train a generator by L1 alone." in help_text and "--direction [AtoB|BtoA]" in help_text
    assert "--ndf" not in help_text and "--layout" in help_text and "--serial" not in help_text
    args = ["train", "regression", "--data", str(root), "--runs-dir", str(tmp_path / "runs"), "--max-steps", "2",
            "--load-size", "72", "--crop-size", "64", "--workers", "0", "--no-progress", "--direction", "BtoA"]
    result = CliRunner().invoke(main, [*args, "--name", "cli", "--init-from", str(summary.run_dir)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    made = json.loads((tmp_path / "runs" / "cli" / "config.json").read_text())
    assert made["model"] == "regression" and made["model_config"]["direction"] == "BtoA"
    assert made["train"]["init_from"] and len(made["train"]["init_from_sha256"]) == 64
