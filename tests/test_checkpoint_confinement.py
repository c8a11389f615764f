"""`RUN/latest` is followed only to a checkpoint folder inside its run (translate and --resume alike), weights,
state and `latest` are fsynced before they are published, and weights metadata of the wrong types is a
CheckpointError naming the file."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import i2i.checkpoint.weights
import i2i.data.io
from helpers import tiny_config, write_pairs
from i2i.checkpoint.weights import CONFIG_KEY, CheckpointError, latest_checkpoint
from i2i.cli.commands import main
from i2i.training.trainer import train
from i2i.translation.translator import load_generator


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs: `a` (checkpoints at steps 2 and 4) and `other`, whose checkpoint a hostile `latest` could name."""
    tmp = tmp_path_factory.mktemp("confined")
    data = write_pairs(tmp / "pairs")
    train(tiny_config(data, tmp / "runs", name="a", max_steps=4, save_every=2), progress=False)
    train(tiny_config(data, tmp / "runs", name="other", max_steps=1, seed=7), progress=False)
    return tmp / "runs"


@pytest.fixture
def run(runs: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / "a"
    shutil.copytree(runs / "a", copy)
    return copy


@pytest.mark.parametrize("text", ["../../other/ckpt/step_000001", "{other}", "", ".", "..", "step_000002/.."])
def test_latest_pointing_outside_the_run_is_ignored_with_a_warning(run: Path, runs: Path, text: str,
                                                                   messages: Callable[[], str]) -> None:
    other = runs / "other" / "ckpt" / "step_000001"
    (run / "latest").write_text(text.format(other=other))
    assert latest_checkpoint(run) == run / "ckpt" / "step_000004"  # the newest complete one, never `other`
    err = messages()
    assert "ignoring" in err and "not a checkpoint folder of this run" in err


def test_translate_and_resume_do_not_follow_a_latest_outside_the_run(run: Path, runs: Path, tmp_path: Path) -> None:
    other = runs / "other" / "ckpt" / "step_000001"
    (run / "latest").write_text(str(other))
    net, *_ = load_generator(run)
    own = load_file(str(run / "ckpt" / "step_000004" / "G.safetensors"))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in own.items())
    config = json.loads((run / "config.json").read_text())
    cfg = tiny_config(Path(config["data"]["root"]), run.parent, name="a", max_steps=5, save_every=2)
    summary = train(cfg, resume=True, progress=False)
    assert summary.steps == 5  # continued from its own step 4, not from `other`'s step 1
    assert (run / "latest").read_text() == "step_000005"


def test_an_empty_latest_does_not_break_translate(run: Path, tmp_path: Path) -> None:
    (run / "latest").write_text("")
    src = write_pairs(tmp_path / "imgs", n=1) / "train"
    result = CliRunner().invoke(main, ["translate", str(run), str(src), str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output


def test_weights_state_and_latest_are_fsynced_before_they_are_published(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(i2i.checkpoint.weights.os, "replace", replace)
    monkeypatch.setattr(i2i.data.io.os, "replace", replace)
    net = torch.nn.Linear(2, 2)
    i2i.checkpoint.weights.save_checkpoint(tmp_path, 3, {"G": net}, {"step": 3}, {"model": "x"})
    publish = events.index("replace step_000003")
    before = events[:publish]
    assert {"fsync G.safetensors", "fsync state.pt"} <= set(before)
    assert any(e.startswith("fsync .tmp_step_000003") for e in before)  # the folder, before its rename
    pointer = events.index("replace latest")
    assert events[publish + 1] == "fsync ckpt" and "fsync latest" not in events  # the ckpt folder after the rename
    assert any(e.startswith("fsync .latest") for e in events[publish:pointer])  # latest's temp file
    assert events[pointer + 1] == f"fsync {tmp_path.name}"  # the run folder holding `latest`


@pytest.mark.parametrize("damage", [
    lambda c: c["model_config"]["generator"].update(base_channels="4"),
    lambda c: c["model_config"].update(lambda_l1=[1]),
    lambda c: c.update(model_config=["not", "a", "dict"]),
    lambda c: c["train"].update(max_steps=True),
])
def test_wrong_field_types_in_weights_metadata_name_the_file(runs: Path, tmp_path: Path, damage) -> None:
    source = runs / "a" / "ckpt" / "step_000004" / "G.safetensors"
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata()
    config = json.loads(metadata[CONFIG_KEY])
    damage(config)
    bad = tmp_path / "G.safetensors"
    save_file(load_file(str(source)), str(bad), metadata={**metadata, CONFIG_KEY: json.dumps(config)})
    with pytest.raises(CheckpointError, match=str(bad)):
        load_generator(bad)
