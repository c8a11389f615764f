"""CycleGAN: the objective, the image pool, unpaired data, exact resume, both translation directions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from helpers import same_weights, shared_dataset, tiny_cyclegan_config, write_unpaired
from i2i.cli.commands import main
from i2i.data.io import read_image
from i2i.data.layout import DataError
from i2i.data.sampling import Skipped
from i2i.data.unpaired import UnpairedDataset
from i2i.models.cyclegan import CycleGAN
from i2i.models.image_pool import ImagePool
from i2i.training.trainer import train
from i2i.translation.translator import Translator

NETS = ("G_AB", "G_BA", "D_A", "D_B")


def test_one_step_changes_all_four_networks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CycleGAN(tiny_cyclegan_config(tmp_path, tmp_path).model_config)
    opts = {u.name: torch.optim.Adam(u.parameters, lr=1e-3) for u in model.updates()}
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in model.networks().items()}
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}
    fakes = model.generate(batch)
    assert [u.name for u in model.updates()] == ["G", "D"]
    for update in model.updates():
        group = update.name
        out = update.loss(batch, fakes)
        assert all(torch.isfinite(v) for v in out.values()), group
        opts[group].zero_grad()
        out["loss"].backward()
        if group == "G":
            assert all(p.grad is None for p in (*model.D_A.parameters(), *model.D_B.parameters()))
        opts[group].step()
    for name, net in model.networks().items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)), name


def test_generator_loss_is_the_papers_sum() -> None:
    torch.manual_seed(0)
    from i2i.models.cyclegan import CycleGANConfig
    from i2i.nets import DiscriminatorConfig, GeneratorConfig

    g = GeneratorConfig(name="resnet_6blocks", base_channels=4, norm="instance", dropout=False)
    d = DiscriminatorConfig(in_channels=3, base_channels=4, norm="instance")
    model = CycleGAN(CycleGANConfig(g_ab=g, g_ba=g, d_a=d, d_b=d, lambda_cycle=10.0, lambda_identity=0.5))
    batch = {"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}
    out = model.generator_losses(batch, model.generate(batch))
    expected = (out["G_gan_AB"] + out["G_gan_BA"] + 10 * (out["G_cycle_A"] + out["G_cycle_B"])
                + 5 * (out["G_idt_A"] + out["G_idt_B"]))
    torch.testing.assert_close(out["loss"], expected)
    d_out = model.discriminator_losses(batch, model.generate(batch))
    torch.testing.assert_close(d_out["loss"], d_out["D_A"] + d_out["D_B"])


def test_identity_loss_needs_equal_channels(tmp_path: Path) -> None:
    cfg = tiny_cyclegan_config(tmp_path, tmp_path).model_config
    cfg.g_ab.out_channels = cfg.g_ba.in_channels = cfg.d_b.in_channels = 1
    with pytest.raises(ValueError, match="identity"):
        CycleGAN(cfg)
    cfg.lambda_identity = 0.0
    CycleGAN(cfg)  # fine without it


def test_image_pool_fills_then_swaps_half_the_time() -> None:
    pool = ImagePool(size=4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: every image comes back as is
    stored_returned, n = 0, 4000
    for i in range(n):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        out = pool.query(new)
        if not torch.equal(out, new):
            stored_returned += 1
            assert out.item() < 100.0 + i  # an image that was put in before
    assert abs(stored_returned / n - 0.5) < 0.03
    off = ImagePool(size=0)
    x = torch.rand(3, 1, 2, 2)
    assert torch.equal(off.query(x), x)  # the same images (detached: see the next test)


def test_a_pool_of_size_0_detaches_what_it_returns() -> None:
    fakes = torch.ones(2, 3, 4, 4, requires_grad=True) * 2  # still attached to a generator's graph
    out = ImagePool(size=0).query(fakes)
    assert torch.equal(out, fakes) and not out.requires_grad  # D's backward must not run into G's freed graph


def test_image_pool_state_round_trip() -> None:
    a, b = ImagePool(3, seed=5), ImagePool(3, seed=9)
    for i in range(6):
        a.query(torch.full((2, 1, 1, 1), float(i)))
    state = a.state_dict()
    b.load_state_dict({"images": state["images"].clone(), "rng": json.loads(json.dumps(state["rng"]))})
    for i in range(10):
        x = torch.full((1, 1, 1, 1), 50.0 + i)
        assert torch.equal(a.query(x), b.query(x))


def test_unpaired_dataset(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path / "u", n_a=5, n_b=3)
    ds = UnpairedDataset(root, b_channels=1)
    assert len(ds) == 5
    item = ds[(0, 123)]
    assert item["A"].shape == (3, 32, 32) and item["B"].shape == (1, 40, 36)
    assert torch.equal(ds[(2, 7)]["B"], ds[(2, 7)]["B"])  # seeded: same B for the same seed
    drawn = {ds[(0, s)]["path_B"] for s in range(40)}
    assert len(drawn) == 3  # random B: all of them turn up
    serial = UnpairedDataset(root, serial=True)
    assert [Path(serial[(i, s)]["path_B"]).name for i, s in ((0, 1), (1, 2), (4, 3))] == \
        ["b 00.png", "b 01.png", "b 01.png"]


def test_unpaired_errors_name_the_path(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path / "u")
    (root / "trainB").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"trainB does not exist"):
        UnpairedDataset(root)
    (tmp_path / "elsewhere").rename(root / "trainB")
    for f in (root / "trainB").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"no images in .*trainB"):
        UnpairedDataset(root)
    with pytest.raises(DataError, match="does not exist"):
        UnpairedDataset(tmp_path / "nowhere")


def test_unreadable_image_is_skipped_or_fatal(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path / "u", n_a=2, n_b=2)
    bad = root / "trainA" / "a 00.png"
    bad.write_bytes(b"broken")
    skipped = UnpairedDataset(root)[(0, 1)]
    assert isinstance(skipped, Skipped) and skipped.path == str(bad)
    with pytest.raises(OSError, match=r"a 00\.png"):
        UnpairedDataset(root, strict=True)[(0, 1)]


def test_resume_continues_exactly_and_keeps_the_pools(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path / "u")
    runs = tmp_path / "runs"
    straight = train(tiny_cyclegan_config(root, runs, name="straight", max_steps=7), progress=False)
    train(tiny_cyclegan_config(root, runs, name="split", max_steps=3), progress=False)
    resumed = train(tiny_cyclegan_config(root, runs, name="split", max_steps=7), resume=True, progress=False)
    assert resumed.steps == 7
    assert same_weights(straight.checkpoint, resumed.checkpoint, NETS)
    grid = read_image(sorted((runs / "split" / "samples").iterdir())[-1])
    assert grid.shape[1] == 6 * 32  # real A | fake B | rec A | real B | fake A | rec B


def test_real_yosemite_both_directions(tmp_path: Path) -> None:
    data = shared_dataset("tiny_demo", "summer2winter")
    summary = train(tiny_cyclegan_config(data, tmp_path / "runs", max_steps=3), progress=False)
    photo = read_image(sorted((data / "testA").iterdir())[0])
    for direction in ("AtoB", "BtoA"):
        translator = Translator.from_pretrained(summary.run_dir, direction=direction)
        out = translator(photo)
        assert out.shape == photo.shape and out.dtype == np.uint8
    with pytest.raises(ValueError, match="AtoB and BtoA"):
        Translator.from_pretrained(summary.run_dir)
    single = Translator.from_pretrained(summary.checkpoint / "G_BA.safetensors")
    assert single.direction == "BtoA"


def test_cli_cyclegan(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path / "u")
    args = ["train", "cyclegan", "--data", str(root), "--runs-dir", str(tmp_path / "runs"), "--name", "c",
            "--generator", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
            "--workers", "0", "--no-progress", "--pool-size", "2", "--lambda-identity", "0"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    cfg = json.loads(dry.output)
    assert cfg["model_config"]["g_ab"]["norm"] == "instance" and cfg["model_config"]["gan_loss"] == "lsgan"
    assert cfg["model_config"]["pool_size"] == 2 and cfg["model_config"]["lambda_identity"] == 0
    result = CliRunner().invoke(main, [*args, "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    assert "done: 2 steps" in result.output
