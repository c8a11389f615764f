"""Tests for i2i.models.losses: GAN objectives on known logits and the WGAN-GP gradient penalty."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from i2i.models.losses import GAN_LOSSES, GANLoss, discriminator_loss, gradient_penalty
from i2i.nets.fast import split_batchnorm
from i2i.nets.layers import init_weights
from i2i.nets.patchgan import MultiscaleDiscriminator, PatchDiscriminator

PRED = torch.tensor([[-2.0, -0.5], [0.25, 3.0]]).view(1, 1, 2, 2)


def test_vanilla_zero_logits_is_ln2() -> None:
    loss = GANLoss("vanilla")
    zeros = torch.zeros(2, 1, 4, 4)
    assert loss(zeros, real=True).item() == pytest.approx(math.log(2), rel=1e-6)
    assert loss(zeros, real=False).item() == pytest.approx(math.log(2), rel=1e-6)


def test_vanilla_confident_logits() -> None:
    loss = GANLoss("vanilla")
    big = torch.full((2, 1, 3, 3), 50.0)
    assert loss(big, real=True).item() < 1e-6
    assert loss(big, real=False).item() == pytest.approx(50.0, rel=1e-4)  # numerically safe, no inf
    assert loss(-big, real=False).item() < 1e-6
    assert math.isfinite(loss(torch.full((1, 1), 1e4), real=False).item())


def test_vanilla_matches_bce_formula() -> None:
    p = torch.sigmoid(PRED)
    assert GANLoss("vanilla")(PRED, True).item() == pytest.approx(-torch.log(p).mean().item(), rel=1e-5)
    assert GANLoss("vanilla")(PRED, False).item() == pytest.approx(-torch.log(1 - p).mean().item(), rel=1e-5)


def test_lsgan_is_mse_to_one_and_zero() -> None:
    loss = GANLoss("lsgan")
    assert loss(PRED, real=True).item() == pytest.approx(((PRED - 1) ** 2).mean().item())
    assert loss(PRED, real=False).item() == pytest.approx((PRED**2).mean().item())
    assert loss(torch.ones(3, 1, 2, 2), real=True).item() == 0.0


def test_hinge_discriminator_and_generator() -> None:
    loss = GANLoss("hinge")
    # D real: mean(relu(1 - x)) = (3 + 1.5 + 0.75 + 0) / 4
    assert loss(PRED, real=True, for_discriminator=True).item() == pytest.approx(5.25 / 4)
    # D fake: mean(relu(1 + x)) = (0 + 0.5 + 1.25 + 4) / 4
    assert loss(PRED, real=False, for_discriminator=True).item() == pytest.approx(5.75 / 4)
    # G: -mean(x), not clipped
    assert loss(PRED, real=True, for_discriminator=False).item() == pytest.approx(-PRED.mean().item())


def test_wgangp_signs() -> None:
    loss = GANLoss("wgangp")
    mean = PRED.mean().item()
    assert loss(PRED, real=True).item() == pytest.approx(-mean)
    assert loss(PRED, real=False).item() == pytest.approx(mean)
    assert loss(PRED, real=True, for_discriminator=False).item() == pytest.approx(-mean)
    # minimising the critic's loss raises real scores and lowers fake ones
    x = PRED.clone().requires_grad_(True)
    (loss(x, True) + loss(x, False)).backward()
    assert torch.count_nonzero(x.grad) == 0
    x.grad = None
    loss(x, True).backward()
    assert (x.grad < 0).all()


@pytest.mark.parametrize("kind", GAN_LOSSES)
@pytest.mark.parametrize("real", [True, False])
def test_loss_is_fp32_for_bf16_input(kind: str, real: bool) -> None:
    x = PRED.to(torch.bfloat16).requires_grad_(True)
    out = GANLoss(kind)(x, real)
    assert out.dtype == torch.float32 and out.dim() == 0
    assert out.item() == pytest.approx(GANLoss(kind)(PRED.to(torch.bfloat16).float(), real).item(), rel=1e-6)
    out.backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


def test_unknown_kind_lists_choices() -> None:
    with pytest.raises(ValueError) as err:
        GANLoss("wgan")
    assert "wgan" in str(err.value) and all(k in str(err.value) for k in GAN_LOSSES)


# ------------------------------------------------------------------------------------------ gradient penalty


class _Linear(nn.Module):
    """f(x) = sum(w * x) per sample: its input gradient is w everywhere, whatever x is."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_gradient_penalty_linear_critic(scale: float) -> None:
    torch.manual_seed(0)
    w = torch.randn(3, 4, 4)
    w = w / w.norm() * scale  # ||w|| = scale
    critic = _Linear(w.clone())
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gp = gradient_penalty(critic, real, fake, weight=10.0)
    assert gp.dtype == torch.float32
    assert gp.item() == pytest.approx(10.0 * (scale - 1) ** 2, rel=1e-4, abs=1e-6)
    # create_graph: the penalty trains the critic; d/dw of 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||
    gp.backward()
    torch.testing.assert_close(critic.w.grad, 20.0 * (scale - 1) * w / scale, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_weight_and_nonlinear_critic() -> None:
    """f(x) = sum(x^2) has gradient 2x; with real == fake every interpolate is x, so GP = w * mean((2||x|| - 1)^2)."""

    class Square(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x**2).flatten(1).sum(1, keepdim=True)

    torch.manual_seed(1)
    x = torch.randn(4, 1, 3, 3) * 0.2
    expected = ((2 * x.flatten(1).norm(dim=1) - 1) ** 2).mean().item()
    assert gradient_penalty(Square(), x, x.clone(), weight=2.5).item() == pytest.approx(2.5 * expected, rel=1e-5)


def test_gradient_penalty_does_not_touch_fake_graph_and_accepts_bf16() -> None:
    critic = _Linear(torch.full((2, 2, 2), 0.5))  # ||w|| = sqrt(8 * 0.25) = sqrt(2)
    fake = torch.randn(3, 2, 2, 2, requires_grad=True)
    gp = gradient_penalty(critic, torch.randn(3, 2, 2, 2).to(torch.bfloat16), fake.to(torch.bfloat16), weight=1.0)
    assert gp.dtype == torch.float32
    assert gp.item() == pytest.approx((math.sqrt(2) - 1) ** 2, rel=1e-3)
    gp.backward()
    assert fake.grad is None  # fake is detached: the penalty never trains the generator


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("scales", [1, 2])
def test_discriminator_loss_one_pass_equals_two_separate_passes(norm: str, scales: int) -> None:
    """Real and fake are scored in one batch, yet each keeps its own BatchNorm statistics (at every scale of
    a multi-scale critic): losses, gradients and running statistics must equal two separate calls."""
    torch.manual_seed(0)
    critic = PatchDiscriminator(6, 8, 3, norm) if scales == 1 else MultiscaleDiscriminator(6, 8, 3, norm, num_d=2)
    split_batchnorm(init_weights(critic))  # the swap the trainer applies (i2i/nets/fast.py)
    twin = copy.deepcopy(critic)
    real, fake = torch.randn(2, 6, 64, 64), torch.randn(2, 6, 64, 64) * 0.5 + 0.3
    loss = GANLoss("vanilla")
    out = discriminator_loss(loss, critic, real, fake)
    out["loss"].backward()
    loss_real, loss_fake = loss(twin(real), real=True), loss(twin(fake), real=False)
    (0.5 * (loss_real + loss_fake)).backward()
    torch.testing.assert_close(out["real"], loss_real)
    torch.testing.assert_close(out["fake"], loss_fake)
    for (name, a), b in zip(critic.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    for (name, a), b in zip(critic.named_buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)  # BatchNorm running statistics, updated real then fake
