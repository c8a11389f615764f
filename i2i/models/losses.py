"""GAN objectives (vanilla, lsgan, hinge, wgangp) and the WGAN gradient penalty; all computed in fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from i2i.nets.layers import separate_batches

GAN_LOSSES = ("vanilla", "lsgan", "hinge", "wgangp")


class GANLoss(nn.Module):
    """Adversarial loss on discriminator logits.

    `loss(pred, real=True/False, for_discriminator=True/False)`. vanilla is BCE with logits
    (numerically safe, unlike sigmoid + BCE), lsgan is MSE to 1/0, hinge and wgangp use the
    logits directly. Predictions are cast to fp32 so autocast never computes a loss in half precision.
    """

    def __init__(self, kind: str = "vanilla") -> None:
        super().__init__()
        if kind not in GAN_LOSSES:
            raise ValueError(f"unknown GAN loss {kind!r}; choose from {', '.join(GAN_LOSSES)}")
        self.kind = kind

    def forward(self, pred: torch.Tensor, real: bool, for_discriminator: bool = True) -> torch.Tensor:
        pred = pred.float()
        if self.kind == "vanilla":
            target = torch.ones_like(pred) if real else torch.zeros_like(pred)
            return F.binary_cross_entropy_with_logits(pred, target)
        if self.kind == "lsgan":
            target = torch.ones_like(pred) if real else torch.zeros_like(pred)
            return F.mse_loss(pred, target)
        if self.kind == "hinge" and for_discriminator:
            return F.relu(1.0 - pred).mean() if real else F.relu(1.0 + pred).mean()
        # wgangp (both players) and the hinge generator: raise the critic's score
        return -pred.mean() if real else pred.mean()


def discriminator_loss(
    gan_loss: GANLoss, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float = 10.0
) -> dict[str, torch.Tensor]:
    """One discriminator's update: half the real + fake loss (as in both papers), plus the gradient penalty
    for wgangp. `fake` must already be detached from the generator. Keys: loss, real, fake[, gp]."""
    if real.shape == fake.shape:  # one pass over both (faster), each batch still normalised on its own
        with separate_batches(critic, 2):
            pred_real, pred_fake = critic(torch.cat([real, fake])).chunk(2)
    else:
        pred_real, pred_fake = critic(real), critic(fake)
    loss_real = gan_loss(pred_real, real=True)
    loss_fake = gan_loss(pred_fake, real=False)
    out = {"loss": 0.5 * (loss_real + loss_fake), "real": loss_real, "fake": loss_fake}
    if gan_loss.kind == "wgangp":
        out["gp"] = gradient_penalty(critic, real, fake, lambda_gp)
        out["loss"] = out["loss"] + out["gp"]
    return out


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0
) -> torch.Tensor:
    """WGAN-GP: weight * E[(||grad critic(x_hat)|| - 1)^2] on random interpolates, in fp32 without autocast."""
    device_type = real.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        real, fake = real.float(), fake.detach().float()
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        out = critic(x_hat).float()
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
        return weight * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
