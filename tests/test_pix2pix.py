"""The Pix2Pix objective: one step of each update changes the right networks and gives finite losses."""

from __future__ import annotations

import torch

from i2i.models.pix2pix import Pix2Pix, Pix2PixConfig
from i2i.nets import DiscriminatorConfig, GeneratorConfig


def tiny_model(gan_loss: str = "vanilla") -> Pix2Pix:
    torch.manual_seed(0)
    return Pix2Pix(Pix2PixConfig(
        generator=GeneratorConfig(name="unet_64", base_channels=4),
        discriminator=DiscriminatorConfig(in_channels=6, base_channels=4),
        gan_loss=gan_loss,
    ))


def batch(n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"input": torch.rand(n, 3, 64, 64, generator=g) * 2 - 1,
            "target": torch.rand(n, 3, 64, 64, generator=g) * 2 - 1}


def snapshot(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def changed(before: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_discriminator_step_trains_only_d_and_halves_the_loss() -> None:
    model = tiny_model()
    b = batch()
    fakes = model.generate(b)
    out = model.discriminator_losses(b, fakes)
    assert torch.isfinite(out["loss"])
    torch.testing.assert_close(out["loss"], 0.5 * (out["D_real"] + out["D_fake"]))
    out["loss"].backward()
    assert all(p.grad is None for p in model.G.parameters()), "the D step must not reach G (fake is detached)"
    assert all(p.grad is not None for p in model.D.parameters())


def test_generator_step_trains_only_g_and_weights_l1() -> None:
    model = tiny_model()
    b = batch()
    fakes = model.generate(b)
    out = model.generator_losses(b, fakes)
    torch.testing.assert_close(out["loss"], out["G_gan"] + 100.0 * out["G_l1"])
    torch.testing.assert_close(out["G_l1"], (fakes["output"] - b["target"]).abs().mean())
    out["loss"].backward()
    assert all(p.grad is None for p in model.D.parameters()), "D is frozen during the G step"
    assert all(p.requires_grad for p in model.D.parameters()), "D is unfrozen afterwards"
    assert all(p.grad is not None for p in model.G.parameters())


def test_one_optimisation_step_changes_both_networks() -> None:
    for loss in ("vanilla", "lsgan", "hinge", "wgangp"):
        model = tiny_model(loss)
        opts = {u.name: torch.optim.Adam(u.parameters, lr=1e-3) for u in model.updates()}
        g0, d0 = snapshot(model.G), snapshot(model.D)
        b = batch()
        fakes = model.generate(b)
        for update in model.updates():
            group = update.name
            out = update.loss(b, fakes)
            assert torch.isfinite(out["loss"]), (loss, group)
            opts[group].zero_grad()
            out["loss"].backward()
            opts[group].step()
        assert changed(g0, model.G) and changed(d0, model.D), loss
        if loss == "wgangp":
            assert "D_gp" in model.discriminator_losses(b, model.generate(b))


def test_samples_and_generators_describe_the_model() -> None:
    model = tiny_model()
    b = batch(1)
    fakes = model.generate(b)
    assert list(model.samples(b, fakes)) == ["input", "output", "target"]
    assert model.generators() == {"AtoB": "G"}
    assert set(model.networks()) == {"G", "D"}
