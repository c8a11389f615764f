"""Importing the reference CUT's latest_net_G.pth: a reference CUT trained for a step imports and translates within
1 grey level of the reference's own test.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn

from helpers import write_unpaired
from i2i.checkpoint.reference import ReferenceImportError
from i2i.checkpoint.reference_import import import_reference
from i2i.checkpoint.weights import read_metadata
from i2i.cli.commands import main
from i2i.models import run_config_from_dict

# Re-stated from the facts of its models/networks.py: Sequentials named `model`, in-place ReLUs, instance norm
# (convs with bias), fixed binomial `filt` buffers in its Downsample (reflect pad 1, 3 taps, stride 2) and
# Upsample (replicate pad 1, 4 taps x 4, transposed, stride 2, cropped), netF's MLPs named mlp_N.


def _binomial(size: int) -> torch.Tensor:
    a = {3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0]}[size]
    k = torch.tensor(a)[:, None] * torch.tensor(a)[None, :]
    return k / k.sum()


class RefDownsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("filt", _binomial(3)[None, None].repeat(c, 1, 1, 1))
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class RefUpsample(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("filt", (_binomial(4) * 4)[None, None].repeat(c, 1, 1, 1))
        self.pad = nn.ReplicationPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv_transpose2d(self.pad(x), self.filt, stride=2, padding=2, groups=x.shape[1])[:, :, 1:, 1:]
        return out[:, :, :-1, :-1]


class RefBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
                                        nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RefCUTGenerator(nn.Module):
    def __init__(self, ngf: int, n_blocks: int) -> None:
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            c = ngf * mult * 2
            layers += [nn.Conv2d(ngf * mult, c, 3, padding=1), nn.InstanceNorm2d(c), nn.ReLU(True), RefDownsample(c)]
        layers += [RefBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            c = ngf * mult // 2
            layers += [RefUpsample(ngf * mult), nn.Conv2d(ngf * mult, c, 3, padding=1), nn.InstanceNorm2d(c),
                       nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, layers: list[int] | None = None) -> torch.Tensor | list[torch.Tensor]:
        if not layers:
            return self.model(x)
        feats = []
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in layers:
                feats.append(x)
            if i == layers[-1]:
                return feats
        raise AssertionError("unreachable")


class RefD(nn.Module):
    def __init__(self, ndf: int) -> None:
        super().__init__()
        layers = [nn.Conv2d(3, ndf, 4, 1, 1), nn.LeakyReLU(0.2, True), RefDownsample(ndf)]
        mult = 1
        for n in (1, 2):
            prev, mult = mult, 2**n
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True), RefDownsample(ndf * mult)]
        layers += [nn.Conv2d(ndf * mult, ndf * 8, 4, 1, 1), nn.InstanceNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * 8, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def reference_cut_step(G: RefCUTGenerator, D: RefD, real_A: torch.Tensor, real_B: torch.Tensor,
                       nce_layers: list[int], patches: int = 16, nc: int = 16) -> None:
    """One CUT training step as the reference runs it: netF created on the first batch, D then G and F updated
    (LSGAN, PatchNCE on A and on B, tau 0.07), Adam lr 2e-4 betas (0.5, 0.999)."""
    feats = G(real_A, nce_layers)
    mlps = nn.ModuleList(nn.Sequential(nn.Linear(f.shape[1], nc), nn.ReLU(), nn.Linear(nc, nc)) for f in feats)
    for m in mlps.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, gain=0.02)
            nn.init.zeros_(m.bias)
    opt_g = torch.optim.Adam([*G.parameters(), *mlps.parameters()], lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    fake = G(torch.cat([real_A, real_B]))
    fake_B, idt_B = fake[:1], fake[1:]
    loss_d = 0.5 * ((D(fake_B.detach()) ** 2).mean() + ((D(real_B) - 1) ** 2).mean())
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()

    def nce(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for mlp, q, k in zip(mlps, G(tgt, nce_layers), G(src, nce_layers), strict=True):
            ids = torch.randperm(k.shape[2] * k.shape[3])[:patches]
            fq = F.normalize(mlp(q.permute(0, 2, 3, 1).flatten(1, 2)[:, ids].flatten(0, 1)), dim=1)
            fk = F.normalize(mlp(k.permute(0, 2, 3, 1).flatten(1, 2)[:, ids].flatten(0, 1)), dim=1).detach()
            pos = (fq * fk).sum(1, keepdim=True)
            neg = (fq @ fk.T).masked_fill(torch.eye(len(ids), dtype=torch.bool), -10.0)
            logits = torch.cat([pos, neg], 1) / 0.07
            total = total + F.cross_entropy(logits, torch.zeros(len(ids), dtype=torch.long))
        return total / len(nce_layers)

    for p in D.parameters():
        p.requires_grad_(False)
    loss_g = ((D(fake_B) - 1) ** 2).mean() + 0.5 * (nce(real_A, fake_B) + nce(real_B, idt_B))
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    for p in D.parameters():
        p.requires_grad_(True)


def reference_test_py(G: nn.Module, path: Path) -> np.ndarray:
    """The reference test.py's path for one image: ToTensor, Normalize(0.5, 0.5), G, tensor2im (truncating)."""
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    x = (torch.from_numpy(img).permute(2, 0, 1)[None] - 0.5) / 0.5
    with torch.no_grad():
        out = G(x)[0].clamp(-1, 1).float().numpy()
    return ((np.transpose(out, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)


def trained_reference(tmp_path: Path) -> tuple[RefCUTGenerator, Path, Path]:
    torch.manual_seed(0)
    data = write_unpaired(tmp_path / "data", n_a=3, n_b=3, size=64)
    G, D = RefCUTGenerator(ngf=8, n_blocks=6), RefD(ndf=8)
    for m in (*G.modules(), *D.modules()):  # the reference's xavier init, gain 0.02, is too small to test with
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight, gain=1.0)
            nn.init.normal_(m.bias, 0, 0.1)
    a = torch.rand(1, 3, 64, 64) * 2 - 1
    b = torch.rand(1, 3, 64, 64) * 2 - 1
    reference_cut_step(G, D, a, b, nce_layers=[0, 4, 8, 12, 16])
    pth = tmp_path / "summer2winter_CUT" / "latest_net_G.pth"
    pth.parent.mkdir()
    torch.save(G.state_dict(), pth)
    return G, pth, data / "trainA"


def test_a_trained_reference_cut_generator_imports_and_translates_like_its_test_py(tmp_path: Path) -> None:
    G, pth, images = trained_reference(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["import", str(pth), str(tmp_path / "imported")])
    assert res.exit_code == 0, res.output
    assert "cut G, resnet_6blocks, ngf 8, 3->3 channels, instance norm" in res.output
    cfg = run_config_from_dict(read_metadata(tmp_path / "imported" / "G.safetensors")[0])
    assert cfg.model == "cut" and cfg.model_config.generator.antialias
    res = runner.invoke(main, ["translate", str(tmp_path / "imported"), str(images), str(tmp_path / "out"),
                               "--device", "cpu", "--precision", "fp32", "--no-progress"])
    assert res.exit_code == 0, res.output
    G.train()  # test.py without --eval; instance norm has no running statistics, so eval would be the same
    files = sorted(images.iterdir())
    assert len(files) == 3
    for f in files:
        expected = reference_test_py(G, f).astype(int)
        got = np.asarray(Image.open(tmp_path / "out" / f.name).convert("RGB")).astype(int)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1, f.name
        assert expected.std() > 10  # a real picture, not a flat one


def test_reference_cut_files_that_do_not_fit_get_clear_errors(tmp_path: Path) -> None:
    G = RefCUTGenerator(ngf=4, n_blocks=6)
    state = G.state_dict()
    state["model.7.filt"] = torch.rand_like(state["model.7.filt"])
    pth = tmp_path / "latest_net_G.pth"
    torch.save(state, pth)
    with pytest.raises(ReferenceImportError, match=r"fixed blur filters model\.7\.filt"):
        import_reference([pth], tmp_path / "out")
    d = tmp_path / "latest_net_D.pth"
    torch.save(RefD(4).state_dict(), d)
    with pytest.raises(ReferenceImportError, match="only the generator"):
        import_reference([d], tmp_path / "out")
    f = tmp_path / "latest_net_F.pth"
    torch.save({"mlp_0.0.weight": torch.zeros(16, 3), "mlp_0.0.bias": torch.zeros(16)}, f)
    with pytest.raises(ReferenceImportError, match="nor a CUT generator"):
        import_reference([f], tmp_path / "out")
    assert not (tmp_path / "out").exists()
