"""Several processes, one run: torchrun's environment, the process group (backend, timeout), DistributedDataParallel
and synchronised BatchNorm, and what the processes exchange (logged losses, agreement checks, summaries).

One process per device, started by PyTorch's launcher (`torchrun --nproc_per_node N -m i2i ...`); this module
never starts processes. Without torchrun's variables everything here is a no-op for a single process.
"""

from __future__ import annotations

import datetime
import os
import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from i2i.nets.sync_batchnorm import sync_batch_norm
from i2i.runtime.devices import pick_device
from i2i.runtime.process import cuda_device

if TYPE_CHECKING:
    from i2i.models.base import Model

# how gloo and NCCL report a peer that died, hung or cut the connection (as a plain RuntimeError, mostly)
_PEER_FAILURES = ("timed out", "connection reset", "connection closed", "connection refused", "broken pipe",
                  "remote process", "remote worker", "watchdog")


class DistributedError(RuntimeError):
    """This process lost the others of its run (one failed, was killed, or stopped answering in time)."""


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank of world, local rank on its machine, and the backend in use
    (None for a single process without a process group)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs and writes files."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """(rank, world) for splitting work between several processes; None for one."""
        return (self.rank, self.world) if self.world > 1 else None

    def device(self, device: torch.device) -> torch.device:
        """`device` with its index made explicit: the local rank's GPU under torchrun."""
        if device.type == "cuda" and device.index is None and self.active:
            return torch.device("cuda", self.local_rank)
        return device

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` over the processes (every process must call it at the same point)."""
        if self.world == 1:
            return values
        total = values.clone()
        dist.all_reduce(total)  # SUM: gloo has no AVG
        return total / self.world

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every process, by rank (plain Python values; every process must call it)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def agree(self, value: Any, what: str, hint: str) -> None:
        """Raise on every process when the processes see different `value`s of `what`."""
        values = self.gather(value)
        if any(v != values[0] for v in values):
            seen = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise DistributedError(f"the processes disagree on {what} ({seen}): {hint}")

    def seed(self, seed: int, step: int) -> None:
        """Give each process its own random stream (dropout, gradient-penalty mixes), derived from the run's
        seed, the rank and the step it starts at; a single process keeps the run's own stream."""
        if self.world == 1:
            return
        state = np.random.SeedSequence([seed, self.rank, step]).generate_state(1)[0]
        random.seed(int(state))
        np.random.seed(int(state))
        torch.manual_seed(int(state))

    def describe(self, batch_size: int, lr: float) -> str:
        """The start-up line: processes, per-process and global batch, and the learning-rate rule."""
        return (f"distributed: {self.world} process{'es' if self.world > 1 else ''} ({self.backend}), "
                f"batch {batch_size} per process = global batch {batch_size * self.world}; "
                f"lr {lr:g} as given, not scaled with the global batch (README: 'Several GPUs and machines')")


class StopVote:
    """All processes stop at the same step: at each step boundary every process casts its own stop flag, and the
    MAX over the processes of the previous boundary's flags decides. The reduction runs asynchronously on a CPU
    (gloo) group of its own, so no step waits for it and no device sync is added; a stop is seen one step later
    than on a single process, where the flag is used as it is."""

    def __init__(self, group: Group) -> None:
        self.several = group.world > 1
        self.pending: tuple[Any, torch.Tensor] | None = None
        self.group = dist.new_group(backend="gloo") if self.several else None  # every process creates it

    def __call__(self, stop: bool) -> bool:
        """Whether every process stops now (call at every step boundary, on every process)."""
        if not self.several:
            return stop
        decided = False
        if self.pending is not None:
            work, flag = self.pending
            work.wait()
            decided = bool(flag.item())
        flag = torch.tensor([int(stop)], dtype=torch.int32)
        self.pending = None if decided else (dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group,
                                                             async_op=True), flag)
        return decided

    def close(self) -> None:
        """Wait for the reduction in flight (every process has launched the same ones)."""
        if self.pending is not None:
            self.pending[0].wait()
            self.pending = None


def launched() -> bool:
    """True in a process that torchrun (or another launcher setting its variables) started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_rank() -> int:
    """The rank torchrun gave this process (0 for a process started alone), known before any group exists."""
    return int(os.environ.get("RANK", 0)) if launched() else 0


def current() -> Group:
    """The group this process belongs to now (a single process when no process group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Group()
    return Group(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 local_world=int(os.environ.get("LOCAL_WORLD_SIZE", 1)), backend=dist.get_backend())


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def session(device: str, timeout: float, again: str) -> Iterator[Group]:
    """Join the run's process group for the block when torchrun started this process, and leave it after.

    The backend follows `device` ("auto" | "cpu" | "cuda"); a collective that waits longer than `timeout`
    seconds fails instead of hanging, and a peer's failure becomes a `DistributedError` that says what
    happened and how to continue (`again`). Outside torchrun, or inside a group the caller made, the
    block runs as it is.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    target = pick_device(device)
    backend = backend_for(target)
    with ExitStack() as stack:
        options: dict[str, Any] = {}
        if backend == "nccl":
            if local_rank >= torch.cuda.device_count():
                raise DistributedError(f"local rank {local_rank} has no GPU: this machine has "
                                       f"{torch.cuda.device_count()}; use --nproc_per_node <= that")
            stack.enter_context(cuda_device(local_rank))
            options["device_id"] = torch.device("cuda", local_rank)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout), **options)
        try:
            yield current()
        except Exception as err:
            if is_peer_failure(err):
                raise DistributedError(explain(err, timeout, again)) from err
            raise
        finally:
            dist.destroy_process_group()  # local: waits for no other process


def is_peer_failure(err: BaseException) -> bool:
    """Whether `err` is a collective that failed because another process died, hung or disconnected."""
    if isinstance(err, DistributedError):
        return False
    if isinstance(err, dist.DistError):
        return True
    return isinstance(err, RuntimeError) and any(s in str(err).lower() for s in _PEER_FAILURES)


def explain(err: BaseException, timeout: float, again: str) -> str:
    group = current()
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"process {group.rank} of {group.world} lost the others of the run: {first_line}\n"
            f"Another process failed, was killed, or did not answer within {timeout:g} s (--dist-timeout); "
            f"its own output says why. {again}")


# -- networks -----------------------------------------------------------------------------------------

def distribute(model: Model, group: Group, device: torch.device, sync_bn: bool = True) -> None:
    """Wrap every trained network of `model` in DistributedDataParallel (after turning its BatchNorm into
    `SyncBatchNorm2d` when `sync_bn`); nothing happens without a process group.

    Buffers are not synchronised at each forward: BatchNorm's running statistics are the same on every process with
    `sync_bn`, and unused anyway (inference normalises each image by its own statistics). Every parameter
    takes part in each backward of its network, so no search for unused parameters is needed; a network
    called under `frozen()` (a discriminator in the generator's update) reduces nothing, as intended.
    """
    if not group.active:
        return
    if sync_bn:
        for net in model.networks().values():
            sync_batch_norm(net)
    device_ids = [device.index] if device.type == "cuda" else None

    def wrap(name: str, net: nn.Module) -> nn.Module:
        if not any(p.requires_grad for p in net.parameters()):
            return net  # nothing to train, nothing to reduce
        return nn.parallel.DistributedDataParallel(net, device_ids=device_ids, forward_sync_buffers=False)

    model.wrap_networks(wrap)
