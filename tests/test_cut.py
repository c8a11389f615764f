"""CUT / FastCUT: the PatchNCE objective, feature taps, the eager MLP head, exact resume, translate after training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from helpers import same_weights, write_unpaired
from i2i.cli.commands import main
from i2i.config import DataConfig, RunConfig, TrainConfig
from i2i.data.io import read_image
from i2i.models.cut import CUT, CUTConfig
from i2i.models.losses import patch_nce_loss
from i2i.nets import DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator, tap_features
from i2i.training.trainer import train
from i2i.translation.translator import Translator

NETS = ("G", "D", "F")


def tiny_cut(generator: str = "resnet_6blocks", **kwargs) -> CUTConfig:
    resnet = generator.startswith("resnet")
    g = GeneratorConfig(name=generator, base_channels=4, norm="instance", dropout=False, antialias=resnet)
    d = DiscriminatorConfig(in_channels=3, base_channels=4, norm="instance", antialias=True)
    return CUTConfig(generator=g, discriminator=d, num_patches=16, mlp_width=8, **kwargs)


def tiny_cut_run(root: Path, runs: Path, name: str, max_steps: int, **model) -> RunConfig:
    train_cfg = TrainConfig(name=name, runs_dir=str(runs), max_steps=max_steps, log_every=1, sample_every=2,
                            save_every=2, workers=0, deterministic=True, precision="fp32")
    return RunConfig(model="cut", model_config=tiny_cut(**model), data=DataConfig(root=str(root), load_size=36,
                                                                                   crop_size=32), train=train_cfg)


def test_patch_nce_picks_the_matching_patch() -> None:
    key = torch.nn.functional.normalize(torch.randn(2 * 8, 16), dim=1)
    aligned = patch_nce_loss(key.clone(), key, batch=2)
    shuffled = patch_nce_loss(key[torch.randperm(16)], key, batch=2)
    assert aligned < 0.1 < shuffled  # the same place wins; other places lose
    q = key.clone().requires_grad_(True)
    patch_nce_loss(q, key.requires_grad_(True), batch=2).backward()
    assert q.grad is not None and key.grad is None  # keys are targets


def test_taps_by_name_on_resnet_and_unet() -> None:
    res = build_generator(GeneratorConfig(name="resnet_6blocks", base_channels=4, norm="instance", antialias=True))
    feats = tap_features(res, torch.rand(1, 3, 32, 32), ["model.0", "model.4", "model.12"])
    assert [tuple(f.shape) for f in feats] == [(1, 3, 38, 38), (1, 8, 32, 32), (1, 16, 8, 8)]
    unet = build_generator(GeneratorConfig(name="unet_64", base_channels=4, norm="instance", dropout=False))
    feats = tap_features(unet, torch.rand(1, 3, 64, 64), ["stem", "downs.1"])
    assert [tuple(f.shape) for f in feats] == [(1, 4, 32, 32), (1, 16, 8, 8)]
    with pytest.raises(ValueError, match=r"no layer 'model\.99'"):
        tap_features(res, torch.rand(1, 3, 32, 32), ["model.99"])


def test_antialias_off_keeps_existing_keys_and_on_matches_the_reference_layout() -> None:
    plain = build_generator(GeneratorConfig(name="resnet_6blocks", base_channels=4, norm="instance"))
    assert "model.10.body.1.weight" in plain.state_dict() and not any("filt" in k for k in plain.state_dict())
    aa = build_generator(GeneratorConfig(name="resnet_6blocks", base_channels=4, norm="instance", antialias=True))
    filts = sorted(k for k in aa.state_dict() if k.endswith("filt"))
    assert filts == ["model.11.filt", "model.18.filt", "model.22.filt", "model.7.filt"]
    torch.testing.assert_close(aa.state_dict()["model.7.filt"][0, 0], torch.tensor(
        [[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    assert aa(torch.rand(1, 3, 36, 44)).shape == (1, 3, 36, 44)
    d = build_discriminator(DiscriminatorConfig(in_channels=3, base_channels=4, norm="instance", antialias=True))
    assert sorted(k for k in d.state_dict() if k.endswith("filt")) == ["model.10.filt", "model.2.filt",
                                                                       "model.6.filt"]
    plain_d = build_discriminator(DiscriminatorConfig(in_channels=3, base_channels=4, norm="instance"))
    assert d(torch.rand(1, 3, 64, 64)).shape == plain_d(torch.rand(1, 3, 64, 64)).shape


@pytest.mark.parametrize("generator", ["resnet_6blocks", "unet_64"])
def test_one_step_trains_g_d_and_the_eager_mlp_head(generator: str) -> None:
    torch.manual_seed(0)
    model = CUT(tiny_cut(generator))
    assert [m[0].in_features for m in model.F.mlps] == (
        [3, 8, 16, 16, 16] if generator.startswith("resnet") else [4, 8, 16, 32, 32])
    opts = {u.name: torch.optim.Adam(u.parameters, lr=1e-3) for u in model.updates()}
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in model.networks().items()}
    size = 32 if generator.startswith("resnet") else 64
    batch = {"A": torch.rand(2, 3, size, size) * 2 - 1, "B": torch.rand(2, 3, size, size) * 2 - 1}
    fakes = model.generate(batch)
    assert set(fakes) == {"fake_B", "idt_B"}
    for update in model.updates():
        out = update.loss(batch, fakes)
        assert all(torch.isfinite(v) for v in out.values())
        opts[update.name].zero_grad()
        out["loss"].backward()
        opts[update.name].step()
    assert set(out) == {"loss", "G_gan", "G_nce", "G_nce_idt"}
    torch.testing.assert_close(out["loss"], out["G_gan"] + 0.5 * (out["G_nce"] + out["G_nce_idt"]))
    for name, net in model.networks().items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)), name


def test_fastcut_flips_and_skips_the_identity_term() -> None:
    model = CUT(tiny_cut(mode="fastcut", lambda_nce=10.0, nce_idt=False, flip_equivariance=True))
    batch = {"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}
    flips = []
    for _ in range(16):
        fakes = model.generate(batch)
        flips.append(model._flipped)
        assert set(fakes) == {"fake_B"}
    assert any(flips) and not all(flips)
    assert "G_nce_idt" not in model.generator_losses(batch, fakes)


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path / "u")
    runs = tmp_path / "runs"
    fastcut = dict(mode="fastcut", lambda_nce=10.0, nce_idt=False, flip_equivariance=True)
    straight = train(tiny_cut_run(root, runs, "straight", 5, **fastcut), progress=False)
    train(tiny_cut_run(root, runs, "split", 3, **fastcut), progress=False)
    resumed = train(tiny_cut_run(root, runs, "split", 5, **fastcut), resume=True, progress=False)
    assert resumed.steps == 5
    assert same_weights(straight.checkpoint, resumed.checkpoint, NETS)
    grid = read_image(sorted((runs / "split" / "samples").iterdir())[-1])
    assert grid.shape[1] == 3 * 32  # real A | fake B | real B (FastCUT: no identity)


def test_cli_mode_defaults_train_then_translate_export_without_flags(tmp_path: Path) -> None:
    root = write_unpaired(tmp_path / "u")
    args = ["train", "cut", "--data", str(root), "--runs-dir", str(tmp_path / "runs"), "--name", "c",
            "--generator", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
            "--workers", "0", "--no-progress", "--num-patches", "16"]
    runner = CliRunner()
    cut_cfg = json.loads(runner.invoke(main, [*args, "--dry-run"]).stdout)
    m = cut_cfg["model_config"]
    assert (m["lambda_nce"], m["nce_idt"], m["flip_equivariance"], m["gan_loss"]) == (1.0, True, False, "lsgan")
    assert m["generator"]["antialias"] and m["discriminator"]["antialias"] and cut_cfg["train"]["epochs"] == 200
    fast = json.loads(runner.invoke(main, [*args, "--mode", "fastcut", "--lambda-nce", "5", "--dry-run"]).stdout)
    m = fast["model_config"]
    assert (m["mode"], m["lambda_nce"], m["nce_idt"], m["flip_equivariance"]) == ("fastcut", 5.0, False, True)
    assert (fast["train"]["epochs"], fast["train"]["decay_epochs"]) == (150, 50)
    unet_args = [*args, "--generator", "unet_64", "--load-size", "72", "--crop-size", "64", "--dry-run"]
    unet = json.loads(runner.invoke(main, unet_args).stdout)
    assert unet["model_config"]["generator"]["antialias"] is False
    bad = runner.invoke(main, [*args, "--mode", "cyclegan"])
    assert bad.exit_code == 2 and "cut" in bad.output and "fastcut" in bad.output

    result = runner.invoke(main, [*args, "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "c"
    assert sorted(p.name for p in (run / "ckpt").glob("step_*/*.safetensors"))[:3] == [
        "D.safetensors", "F.safetensors", "G.safetensors"]
    out = runner.invoke(main, ["translate", str(run), str(root / "trainA"), str(tmp_path / "out"), "--device",
                               "cpu", "--no-progress"])
    assert out.exit_code == 0, out.output
    src = read_image(sorted((root / "trainA").iterdir())[0])
    got = read_image(sorted((tmp_path / "out").glob("*.png"))[0])
    assert got.shape == src.shape and not np.array_equal(got, src)
    assert Translator.from_pretrained(run, device="cpu").direction == "AtoB"
    exported = runner.invoke(main, ["export", str(run), str(tmp_path / "g.pt"), "--format", "torchscript"])
    assert exported.exit_code == 0, exported.output
    resumed = runner.invoke(main, [*args, "--max-steps", "3", "--resume"])
    assert resumed.exit_code == 0, resumed.output
