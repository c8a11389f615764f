"""Validation during training: score the current generators on a fixed subset of held-out images."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from i2i.checkpoint import unwrap
from i2i.config import DataConfig
from i2i.data.sampling import Skipped
from i2i.data.tensors import to_image
from i2i.devices import autocast
from i2i.metrics import psnr, ssim
from i2i.nets.layers import per_image_norm


def higher_is_better(metric: str) -> bool:
    """PSNR and SSIM grow with quality; L1, FID and KID shrink."""
    return any(name in metric for name in ("psnr", "ssim"))


class Validator:
    """Holds `size` evenly spaced items of a held-out split and scores the model's generators on them.

    Generators run as at inference (BatchNorm per image, dropout off) on a copy, so training is
    untouched. Paired views give val_l1 / val_psnr / val_ssim; with `fid`, every view also gives
    val_fid / val_kid against the held-out real images (few images bias FID upwards: compare runs at
    equal `size`). Metric names get a _AtoB / _BtoA suffix when a model has two generators.
    """

    def __init__(self, model: torch.nn.Module, data: DataConfig, root: str, split: str, size: int = 16,
                 fid: bool = False) -> None:
        dataset = model.make_dataset(dataclasses.replace(data, root=root, flip=False), split=split, train=False)
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(size, len(dataset))).round().astype(int))
        self.samples = [s for s in (dataset[int(i)] for i in picks) if not isinstance(s, Skipped)]
        if not self.samples:
            raise ValueError(f"no readable validation images in {root} ({split})")
        self.fid = fid
        if fid:
            from i2i.metrics import distribution_metrics_unavailable

            missing = distribution_metrics_unavailable()
            if missing:
                raise ValueError(f"validation FID is unavailable: {missing}")

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
        views = model.val_views()  # direction -> (input key, target key, paired)
        scores: dict[str, float] = {}
        for direction, (source, target, paired) in views.items():
            net = per_image_norm(copy.deepcopy(unwrap(model.networks()[model.generators()[direction]]))).eval()
            fakes, reals = [], []
            for sample in self.samples:
                with autocast(device, dtype):
                    fake = net(sample[source][None].to(device)).float()[0]
                fakes.append(to_image(fake))
                reals.append(to_image(sample[target]))
            suffix = "" if len(views) == 1 else f"_{direction}"
            if paired:
                scores[f"val_l1{suffix}"] = float(np.mean([np.abs(f.astype(float) - r).mean() / 255
                                                           for f, r in zip(fakes, reals, strict=True)]))
                scores[f"val_psnr{suffix}"] = float(np.mean([psnr(f, r) for f, r in zip(fakes, reals, strict=True)]))
                scores[f"val_ssim{suffix}"] = float(np.mean([ssim(f, r) for f, r in zip(fakes, reals, strict=True)]))
            if self.fid:
                from i2i.metrics import inception_features, scores_from_features

                dist = scores_from_features(inception_features(fakes), inception_features(reals), kid_subsets=20)
                scores[f"val_fid{suffix}"], scores[f"val_kid{suffix}"] = dist["fid"], dist["kid_mean"]
        return scores
