"""Exported generators (ONNX via onnxruntime, TorchScript) match PyTorch on several sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from helpers import tiny_config, write_pairs
from i2i.cli.commands import main
from i2i.training.trainer import train
from i2i.translation.export import export
from i2i.translation.translator import Translator

# per generator: sizes that are and are not multiples of its size rule, each side above the padding it needs
SHAPES = {"unet_64": [(1, 3, 64, 64), (1, 3, 100, 70), (2, 3, 80, 96)],
          "unet_256": [(1, 3, 256, 256), (1, 3, 300, 270), (2, 3, 280, 296)]}


@pytest.fixture(scope="module", params=list(SHAPES))
def run_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run of each generator (unet_256 is the default Pix2Pix and every imported reference model)."""
    tmp = tmp_path_factory.mktemp("export")
    cfg = tiny_config(write_pairs(tmp / "pairs"), tmp / "runs", max_steps=2)
    cfg.model_config.generator.name = request.param
    cfg.data.load_size = cfg.data.crop_size = int(request.param.split("_")[1])  # the U-Net's size multiple
    return train(cfg, progress=False).run_dir


def shapes(run_dir: Path) -> list[tuple[int, ...]]:
    return SHAPES[json.loads((run_dir / "config.json").read_text())["model_config"]["generator"]["name"]]


def reference(run_dir: Path, x: torch.Tensor) -> np.ndarray:
    return Translator.from_pretrained(run_dir, precision="fp32").translate_tensor(x).numpy()


def test_onnx_matches_pytorch(run_dir: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need the export extra (onnxruntime)")
    import onnx

    path = export(run_dir, tmp_path / "g.onnx", fmt="onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["i2i"])["direction"] == "AtoB"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for shape in shapes(run_dir):
        x = torch.rand(*shape) * 2 - 1
        (y,) = session.run(None, {name: x.numpy()})
        assert y.shape == shape
        np.testing.assert_allclose(y, reference(run_dir, x), atol=1e-4)


def test_torchscript_matches_pytorch(run_dir: Path, tmp_path: Path) -> None:
    path = export(run_dir, tmp_path / "g.pt", fmt="torchscript")
    extra = {"i2i.json": ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["i2i.json"])["i2i_config"]["model"] == "pix2pix"
    for shape in shapes(run_dir):
        x = torch.rand(*shape) * 2 - 1
        with torch.no_grad():
            y = module(x).numpy()
        np.testing.assert_allclose(y, reference(run_dir, x), atol=1e-4)


def test_cli_export(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(run_dir), str(tmp_path / "g.pt"), "--format", "torchscript"])
    assert result.exit_code == 0 and (tmp_path / "g.pt").is_file()
    bad = CliRunner().invoke(main, ["export", str(run_dir), str(tmp_path / "g.x"), "--format", "tflite"])
    assert bad.exit_code == 2 and "onnx" in bad.output
