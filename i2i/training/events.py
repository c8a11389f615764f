"""What a Trainer reports: the start-up lines, the resolved options, logged losses, validation scores, sample grids."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from i2i.data.labels import colour_map
from i2i.data.tensors import to_image
from i2i.training.finite import check_losses
from i2i.training.validation import default_best_metric, higher_is_better


class LossMeter:
    """Sums losses on the device between log lines: no host sync per step, one per `flush`."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.images, self.start = 0, 0, time.perf_counter()

    def add(self, losses: dict[str, torch.Tensor], images: int) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v.float() if k in self.sums else v.float()
        self.steps, self.images = self.steps + 1, self.images + images

    def flush(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> tuple[dict[str, float], float]:
        """The mean of each loss since the last flush (passed through `reduce` before the one host sync), and
        the images per second over that window."""
        keys = list(self.sums)
        values = reduce(torch.stack([self.sums[k] for k in keys]).div(self.steps)).tolist() if keys else []
        images_per_s = self.images / max(time.perf_counter() - self.start, 1e-9)
        self._reset()
        return dict(zip(keys, values, strict=True)), images_per_s


def sample_grid(images: dict[str, torch.Tensor], max_rows: int = 4) -> np.ndarray:
    """Rows = samples, columns = the named images side by side (gray shown as RGB)."""
    from torchvision.utils import make_grid

    n = min(max_rows, next(iter(images.values())).shape[0])
    tiles = [shown(img[i]) for i in range(n) for img in images.values()]
    return to_image(make_grid(torch.stack(tiles), nrow=len(images), padding=0))


def shown(image: torch.Tensor) -> torch.Tensor:
    """A CxHxW image in [-1, 1] as RGB to look at: gray repeated; one-hot label channels in class colours; any other
    channel count by its first three channels (or its first)."""
    channels = image.shape[0]
    if channels == 3:
        return image
    if channels > 3 and bool(((image == 1) | (image == -1)).all()):  # one-hot: at most one class per pixel
        colours = torch.from_numpy(colour_map(channels)).float() / 127.5 - 1
        ids = image.argmax(0)
        return torch.where((image == 1).any(0), colours[ids].permute(2, 0, 1), -torch.ones(3, *ids.shape))
    return image[:3] if channels > 3 else image[:1].expand(3, -1, -1)


class RunEvents:
    """Trainer's events methods (a mixin: they use the Trainer's attributes)."""

    def describe(self) -> list[str]:
        """What the run found and chose, printed before the progress bar (and by --dry-run)."""
        t, data = self.cfg.train, self.cfg.data
        kind = "pairs" if self.model.data_spec().kind == "paired" else "images (A and B, an epoch is the larger)"
        constant, decay = t.schedule(self.batches.steps_per_epoch)
        budget = f"--max-steps {t.max_steps}" + ("" if t.decay_steps is not None else ", decay: half of it")
        epochs = f"--epochs {t.epochs} --decay-epochs {t.decay_epochs}"
        why = budget if t.max_steps is not None and t.step_schedule else epochs
        cut = f"; stops at step {self.total_steps}" if self.total_steps < constant + decay else ""

        def chosen(asked: object, value: object) -> str:
            return f"{value} (auto)" if asked in (None, "auto") else f"{value}"

        start = (f"resumes {self.resume_from.name}" if self.resume_from is not None
                 else "resumes from step 0 (no checkpoint yet)" if self.resume else "a new run")
        return [
            f"data: {self.batches.size} {kind} in {data.root}, {self.batches.steps_per_epoch} steps per epoch "
            f"at batch {t.batch_size}",
            f"device: {chosen(t.device, self.device)}, precision {chosen(t.precision, self.precision)}, "
            f"workers {chosen(t.workers, self.workers)}",
            *([f"speed (auto, timed on this machine): {t.speed['summary']}"] if t.speed else []),
            f"run: {self.run.path} ({start})",
            f"schedule: lr {t.lr:g} for {constant} steps, then linear decay to 0 over {decay} ({why}){cut}",
        ]

    def resolved(self) -> dict[str, Any]:
        """The run config with what `auto` and the defaults chose written in (device, precision, workers)."""
        d = self.cfg.to_dict()
        d["train"].update(device=str(self.device), precision=self.precision, workers=self.workers,
                          channels_last=self.speed.channels_last, gemm_convolutions=self.speed.gemm_convolutions,
                          one_pass_batchnorm=self.speed.one_pass_batchnorm)
        constant, decay = self.cfg.train.schedule(self.batches.steps_per_epoch)
        d["schedule"] = {"constant_steps": constant, "decay_steps": decay, "total_steps": self.total_steps,
                         "steps_per_epoch": self.batches.steps_per_epoch, "images": self.batches.size}
        return d

    def _log(self, meter: LossMeter, bar: tqdm) -> dict[str, float]:
        """Average the window's losses (one host sync), append them to metrics.jsonl, update the bar."""
        since = self.step - meter.steps + 1
        losses, images_per_s = meter.flush(reduce=self.dist.mean)  # the mean over the processes
        check_losses(losses, f"at step {self.step}" if since == self.step else f"in steps {since}-{self.step}")
        images_per_s *= self.dist.world
        lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        self._record({"step": self.step, "epoch": self.batches.epoch, **losses, "lr": lr,
                      "images_per_s": images_per_s})
        bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if "_" not in k} | {"img/s": f"{images_per_s:.2f}"})
        return losses

    def _record(self, record: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        self.run.append_metrics(record)
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in ("step", "epoch"):
                    self.tensorboard.add_scalar(key, value, self.step)

    def _validate(self) -> dict[str, float]:
        """Score the held-out subset, log it, and keep ckpt/best when the chosen metric improved."""
        scores = self.validator(self.model, self.device, self.place.dtype,
                                {name: ema.module for name, ema in self.emas.items()})
        self._record({"step": self.step, "epoch": self.batches.epoch, **scores})
        metric = self.cfg.train.best_metric or default_best_metric(list(scores))
        value = scores[metric]
        better = self.best is None or (value > self.best["value"] if higher_is_better(metric)
                                       else value < self.best["value"])
        if better:
            self.best = {"metric": metric, "value": value, "step": self.step}
            self._save(name="best")  # timed as validation, which this is part of
            self.run.write_best(self.best)
        return scores

    def _write_samples(self, images: dict[str, torch.Tensor]) -> None:
        grid = sample_grid(images)
        self.run.write_samples(self.step, grid)
        if self.tensorboard is not None:
            self.tensorboard.add_image("samples", grid, self.step, dataformats="HWC")

