"""Validation during training: score the current generators on a fixed subset of held-out images."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from i2i.checkpoint.weights import unwrap
from i2i.config import DataConfig
from i2i.data import make_dataset
from i2i.data.sampling import Skipped
from i2i.data.tensors import to_image
from i2i.evaluation.paired import psnr, ssim
from i2i.models import Model, View
from i2i.nets.layers import per_image_norm
from i2i.runtime.devices import autocast


def higher_is_better(metric: str) -> bool:
    """PSNR and SSIM grow with quality; L1, FID and KID shrink."""
    return any(name in metric for name in ("psnr", "ssim"))


def metric_names(views: dict[str, View], fid: bool) -> list[str]:
    """The names a Validator reports for these views (known before any image is scored)."""
    names = []
    for direction, view in views.items():
        suffix = "" if len(views) == 1 else f"_{direction}"
        if view.paired:
            names += [f"val_l1{suffix}", f"val_psnr{suffix}", f"val_ssim{suffix}"]
        if fid:
            names += [f"val_fid{suffix}", f"val_kid{suffix}"]
    return names


def default_best_metric(names: list[str]) -> str | None:
    """What picks ckpt/best unless the user says: the first PSNR, else the first FID."""
    return next((n for n in names if "psnr" in n), next((n for n in names if "fid" in n), None))


class Validator:
    """Holds `size` evenly spaced items of a held-out split and scores the model's generators on them.

    Generators run as at inference (BatchNorm per image, dropout off) on a copy, so training is
    untouched. Paired views give val_l1 / val_psnr / val_ssim; with `fid`, every view also gives
    val_fid / val_kid against the held-out real images (few images bias FID upwards: compare runs at
    equal `size`). Metric names get a _AtoB / _BtoA suffix when a model has two generators.
    """

    def __init__(self, model: Model, data: DataConfig, root: str, split: str, size: int = 16,
                 fid: bool = False) -> None:
        held_out = dataclasses.replace(data, root=root, flip=False)
        dataset = make_dataset(model.data_spec(), held_out, split=split, train=False)
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(size, len(dataset))).round().astype(int))
        self.samples = [s for s in (dataset[int(i)] for i in picks) if not isinstance(s, Skipped)]
        if not self.samples:
            raise ValueError(f"no readable validation images in {root} ({split})")
        self.fid = fid
        if fid:
            from i2i.evaluation.fid import distribution_metrics_unavailable

            missing = distribution_metrics_unavailable()
            if missing:
                raise ValueError(f"validation FID is unavailable: {missing}")

    @torch.no_grad()
    def __call__(self, model: Model, device: torch.device, dtype: torch.dtype,
                 replacements: dict[str, torch.nn.Module] | None = None) -> dict[str, float]:
        """Scores of the model's generators, or of `replacements` by network name (e.g. their EMA copies)."""
        views, networks = model.views(), {**model.networks(), **(replacements or {})}
        scores: dict[str, float] = {}
        for direction, view in views.items():
            net = per_image_norm(copy.deepcopy(unwrap(networks[model.generators()[direction]]))).eval()
            fakes, reals = [], []
            for sample in self.samples:
                with autocast(device, dtype):
                    fake = net(sample[view.source][None].to(device)).float()[0]
                fakes.append(to_image(fake))
                reals.append(to_image(sample[view.target]))
            suffix = "" if len(views) == 1 else f"_{direction}"
            if view.paired:
                pairs = list(zip(fakes, reals, strict=True))
                scores[f"val_l1{suffix}"] = float(np.mean([np.abs(f.astype(float) - r).mean() / 255 for f, r in pairs]))
                scores[f"val_psnr{suffix}"] = float(np.mean([psnr(f, r) for f, r in pairs]))
                scores[f"val_ssim{suffix}"] = float(np.mean([ssim(f, r) for f, r in pairs]))
            if self.fid:
                from i2i.evaluation.fid import inception_features, scores_from_features

                dist = scores_from_features(inception_features(fakes), inception_features(reals), kid_subsets=20)
                scores[f"val_fid{suffix}"], scores[f"val_kid{suffix}"] = dist["fid"], dist["kid_mean"]
        return scores
