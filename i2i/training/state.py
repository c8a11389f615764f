"""Resume and checkpoints of a Trainer: which checkpoint to continue, the state saved beside the weights, writing
and loading it."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from i2i.checkpoint.weights import (
    CKPT_DIR,
    CheckpointError,
    checkpoints_newest_first,
    load_into,
    load_state,
    load_weights,
    remove_partial_checkpoints,
    save_checkpoint,
    step_name,
    unwrap,
)
from i2i.config import TrainConfig, resume_changes
from i2i.models.ema import EMA_SUFFIX
from i2i.training.finite import ADVICE, NonFiniteError, nonfinite_networks
from i2i.training.init_from import carry_record
from i2i.training.report import build_report

OPTION_NAMES = {"data.root": "--data", "model": "the model (i2i train MODEL)"}  # where --x is not the field


class RunError(RuntimeError):
    """The run cannot start or continue as asked (e.g. resuming with a different model)."""


def config_differences(saved: dict[str, Any], now: dict[str, Any], sections: Iterable[str],
                       ) -> list[tuple[str, Any, Any]]:
    """(option, saved value, value now) for each field of `sections` that differs; folders compare resolved."""
    def flat(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}").items()}
        return {prefix: value}

    def same(key: str, a: Any, b: Any) -> bool:
        if key == "data.root" and isinstance(a, str) and isinstance(b, str):
            return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
        return a == b

    found = []
    for section in sections:
        before, after = flat(saved.get(section), section), flat(now.get(section), section)
        for key in sorted(set(before) | set(after)):
            if not same(key, before.get(key), after.get(key)):
                field = key.split(".")[-1]
                option = OPTION_NAMES.get(key, f"--{field.replace('_', '-')} ({key})")
                found.append((option, before.get(key), after.get(key)))
    return found


def apply_optimizer_options(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                            t: TrainConfig) -> None:
    """A resumed run trains with the --lr and betas it was given, not those its loaded optimizer state holds; the
    schedule keeps its place (the current factor applies to the new rate). Unchanged values are left as loaded."""
    for i, group in enumerate(optimizer.param_groups):
        if group.get("initial_lr", t.lr) != t.lr:
            group["lr"] = t.lr * (group["lr"] / group["initial_lr"])
            group["initial_lr"] = t.lr
            scheduler.base_lrs[i] = t.lr
        if tuple(group["betas"]) != (t.beta1, t.beta2):
            group["betas"] = (t.beta1, t.beta2)


log = logging.getLogger(__name__)  # notes at INFO, warnings at WARNING: the `i2i` command prints both


class CheckpointState:
    """Trainer's state methods (a mixin: they use the Trainer's attributes)."""

    def _claim(self) -> None:
        """Check the run directory can be used as asked; again in fit(), once it holds the run's lock."""
        self.resume_from = self._checkpoint_to_resume() if self.resume else None
        if not self.resume and self.run.latest_checkpoint() is not None:
            raise RunError(f"{self.run.path} already holds a run (latest checkpoint "
                           f"{self.run.latest_checkpoint().name}); pass --resume to continue it or pick another --name")

    def _checkpoint_to_resume(self) -> Path | None:
        self.resume_notes: list[str] = []
        saved = self.run.saved_config()
        if saved is not None:
            now = self.cfg.to_dict()
            diffs = [f"{option}: the run has {before!r}, now {after!r}"
                     for option, before, after in config_differences(saved, now, ("model", "model_config", "data"))]
            if diffs:
                raise RunError("--resume needs the same model and data options as the run it continues; "
                               "differences:\n  " + "\n  ".join(diffs))
            carry_record(self.cfg.train, saved)
            self.resume_notes, refused = resume_changes(saved, self.cfg.train)
            if refused:
                raise RunError("--resume cannot change these options:\n  " + "\n  ".join(refused))
            if not saved.get("train", {}).get("step_schedule", False):  # its checkpoints follow the epoch schedule
                self.cfg.train.step_schedule = False
        return self.run.latest_checkpoint()

    def _start(self) -> None:
        """Continue the checkpoint to resume, or start fresh; (re)write config.json."""
        if self.dist.main:
            remove_partial_checkpoints(self.run.path)  # left by a kill; this process holds the run's lock
        if self.resume_from is not None:
            self._load_newest_good()
            for note in self.resume_notes if self.dist.main else ():
                log.info(f"note: {note}")
        elif self.resume and self.dist.main:  # killed before its first checkpoint: nothing to load, so start over
            log.info(f"note: {self.run.path} has no checkpoint yet; starting from step 0")
        if not self.dist.main:  # rank 0 alone writes the run directory
            return
        if self.resume:
            self.run.cut_metrics(after_step=self.step if self.resume_from is not None else -1)
        self.run.write_config(self.cfg.to_dict())
        changed = self.run.data_changes(self.cfg.data.root, self.dataset.file_list())
        if changed and self.resume:
            log.info(f"note: {changed}")
        if self.cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.run.path / "tensorboard"))

    def _state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step, **self.batches.state_dict(),
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "model": self.model.training_state(),
            "rng": rng,
            "best": self.best or {},
            "ema_updates": {name: ema.num_updates for name, ema in self.emas.items()},
        }

    def save(self, name: str | None = None) -> Path:
        """Checkpoint the run (ckpt/step_N, or ckpt/NAME) and refresh report.html."""
        with self.timeline.phase("checkpoints"):
            return self._save(name)

    def _save(self, name: str | None) -> Path:
        self._check_finite_weights()  # on every process: DDP keeps their weights equal, so they all agree
        if not self.dist.main:  # rank 0 writes; the others only say where it goes
            return self.run.path / CKPT_DIR / (name or step_name(self.step))
        networks = {**self.model.networks(), **{f"{name}{EMA_SUFFIX}": ema.module for name, ema in self.emas.items()}}
        path = save_checkpoint(self.run.path, self.step, networks, self._state(), self.cfg.to_dict(),
                               keep_last=self.cfg.train.keep_last, name=name)
        if name is None:
            self.last_save = time.perf_counter()
        try:
            build_report(self.run.path)
        except Exception as err:  # the report is a view: never let it stop training
            log.warning(f"warning: could not rebuild the report: {err}")
        return path

    def _check_finite_weights(self) -> None:
        """Never checkpoint NaN or infinite weights (nor let --keep-last rotate a finite checkpoint out for them)."""
        networks = {**self.model.networks(), **{f"{name}{EMA_SUFFIX}": ema.module for name, ema in self.emas.items()}}
        bad = nonfinite_networks({name: unwrap(net) for name, net in networks.items()})
        if bad:
            kept = self.run.latest_checkpoint()
            raise NonFiniteError(f"training stopped at step {self.step}: the weights of {', '.join(bad)} are not "
                                 f"finite (NaN or infinity), so no checkpoint was written"
                                 f"{f' ({kept.name} is kept)' if kept else ''}; {ADVICE}")

    def _load_newest_good(self) -> None:
        """Load the newest checkpoint that loads, saying which ones were skipped and why."""
        problems = []
        for ckpt in checkpoints_newest_first(self.run.path):
            try:
                self._load(ckpt)
            except CheckpointError as err:
                problems.append(f"{ckpt.name}: {err}")
                log.warning(f"warning: skipping checkpoint {ckpt.name}: {err}")
                continue
            if problems:
                log.info(f"note: resuming from {ckpt.name}, the newest checkpoint that loads")
            return
        raise RunError(f"no checkpoint of {self.run.path} can be loaded:\n  " + "\n  ".join(problems))

    def _load(self, ckpt: Path) -> None:
        """Every file is read and checked before anything is applied (CheckpointError names a bad one)."""
        weights = {name: load_weights(ckpt / f"{name}.safetensors") for name in self.model.networks()}
        averages = {name: load_weights(f) for name in self.emas
                    if (f := ckpt / f"{name}{EMA_SUFFIX}.safetensors").is_file()}
        state = load_state(ckpt)
        for name, net in self.model.networks().items():
            load_into(unwrap(net), weights[name], ckpt / f"{name}.safetensors")
        try:
            self._apply_state(state)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
            raise CheckpointError(f"{ckpt / 'state.pt'} does not fit this run: {type(err).__name__}: {err}") from err
        for name, ema in self.emas.items():
            if name in averages:
                ema.load_state_dict(averages[name], state.get("ema_updates", {}).get(name, 0))
            else:  # --ema-decay added on resume
                log.info(f"note: {ckpt.name} has no {name}{EMA_SUFFIX}; "
                         f"the EMA of {name} starts from its current weights")
                ema.load_state_dict(self.model.networks()[name].state_dict(), 0)

    def _apply_state(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.batches.load_state_dict(state)
        self.best = state.get("best") or None
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            scheduler = self.schedulers[name]
            scheduler.load_state_dict(state["schedulers"][name])
            apply_optimizer_options(optimizer, scheduler, self.cfg.train)
            # the rate for the next step under this run's schedule (the saved one, unless the budget changed)
            for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas,
                                           strict=True):
                group["lr"] = base * factor(scheduler.last_epoch)
        self.scaler.load_state_dict(state["scaler"])
        self.model.load_training_state(state["model"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

