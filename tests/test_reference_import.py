"""Importing the reference implementation's .pth state_dicts: detection, exact outputs, safety, errors, CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open
from torch import nn

from i2i import Translator, load_generator
from i2i.checkpoint.reference import ReferenceImportError, read_reference
from i2i.checkpoint.reference_import import import_reference
from i2i.checkpoint.weights import CONFIG_KEY, load_weights, read_metadata
from i2i.cli.commands import main
from i2i.config import RunConfig
from i2i.models import run_config_from_dict
from i2i.nets import DiscriminatorConfig, build_discriminator

# Re-stated from the facts of its models/networks.py: Sequentials named `model` (`net` for the pixel D),
# nested U-Net blocks, in-place activations, bias only where its norm is instance (or always, where noted).


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if kind == "instance":
        return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    return nn.Identity()  # "none": keeps its Sequential slot, as the reference's Identity does


class RefUnetBlock(nn.Module):
    def __init__(self, outer: int, inner: int, in_ch: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        down = nn.Conv2d(outer if in_ch is None else in_ch, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, _norm(norm, inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_downs: int, ngf: int, norm: str, dropout: bool = False) -> None:
        super().__init__()
        block = RefUnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, sub=block, norm=norm, dropout=dropout)
        for outer, inner in ((ngf * 4, ngf * 8), (ngf * 2, ngf * 4), (ngf, ngf * 2)):
            block = RefUnetBlock(outer, inner, sub=block, norm=norm)
        self.model = RefUnetBlock(c_out, ngf, in_ch=c_in, sub=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, dropout: bool) -> None:
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RefResnet(nn.Module):
    def __init__(self, c_in: int, c_out: int, ngf: int, n_blocks: int, norm: str, dropout: bool = False) -> None:
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(c_in, ngf, 7, bias=bias), _norm(norm, ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=bias), _norm(norm, ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [RefResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=bias),
                       _norm(norm, ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, c_out, 7), nn.Tanh()]  # the output conv always has bias
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefNLayerD(nn.Module):
    def __init__(self, c_in: int, ndf: int, n_layers: int, norm: str) -> None:
        super().__init__()
        bias = norm == "instance"
        layers = [nn.Conv2d(c_in, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=bias), _norm(norm, ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=bias), _norm(norm, ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefPixelD(nn.Module):
    def __init__(self, c_in: int, ndf: int, norm: str) -> None:
        super().__init__()
        bias = norm == "instance"
        self.net = nn.Sequential(nn.Conv2d(c_in, ndf, 1), nn.LeakyReLU(0.2, True),
                                 nn.Conv2d(ndf, ndf * 2, 1, bias=bias), _norm(norm, ndf * 2), nn.LeakyReLU(0.2, True),
                                 nn.Conv2d(ndf * 2, 1, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def randomise(net: nn.Module, seed: int = 0, gain: float = 1.5) -> nn.Module:
    """Non-trivial weights everywhere: fan-in scaled convs, biases, BN affine params and running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / fan_in**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(1234)
    return net


def reference_test_mode(net: nn.Module) -> nn.Module:
    """The reference's test.py without --eval: train-mode BatchNorm (batch statistics), dropout off here."""
    net.train()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    return net


def save(net: nn.Module, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path, **kwargs)
    return path


def assert_translates_like(ref: nn.Module, weights: Path, c_in: int, size: int = 64, **load) -> None:
    """Two images through the reference one at a time (batch 1) == both at once through i2i's Translator."""
    x = torch.rand(2, c_in, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = torch.cat([reference_test_mode(ref)(img[None].clone()) for img in x])
    got = Translator.from_pretrained(weights, device="cpu", precision="fp32", **load).translate_tensor(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=2e-5)
    assert expected.std() > 0.1 and (expected.abs() < 0.98).float().mean() > 0.5  # not saturated: a real test


def stored_config(path: Path) -> RunConfig:
    return run_config_from_dict(read_metadata(path)[0])


# ------------------------------------------------------------------------------------- generators


@pytest.mark.parametrize("num_downs,ngf,norm", [(6, 8, "batch"), (6, 8, "instance"), (6, 8, "none"), (8, 2, "batch")])
def test_unet_matches_reference(tmp_path: Path, num_downs: int, ngf: int, norm: str) -> None:
    ref = randomise(RefUnet(3, 2, num_downs, ngf, norm))
    pth = save(ref, tmp_path / "facades" / "latest_net_G.pth")
    result = import_reference([pth], tmp_path / "G.safetensors", dropout=False)
    g = result.config.model_config.generator
    assert (result.config.model, g.name, g.in_channels, g.out_channels, g.base_channels, g.norm, g.dropout) == (
        "pix2pix", f"unet_{2**num_downs}", 3, 2, ngf, norm, False)
    assert_translates_like(ref, tmp_path / "G.safetensors", 3, size=2**num_downs)


@pytest.mark.parametrize("n_blocks,norm", [(6, "instance"), (9, "instance"), (6, "batch"), (9, "none")])
def test_resnet_matches_reference(tmp_path: Path, n_blocks: int, norm: str) -> None:
    ref = randomise(RefResnet(3, 3, 4, n_blocks, norm), gain=0.5 if norm == "none" else 1.5)  # O(1) activations
    pth = save(ref, tmp_path / "latest_net_G.pth")
    result = import_reference([pth], tmp_path / "g.safetensors")
    g = result.config.model_config.g_ab
    assert (result.config.model, g.name, g.norm, g.dropout) == ("cyclegan", f"resnet_{n_blocks}blocks", norm, False)
    assert_translates_like(ref, tmp_path / "g.safetensors", 3)


def test_unet_dropout_follows_the_option_and_the_model_default(tmp_path: Path) -> None:
    ref = randomise(RefUnet(3, 3, 7, 4, "batch", dropout=True))  # unet_128: two dropout blocks
    pth = save(ref, tmp_path / "latest_net_G.pth")
    import_reference([pth], tmp_path / "on.safetensors")  # pix2pix: the reference's default is dropout on
    net, gen_cfg, _, _ = load_generator(tmp_path / "on.safetensors")
    assert gen_cfg.dropout is True
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 2
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    t = Translator.from_pretrained(tmp_path / "on.safetensors", device="cpu", keep_dropout=True)
    assert not torch.equal(t.translate_tensor(x), t.translate_tensor(x))  # the paper's stochastic outputs
    assert_translates_like(ref, tmp_path / "on.safetensors", 3, size=128)  # dropout off at inference by default

    import_reference([pth], tmp_path / "off.safetensors", dropout=False)
    net, gen_cfg, _, _ = load_generator(tmp_path / "off.safetensors")
    assert gen_cfg.dropout is False and not any(isinstance(m, nn.Dropout) for m in net.modules())
    import_reference([pth], tmp_path / "cg.safetensors", model="cyclegan")  # CycleGAN's default: off
    assert stored_config(tmp_path / "cg.safetensors").model_config.g_ab.dropout is False


def test_resnet_dropout_layout_is_read_from_the_keys(tmp_path: Path) -> None:
    """The reference's Dropout slot shifts a ResNet block's second conv (conv_block.5 -> .6)."""
    ref = randomise(RefResnet(3, 3, 4, 6, "instance", dropout=True))
    assert "model.10.conv_block.6.weight" in ref.state_dict()
    pth = save(ref, tmp_path / "latest_net_G.pth")
    assert read_reference(pth).dropout_layers is True
    import_reference([pth], tmp_path / "g.safetensors")
    assert stored_config(tmp_path / "g.safetensors").model_config.g_ab.dropout is True
    assert_translates_like(ref, tmp_path / "g.safetensors", 3)
    import_reference([pth], tmp_path / "nodrop.safetensors", dropout=False)  # re-laid out without the slot
    assert_translates_like(ref, tmp_path / "nodrop.safetensors", 3)


# -------------------------------------------------------------------------- file variants and safety


def test_dataparallel_prefix_old_instance_stats_and_legacy_format(tmp_path: Path) -> None:
    ref = randomise(RefUnet(1, 3, 6, 4, "instance"))
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    for name, m in ref.named_modules():  # what PyTorch < 0.4 saved for InstanceNorm
        if isinstance(m, nn.InstanceNorm2d):
            state[f"module.{name}.running_mean"] = torch.randn(m.num_features)
            state[f"module.{name}.running_var"] = torch.rand(m.num_features) + 5
            state[f"module.{name}.num_batches_tracked"] = torch.tensor(7)
    pth = tmp_path / "old_net_G.pth"
    torch.save(state, pth, _use_new_zipfile_serialization=False)
    result = import_reference([pth], tmp_path / "G.safetensors")
    assert any("module." in n for n in result.notes) and any("InstanceNorm running statistics" in n
                                                             for n in result.notes)
    assert result.config.model_config.generator.norm == "instance"
    assert_translates_like(ref, tmp_path / "G.safetensors", 1)


def test_half_precision_file_is_stored_as_float32(tmp_path: Path) -> None:
    ref = randomise(RefResnet(3, 3, 4, 6, "instance"))
    pth = tmp_path / "latest_net_G.pth"
    torch.save({k: v.half() for k, v in ref.state_dict().items()}, pth)
    import_reference([pth], tmp_path / "g.safetensors")
    assert {t.dtype for t in load_weights(tmp_path / "g.safetensors").values()} == {torch.float32}


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_a_pickle_that_would_run_code_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    pth = tmp_path / "latest_net_G.pth"
    torch.save({"model.model.0.weight": torch.zeros(1), "payload": _RunsCode(marker)}, pth)
    with pytest.raises(ReferenceImportError, match="not a plain state_dict") as err:
        import_reference([pth], tmp_path / "out")
    assert str(pth) in str(err.value) and "exec" in str(err.value)
    assert not marker.exists() and not (tmp_path / "out").exists()
    torch.load(pth, weights_only=False)  # the file is a live payload: a plain unpickle runs it
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("content,match", [
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "cannot be read as a PyTorch"),
    (b"", "cannot be read as a PyTorch"),
    (pickle.dumps({"model.0.weight": 1.0}, protocol=2), "cannot be read as a PyTorch"),  # pickle, not torch.save
])
def test_unreadable_files_get_a_clear_error(tmp_path: Path, content: bytes, match: str) -> None:
    pth = tmp_path / "latest_net_G.pth"
    pth.write_bytes(content)
    with pytest.raises(ReferenceImportError, match=match) as err:
        read_reference(pth)
    assert str(pth) in str(err.value)


@pytest.mark.parametrize("obj,match", [
    (torch.zeros(3), "holds a Tensor, not a state_dict"),
    ({"epoch": 3, "state_dict": {"w": torch.zeros(1)}}, "not name -> tensor"),
    ({"conv1.weight": torch.zeros(8, 3, 7, 7), "bn1.weight": torch.zeros(8), "fc.weight": torch.zeros(10, 8)},
     r"not a reference pix2pix/CycleGAN network.*found conv1.weight \(8, 3, 7, 7\), bn1.weight"),
    (RefUnet(3, 3, 5, 4, "batch").state_dict(), r"U-Net with 5 downsamplings; i2i has unet_64 \(6\)"),
    (RefResnet(3, 3, 4, 3, "instance").state_dict(), "ResNet generator with 3 blocks"),
])
def test_other_contents_get_a_clear_error(tmp_path: Path, obj: object, match: str) -> None:
    pth = tmp_path / "x.pth"
    torch.save(obj, pth)
    with pytest.raises(ReferenceImportError, match=match):
        import_reference([pth], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_nonstandard_widths_are_reported_with_names_and_shapes(tmp_path: Path) -> None:
    state = RefUnet(3, 3, 6, 4, "batch").state_dict()
    state["model.model.1.model.1.weight"] = torch.zeros(9, 4, 4, 4)  # 9 channels where i2i's U-Net has 8
    pth = tmp_path / "latest_net_G.pth"
    torch.save(state, pth)
    with pytest.raises(ReferenceImportError, match=r"model\.model\.1\.model\.1\.weight \(9, 4, 4, 4\) "
                                                   r"\(i2i downs\.0\.0\.weight needs \(8, 4, 4, 4\)\)"):
        import_reference([pth], tmp_path / "G.safetensors")


# ---------------------------------------------------------------------- discriminators and pairs


@pytest.mark.parametrize("kind,n_layers,norm,expected_name", [
    ("nlayer", 3, "batch", "basic"), ("nlayer", 2, "instance", "n_layers"), ("pixel", 3, "batch", "pixel"),
])
def test_discriminator_import(tmp_path: Path, kind: str, n_layers: int, norm: str, expected_name: str) -> None:
    ref = randomise(RefNLayerD(6, 4, n_layers, norm) if kind == "nlayer" else RefPixelD(6, 4, norm))
    pth = save(ref, tmp_path / "latest_net_D.pth")
    result = import_reference([pth], tmp_path / "D.safetensors")
    cfg = result.config.model_config.discriminator
    assert (result.config.model, cfg.name, cfg.n_layers, cfg.in_channels, cfg.base_channels, cfg.norm) == (
        "pix2pix", expected_name, n_layers, 6, 4, norm)
    assert read_metadata(tmp_path / "D.safetensors")[1] == "D"
    ours = build_discriminator(DiscriminatorConfig(**{**vars(cfg)}))
    ours.load_state_dict(load_weights(tmp_path / "D.safetensors"))
    x = torch.randn(2, 6, 64, 64)
    with torch.no_grad():  # both in train mode: BatchNorm on this batch's statistics
        torch.testing.assert_close(ours.train()(x), ref.train()(x.clone()), rtol=1e-4, atol=1e-5)


def test_cyclegan_pair_into_a_checkpoint_folder(tmp_path: Path) -> None:
    """A has 1 channel, B 3, so every network's place is checked; the reference's D_A judges domain B."""
    run = tmp_path / "horse2zebra"
    g_a, g_b = randomise(RefResnet(1, 3, 4, 6, "instance"), 1), randomise(RefResnet(3, 1, 4, 6, "instance"), 2)
    paths = [save(g_a, run / "latest_net_G_A.pth"), save(g_b, run / "latest_net_G_B.pth"),
             save(randomise(RefNLayerD(3, 4, 3, "instance")), run / "latest_net_D_A.pth"),
             save(randomise(RefNLayerD(1, 4, 3, "instance")), run / "latest_net_D_B.pth")]
    result = import_reference(paths, tmp_path / "imported")
    assert sorted(p.name for p in (tmp_path / "imported").iterdir()) == [
        "D_A.safetensors", "D_B.safetensors", "G_AB.safetensors", "G_BA.safetensors"]
    m = result.config.model_config
    assert (m.d_a.in_channels, m.d_b.in_channels, m.lambda_identity) == (1, 3, 0.0)
    assert result.sources["D_A"].path.name == "latest_net_D_B.pth"
    with safe_open(str(tmp_path / "imported" / "G_BA.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["network"] == "G_BA" and meta["imported_from"] == "latest_net_G_B.pth"
    assert json.loads(meta[CONFIG_KEY])["model"] == "cyclegan"
    assert_translates_like(g_a, tmp_path / "imported", 1, direction="AtoB")
    assert_translates_like(g_b, tmp_path / "imported", 3, direction="BtoA")


def test_a_lone_cyclegan_generator_takes_the_given_direction(tmp_path: Path) -> None:
    pth = save(randomise(RefResnet(3, 3, 4, 6, "instance")), tmp_path / "latest_net_G.pth")
    import_reference([pth], tmp_path / "winter.safetensors", direction="BtoA")
    assert read_metadata(tmp_path / "winter.safetensors")[1] == "G_BA"
    assert Translator.from_pretrained(tmp_path / "winter.safetensors", device="cpu").direction == "BtoA"
    result = import_reference([pth], tmp_path / "folder", direction="BtoA")
    assert any("--direction BtoA" in note for note in result.notes)
    assert Translator.from_pretrained(tmp_path / "folder", direction="BtoA", device="cpu").direction == "BtoA"


def test_names_and_contents_must_agree(tmp_path: Path) -> None:
    d = save(randomise(RefNLayerD(6, 4, 3, "batch")), tmp_path / "latest_net_G.pth")
    with pytest.raises(ReferenceImportError, match="named as network G but holds a discriminator"):
        import_reference([d], tmp_path / "out")
    g = save(randomise(RefResnet(3, 3, 4, 6, "instance")), tmp_path / "latest_net_G_A.pth")
    with pytest.raises(ReferenceImportError, match="--model cyclegan"):
        import_reference([g], tmp_path / "out", model="pix2pix")
    with pytest.raises(ReferenceImportError, match="one file but 2 networks"):
        import_reference([g, save(randomise(RefResnet(3, 3, 4, 6, "instance")), tmp_path / "latest_net_G_B.pth")],
                         tmp_path / "both.safetensors")


def test_networks_must_agree_on_channels_and_nothing_is_written_otherwise(tmp_path: Path) -> None:
    g = save(randomise(RefUnet(3, 3, 6, 4, "batch")), tmp_path / "p" / "latest_net_G.pth")
    d = save(randomise(RefNLayerD(4, 4, 3, "batch")), tmp_path / "p" / "latest_net_D.pth")
    with pytest.raises(ReferenceImportError, match="the discriminator sees 4 channels but the generator maps 3->3"):
        import_reference([g, d], tmp_path / "out")
    g_a = save(randomise(RefResnet(3, 3, 4, 6, "instance")), tmp_path / "c" / "latest_net_G_A.pth")
    d_b = save(randomise(RefNLayerD(1, 4, 3, "instance")), tmp_path / "c" / "latest_net_D_B.pth")  # judges A
    with pytest.raises(ReferenceImportError, match="disagree on domain A's channels: G_AB 3, D_A 1"):
        import_reference([g_a, d_b], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_outputs_are_kept_unless_overwrite(tmp_path: Path) -> None:
    pth = save(randomise(RefUnet(3, 3, 6, 4, "batch")), tmp_path / "latest_net_G.pth")
    out = tmp_path / "ckpt"
    import_reference([pth], out)
    before = (out / "G.safetensors").read_bytes()
    with pytest.raises(ReferenceImportError, match="already exist"):
        import_reference([pth], out, direction="BtoA")
    assert (out / "G.safetensors").read_bytes() == before
    import_reference([pth], out, direction="BtoA", overwrite=True)
    assert stored_config(out / "G.safetensors").model_config.direction == "BtoA"
    (out / "D.safetensors").write_bytes(b"from another run")
    with pytest.raises(ReferenceImportError, match=r"already holds D\.safetensors"):
        import_reference([pth], out, overwrite=True)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_import_then_translate(tmp_path: Path) -> None:
    pth = save(randomise(RefUnet(3, 3, 6, 4, "batch")), tmp_path / "facades_label2photo" / "latest_net_G.pth")
    runner = CliRunner()
    res = runner.invoke(main, ["import", str(pth), str(tmp_path / "facades"), "--direction", "BtoA",
                               "--crop-size", "64", "--load-size", "72"])
    assert res.exit_code == 0, res.output
    assert "pix2pix G, unet_64, ngf 4, 3->3 channels, batch norm, dropout on" in res.output
    cfg = stored_config(tmp_path / "facades" / "G.safetensors")
    assert (cfg.model_config.direction, cfg.data.crop_size, cfg.data.load_size) == ("BtoA", 64, 72)

    (tmp_path / "labels").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "labels" / "a.png")
    res = runner.invoke(main, ["translate", str(tmp_path / "facades"), str(tmp_path / "labels"),
                               str(tmp_path / "photos"), "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "photos" / "a.png").size == (64, 64)

    bad = tmp_path / "latest_net_D.pth"
    bad.write_bytes(b"\x00not a torch file")
    res = runner.invoke(main, ["import", str(bad), str(tmp_path / "x")])
    assert res.exit_code == 1 and "Error:" in res.output and str(bad) in res.output
    assert "Traceback" not in res.output
