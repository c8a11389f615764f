"""GAN objectives (vanilla, lsgan, hinge, wgangp), the WGAN gradient penalty and pix2pixHD's feature matching;
all computed in fp32, for single- and multi-scale discriminators."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from i2i.nets.fast import one_pass_keeps_batches_apart, separate_batches

GAN_LOSSES = ("vanilla", "lsgan", "hinge", "wgangp")

# A discriminator's output: one logit map, or one per scale (MultiscaleDiscriminator).
Logits = torch.Tensor | Sequence[torch.Tensor]


def _scales(pred: Logits) -> list[torch.Tensor]:
    return [pred] if isinstance(pred, torch.Tensor) else list(pred)


class GANLoss(nn.Module):
    """Adversarial loss on discriminator logits.

    `loss(pred, real=True/False, for_discriminator=True/False)`. vanilla is BCE with logits
    (numerically safe, unlike sigmoid + BCE), lsgan is MSE to 1/0, hinge and wgangp use the
    logits directly. Predictions are cast to fp32 so autocast never computes a loss in half precision.
    A list of logit maps (a multi-scale discriminator) gives the mean of the per-scale losses, as SPADE
    does (pix2pixHD sums them); the mean keeps the loss's scale, and so its balance against L1, whatever
    the number of scales.
    """

    def __init__(self, kind: str = "vanilla") -> None:
        super().__init__()
        if kind not in GAN_LOSSES:
            raise ValueError(f"unknown GAN loss {kind!r}; choose from {', '.join(GAN_LOSSES)}")
        self.kind = kind

    def forward(self, pred: Logits, real: bool, for_discriminator: bool = True) -> torch.Tensor:
        scales = _scales(pred)
        losses = [self._one_scale(p, real, for_discriminator) for p in scales]
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()

    def _one_scale(self, pred: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
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


def _halves(pred: Logits) -> tuple[Logits, Logits]:
    """Split the output of one pass over cat([real, fake]) into the real and the fake half (per scale)."""
    if isinstance(pred, torch.Tensor):
        return pred.chunk(2)
    pairs = [p.chunk(2) for p in pred]
    return [a for a, _ in pairs], [b for _, b in pairs]


def discriminator_loss(
    gan_loss: GANLoss, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float = 10.0
) -> dict[str, torch.Tensor]:
    """One discriminator's update: half the real + fake loss (as in both papers), plus the gradient penalty
    for wgangp. `fake` must already be detached from the generator. Keys: loss, real, fake[, gp].

    Real and fake are scored in one pass (faster) when the critic can keep them apart: each half is still
    normalised on its own by BatchNorm at every scale (`separate_batches`, after the trainer's `split_batchnorm`
    swap; pooling between scales never mixes images); a critic with plain BatchNorm scores them in two calls.
    A spectrally normalised
    critic takes one power-iteration step for the pass where two calls would take two, and scores both
    halves with the same sigma (see SpectralNormConv2d).
    """
    if real.shape == fake.shape and one_pass_keeps_batches_apart(critic):
        with separate_batches(critic, 2):
            pred_real, pred_fake = _halves(critic(torch.cat([real, fake])))
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
    """WGAN-GP: weight * E[(||grad critic(x_hat)|| - 1)^2] on random interpolates, in fp32 without autocast.

    A multi-scale critic is one critic per scale (each scale's loss is its own Wasserstein estimate), so each
    scale's input gradient is penalised on its own and the penalties are averaged, as its losses are.
    """
    device_type = real.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        real, fake = real.float(), fake.detach().float()
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        penalties = []
        for out in _scales(critic(x_hat)):
            (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
            penalties.append(((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean())
        return weight * (penalties[0] if len(penalties) == 1 else torch.stack(penalties).mean())


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]], fake_features: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """pix2pixHD's feature-matching loss: L1 between the discriminator's features of real and fake pairs.

    Arguments are `critic.features(...)` outputs: per scale, each block's activation then the logits (the
    logits are not matched). Real features are detached (they are targets). pix2pixHD weights each of a
    scale's L blocks by 4 / L (1 for the basic PatchGAN, whose L = n_layers + 1 = 4, so a plain sum) and
    each scale by 1 / num_D; this computes the same, 4 x the mean over blocks, averaged over scales, so
    that lambda_fm = 10 means what pix2pixHD's lambda_feat = 10 does. fp32 whatever autocast does.
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(f"feature lists differ in scales: {len(real_features)} real vs {len(fake_features)} fake")
    per_scale = []
    for real_scale, fake_scale in zip(real_features, fake_features, strict=True):
        if len(real_scale) != len(fake_scale) or len(real_scale) < 2:
            raise ValueError(f"each scale needs the same blocks plus logits, got {len(real_scale)} real and "
                             f"{len(fake_scale)} fake feature maps")
        blocks = [F.l1_loss(f.float(), r.detach().float())
                  for r, f in zip(real_scale[:-1], fake_scale[:-1], strict=True)]
        per_scale.append(4.0 * torch.stack(blocks).mean())
    return torch.stack(per_scale).mean()


def patch_nce_loss(query: torch.Tensor, key: torch.Tensor, batch: int, temperature: float = 0.07,
                   per_image: bool = False) -> torch.Tensor:
    """PatchNCE (Park et al. 2020): each output patch's feature (a row of `query`) should pick out the input
    patch at the same place (the same row of `key`) among the other sampled patches of the same image.

    `query` and `key` are (batch * patches) x dim, L2-normalised, image by image; `key` is a target (detached).
    Cross-entropy over [positive, negatives] / temperature per patch, the diagonal (a patch against itself among
    the negatives) masked with -10 as the reference does; the mean over patches (of each image: `per_image`).
    fp32 whatever autocast does.
    """
    q, k = query.float(), key.detach().float()
    positive = (q * k).sum(dim=1, keepdim=True)
    q_img, k_img = q.view(batch, -1, q.shape[1]), k.view(batch, -1, k.shape[1])
    negatives = torch.bmm(q_img, k_img.transpose(1, 2))  # batch x patches x patches
    eye = torch.eye(negatives.shape[1], device=q.device, dtype=torch.bool)[None]
    negatives = negatives.masked_fill(eye, -10.0).flatten(0, 1)
    logits = torch.cat([positive, negatives], dim=1) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=q.device)
    if per_image:
        return F.cross_entropy(logits, target, reduction="none").view(batch, -1).mean(dim=1)
    return F.cross_entropy(logits, target)
