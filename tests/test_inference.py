"""Rebuilding a generator from its checkpoint alone, and per-image, any-size translation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import tiny_config, write_pairs
from i2i.nets import GeneratorConfig, build_generator
from i2i.nets.layers import per_image_norm
from i2i.training.trainer import train
from i2i.translation.translator import Translator, load_generator


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:

    tmp = tmp_path_factory.mktemp("inference")
    root = write_pairs(tmp / "pairs")
    cfg = tiny_config(root, tmp / "runs", max_steps=3)
    cfg.model_config.direction = "BtoA"
    return train(cfg, progress=False).run_dir


def test_a_weights_file_alone_rebuilds_the_generator(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "ckpt" / "step_000003"
    lonely = tmp_path / "somewhere" / "G.safetensors"
    lonely.parent.mkdir()
    lonely.write_bytes((ckpt / "G.safetensors").read_bytes())  # no config.json next to it
    net, gen_cfg, _, direction = load_generator(lonely)
    assert direction == "BtoA" and gen_cfg.name == "unet_64" and gen_cfg.base_channels == 4
    ref, *_ = load_generator(trained_run)
    for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="BtoA"):
        load_generator(trained_run, direction="AtoB")
    with pytest.raises(ValueError, match="not a generator"):
        load_generator(ckpt / "D.safetensors")


@pytest.mark.parametrize("shape", [(64, 64, 3), (37, 91, 3), (70, 65, 1)])
def test_any_size_comes_back_the_same_size(trained_run: Path, shape: tuple[int, int, int]) -> None:
    translator = Translator.from_pretrained(trained_run)
    image = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    out = translator(image)
    assert out.shape == shape and out.dtype == np.uint8  # gray stays gray


def test_a_list_of_gray_arrays_comes_back_in_their_shapes(trained_run: Path) -> None:
    translator = Translator.from_pretrained(trained_run, precision="fp32")
    rng = np.random.default_rng(1)
    gray, rgb = rng.integers(0, 256, size=(40, 52), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), np.uint8)
    column = rng.integers(0, 256, size=(33, 20, 1), dtype=np.uint8)
    outs = translator([gray, rgb, column])
    assert [o.shape for o in outs] == [(40, 52), (64, 64, 3), (33, 20, 1)]
    np.testing.assert_array_equal(outs[0], translator(gray))  # a single array and a list agree


def test_output_does_not_depend_on_batch_mates() -> None:
    torch.manual_seed(0)
    net = per_image_norm(build_generator(GeneratorConfig(name="unet_64", base_channels=4))).eval()
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        together = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    # and it is train-mode BatchNorm at batch size 1, i.e. what the reference computes at test time
    torch.manual_seed(0)
    ref = build_generator(GeneratorConfig(name="unet_64", base_channels=4, dropout=False)).train()
    mine = per_image_norm(build_generator(GeneratorConfig(name="unet_64", base_channels=4, dropout=False)))
    mine.load_state_dict(ref.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(mine.eval()(x[:1]), ref(x[:1]), atol=1e-5, rtol=1e-5)
