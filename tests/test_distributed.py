"""Several processes under torchrun (gloo on the CPU): 2 processes x batch 1 train like 1 process x batch 2, a run
resumes on another process count, translation takes each file once, and a lost process ends the run with a
message instead of a hang. The launches are real: `python -m torch.distributed.run ... -m i2i ...`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from click.testing import CliRunner
from safetensors.torch import load_file
from torch.utils.data import Dataset

from helpers import write_pairs, write_unpaired
from i2i.checkpoint.weights import latest_checkpoint, load_state
from i2i.cli.commands import main
from i2i.config import RunConfig
from i2i.data.layout import DataError
from i2i.data.sampling import EpochSampler, Skipped, StepSampler
from i2i.data.stream import BatchStream
from i2i.models import build_model, run_config_from_dict
from i2i.models.pix2pix import Pix2Pix, Pix2PixConfig
from i2i.nets import GeneratorConfig, build_generator
from i2i.nets.fast import SplitBatchNorm2d, separate_batches
from i2i.nets.sync_batchnorm import SyncBatchNorm2d, sync_batch_norm
from i2i.translation.translator import Translator
from i2i.translation.tree import merge_summaries

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--ngf", "4", "--ndf", "4", "--workers", "0", "--no-progress", "--log-every", "1", "--precision", "fp32",
          "--deterministic", "--device", "cpu", "--save-every", "2", "--sample-every", "2"]
MODEL_OPTIONS = {
    "pix2pix": ["--generator", "unet_64", "--load-size", "72", "--crop-size", "64", "--no-dropout",
                "--val-every", "2", "--val-split", "train", "--val-size", "2"],  # validation: rank 0's alone
    "cyclegan": ["--generator", "resnet_6blocks", "--load-size", "36", "--crop-size", "32", "--pool-size", "0"],
    "cut": ["--generator", "resnet_6blocks", "--load-size", "36", "--crop-size", "32", "--num-patches", "16"],
}


def env() -> dict[str, str]:
    """The test's environment, with this checkout first on the path (the launched processes import the same i2i)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def torchrun(*args: str, nproc: int = 2, timeout: float = 180) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "i2i", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env(), timeout=timeout, cwd=ROOT)


def in_process(*args: str) -> str:
    """`i2i ARGS` in this process, on one thread like each torchrun process (two threads on a busy 2-core machine
    ran these tiny steps 4x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return result.output


def train_args(model: str, norm: str, data: Path, runs: Path, name: str, *extra: str) -> list[str]:
    return ["train", model, "--data", str(data), "--runs-dir", str(runs), "--name", name, "--norm", norm,
            *MODEL_OPTIONS[model], *COMMON, *extra]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_losses(one: list[dict], two: list[dict]) -> None:
    assert [(r["step"], r["epoch"]) for r in one] == [(r["step"], r["epoch"]) for r in two]
    for a, b in zip(one, two, strict=True):
        losses = [k for k in a if k not in ("step", "epoch", "images_per_s")]
        assert losses == [k for k in b if k not in ("step", "epoch", "images_per_s")]
        # atol: a loss near 0 (CUT's D_fake reaches 1e-4) differs in its last bits by summation order, which
        # varies by CPU kind (7.7e-9, 8e-5 of itself, on an AVX-512 Xeon); the losses are of order 1
        np.testing.assert_allclose([b[k] for k in losses], [a[k] for k in losses], rtol=2e-5, atol=1e-7,
                                   err_msg=f"step {a['step']}")


def assert_same_networks(one: Path, two: Path, every_tensor: bool) -> None:
    """Weights (safetensors of two checkpoints) and what the networks compute agree within float tolerance.

    A convolution's bias that instance norm subtracts right away has a gradient of zero up to rounding, which
    Adam turns into steps of +-lr either way: with `every_tensor` False such biases are left to the output
    comparison (which any bias that matters would fail)."""
    cfg = run_config_from_dict(json.loads((one.parents[1] / "config.json").read_text()))
    models = [build_model(cfg), build_model(cfg)]
    for name in models[0].networks():
        a, b = load_file(str(one / f"{name}.safetensors")), load_file(str(two / f"{name}.safetensors"))
        assert a.keys() == b.keys() and not any(k.startswith("module.") for k in b)  # unwrapped weights
        for key in a:
            if every_tensor or not key.endswith("bias"):
                torch.testing.assert_close(b[key], a[key], atol=1e-4, rtol=1e-4, msg=f"{name} {key}")
        for model, weights in zip(models, (a, b), strict=True):
            model.networks()[name].load_state_dict(weights)
    for name, net in models[0].networks().items():
        if name == "F":  # CUT's patch head takes lists of features; its weights are compared above
            continue
        x = torch.randn(2, next(net.parameters()).shape[1], 64, 64, generator=torch.Generator().manual_seed(0))
        # every weight may differ by up to 1e-4 (above) and a network's output adds their effects up: CUT's G
        # differs by up to 1.6e-4 on an AVX-512 Xeon (with the code before and after its PatchNCE sampling change)
        with torch.no_grad():
            torch.testing.assert_close(models[1].networks()[name].eval()(x), net.eval()(x), atol=5e-4, rtol=1e-4,
                                       msg=lambda m, name=name: f"{name}: {m}")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ddp_data")
    # an epoch of 6 (4) samples is 3 (2) global batches of 2: 4 steps cross an epoch boundary
    unpaired = write_unpaired(tmp / "unpaired", n_a=4, n_b=3)
    return {"pix2pix": write_pairs(tmp / "pairs", n=6), "cyclegan": unpaired, "cut": unpaired}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Path]):
    """(1 process x batch 2 run, 2 processes x batch 1 run, launch output) per (model, norm), trained once."""
    done: dict[tuple[str, str], tuple[Path, Path, str]] = {}
    tmp = tmp_path_factory.mktemp("ddp_runs")

    def get(model: str, norm: str) -> tuple[Path, Path, str]:
        if (model, norm) not in done:
            name = f"{model}_{norm}"
            in_process(*train_args(model, norm, data[model], tmp, f"{name}_1x2", "--max-steps", "4",
                                   "--batch-size", "2"))
            launch = torchrun(*train_args(model, norm, data[model], tmp, f"{name}_2x1", "--max-steps", "4"))
            assert launch.returncode == 0, launch.stdout + launch.stderr
            done[model, norm] = (tmp / f"{name}_1x2", tmp / f"{name}_2x1", launch.stdout + launch.stderr)
        return done[model, norm]

    return get


# -------------------------------------------------------------------------------------- training equivalence

@pytest.mark.slow
@pytest.mark.parametrize(("model", "norm"), [("pix2pix", "instance"), ("pix2pix", "batch"), ("cyclegan", "instance"),
                                             ("cut", "instance")])
def test_two_processes_train_like_one_with_twice_the_batch(runs, model: str, norm: str) -> None:
    one, two, output = runs(model, norm)
    assert_same_losses(records(one), records(two))
    assert_same_networks(latest_checkpoint(one), latest_checkpoint(two), every_tensor=norm == "batch")
    assert load_state(latest_checkpoint(two))["epoch_position"] == load_state(latest_checkpoint(one))["epoch_position"]
    # rank 0 alone printed, logged and wrote; the start line gives the global batch and the lr rule
    assert output.count("done: 4 steps") == 1 and output.count("distributed: 2 processes (gloo)") == 1
    assert "batch 1 per process = global batch 2" in output and "not scaled" in output
    assert len([r for r in records(two) if "G" in r]) == 4 and sorted(p.name for p in (two / "samples").iterdir()) \
        == ["step_000002.png", "step_000004.png"]
    if model == "pix2pix":  # validated at steps 2 and 4 while the other process waited, and kept the best
        assert [r["step"] for r in records(two) if "val_psnr" in r] == [2, 4] and (two / "ckpt" / "best").is_dir()


@pytest.mark.slow
def test_a_run_trained_on_two_processes_translates_in_one(runs) -> None:
    _, two, _ = runs("pix2pix", "instance")
    assert Translator.from_pretrained(two)(torch.zeros(3, 64, 64)).shape == (3, 64, 64)


def cut_back(run: Path, copy: Path) -> Path:
    """A copy of `run` as it was at its step-2 checkpoint (as if killed there)."""
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "ckpt" / "step_000004")
    (copy / "latest").unlink()
    return copy


@pytest.mark.slow
def test_two_process_run_resumes_on_one(runs, tmp_path: Path, data: dict[str, Path]) -> None:
    one, two, _ = runs("pix2pix", "instance")
    resumed = cut_back(two, tmp_path / two.name)
    output = in_process(*train_args("pix2pix", "instance", data["pix2pix"], tmp_path, two.name, "--max-steps", "4",
                                    "--batch-size", "2", "--resume"))
    assert "done: 4 steps" in output
    assert_same_losses(records(one), records(resumed))  # steps 3 and 4 continue where the 2 processes stopped
    state = load_state(latest_checkpoint(resumed))
    assert (state["step"], state["epoch"], state["epoch_position"]) == (4, 1, 2)
    assert_same_networks(latest_checkpoint(one), latest_checkpoint(resumed), every_tensor=False)


@pytest.mark.slow
def test_one_process_run_resumes_on_two(runs, tmp_path: Path, data: dict[str, Path]) -> None:
    one, _, _ = runs("pix2pix", "instance")
    resumed = cut_back(one, tmp_path / one.name)
    launch = torchrun(*train_args("pix2pix", "instance", data["pix2pix"], tmp_path, one.name, "--max-steps", "4",
                                  "--resume"))
    assert launch.returncode == 0, launch.stdout + launch.stderr
    assert_same_losses(records(one), records(resumed))
    state = load_state(latest_checkpoint(resumed))
    assert (state["step"], state["epoch"], state["epoch_position"]) == (4, 1, 2)
    assert_same_networks(latest_checkpoint(one), latest_checkpoint(resumed), every_tensor=False)


# ------------------------------------------------------------------------------------------------ translation

@pytest.mark.slow
def test_two_processes_translate_every_file_exactly_once(runs, tmp_path: Path, data: dict[str, Path]) -> None:
    one, _, _ = runs("pix2pix", "instance")
    src = tmp_path / "in"
    shutil.copytree(data["pix2pix"] / "train", src / "a")
    shutil.copytree(data["pix2pix"] / "train", src / "b" / "c")
    (src / "b" / "c" / "000.png").unlink()  # 11 files: the processes get 6 and 5
    launch = torchrun("translate", str(one), str(src), str(tmp_path / "out"), "--device", "cpu", "--no-progress")
    assert launch.returncode == 0, launch.stdout + launch.stderr
    inputs = sorted(p.relative_to(src) for p in src.rglob("*.png"))
    assert sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.png")) == inputs
    # one summary, by rank 0, with every process's counts: a file done twice would count twice
    assert launch.stdout.count("translated ") == 1
    assert "translated 11, skipped 0 (already done), failed 0" in launch.stdout and "on 2 processes" in launch.stdout


def test_shards_partition_the_files_and_resume_keeps_them(tmp_path: Path, data: dict[str, Path]) -> None:
    """The assignment is fixed before finished files are skipped: a resumed share redoes only its missing files."""
    cfg = GeneratorConfig(name="unet_64", base_channels=4)
    translator = Translator(build_generator(cfg), cfg, RunConfig(model="pix2pix", model_config=None), "AtoB",
                            torch.device("cpu"))
    src, out = data["pix2pix"] / "train", tmp_path / "out"
    shares = [translator.translate_dir(src, out, progress=False, shard=(rank, 2)) for rank in range(2)]
    assert [s.translated for s in shares] == [3, 3] and len(list(out.glob("*.png"))) == 6
    for name in ("000.png", "001.png", "004.png"):  # ranks 0, 1, 0
        (out / name).unlink()
    again = [translator.translate_dir(src, out, progress=False, shard=(rank, 2)) for rank in range(2)]
    assert [(s.translated, s.skipped) for s in again] == [(2, 1), (1, 2)]
    total = merge_summaries(again)
    assert (total.translated, total.skipped, total.seconds) == (3, 3, max(s.seconds for s in again))


# --------------------------------------------------------------------------------------------------- failures

def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def children_by_rank(parent: int) -> dict[int, int]:
    """{rank: pid} of the worker processes that `parent` (a torchrun we started) launched."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                environ = (stat.parent / "environ").read_bytes().split(b"\0")
                rank = next(int(v[5:]) for v in environ if v.startswith(b"RANK="))
                found[rank] = int(stat.parent.name)
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return found


LONG_RUN = ["--max-steps", "100000", "--save-every", "0", "--sample-every", "0", "--dist-timeout", "5"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker processes through /proc")
def test_a_killed_process_ends_the_run_within_the_timeout(tmp_path: Path, data: dict[str, Path]) -> None:
    args = train_args("pix2pix", "instance", data["pix2pix"], tmp_path, "k", *LONG_RUN)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "i2i", *args]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(),
                                cwd=ROOT)
    try:
        wait_for(lambda: (tmp_path / "k" / "metrics.jsonl").is_file(), 120, "training to start")
        os.kill(children_by_rank(launcher.pid)[1], signal.SIGKILL)
        killed = time.monotonic()
        output, _ = launcher.communicate(timeout=60)
        ended = time.monotonic() - killed
    finally:
        if launcher.poll() is None:  # never leave a training process behind
            for pid in children_by_rank(launcher.pid).values():
                os.kill(pid, signal.SIGKILL)
            launcher.kill()
            launcher.wait()
    assert launcher.returncode != 0 and ended < 5 + 10  # the timeout, plus shutting down
    assert "FAILED" in output and "SIGKILL" in output  # torchrun names the process that died, and how


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="freezes a process with SIGSTOP")
def test_a_process_that_stops_answering_fails_the_others_with_a_message(tmp_path: Path, data: dict[str, Path]) -> None:
    """Without torchrun's watch (two processes started by hand, as a scheduler might): rank 1 is frozen mid-run,
    and rank 0 gives up after --dist-timeout with a message that says what to do."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = train_args("pix2pix", "instance", data["pix2pix"], tmp_path, "s", *LONG_RUN[:-1], "3")
    procs = []
    for rank in range(2):
        variables = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "i2i", *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, env={**env(), **variables}, cwd=ROOT))
    try:
        wait_for(lambda: (tmp_path / "s" / "metrics.jsonl").is_file(), 120, "training to start")
        os.kill(procs[1].pid, signal.SIGSTOP)
        stopped = time.monotonic()
        output, _ = procs[0].communicate(timeout=60)
        ended = time.monotonic() - stopped
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    if procs[0].returncode == -signal.SIGABRT:  # known, open: seen in 2 of 3 full-suite runs, never alone
        pytest.xfail("gloo aborted rank 0 instead of raising its timeout, so no message:\n" + output[-2000:])
    assert procs[0].returncode == 1 and 2.5 < ended < 3 + 10
    assert "process 0 of 2 lost the others of the run" in output and "within 3 s (--dist-timeout)" in output
    assert "--resume" in output


# ----------------------------------------------------------------------------------- sampling, stream, layers

@pytest.mark.parametrize(("size", "batch", "world"), [(10, 2, 2), (7, 1, 3), (5, 2, 2), (2, 1, 4)])
def test_shares_of_all_processes_are_the_one_process_batch(size: int, batch: int, world: int) -> None:
    one = StepSampler(size, batch * world, seed=3)
    shares = [StepSampler(size, batch, seed=3, rank=r, world=world) for r in range(world)]
    for sampler in (one, *shares):
        sampler.set_epoch(2)
    per_rank = [list(s) for s in shares]
    assert all(len(steps) == len(one) == -(-size // (batch * world)) for steps in per_rank)
    for step, together in enumerate(one):
        got = [key for steps in per_rank for key in steps[step]]
        assert all(steps[step] for steps in per_rank)  # nobody idles: the processes stay in step
        if len(together) >= world:
            assert got == together  # exactly the one-process batch, split in rank order
        else:  # the short tail: each position once, the extra processes repeat one
            assert set(got) == set(together) and got[:len(together)] == together


def test_the_stream_position_counts_samples_so_a_run_resumes_on_any_count() -> None:
    data = Numbers(10)
    two = [BatchStream(data, batch_size=2, seed=1, rank=r, world=2) for r in range(2)]
    firsts = [iter(s) for s in two]
    for _ in range(2):
        for it in firsts:
            next(it)
    assert [(s.epoch, s.position) for s in two] == [(0, 8), (0, 8)]  # 2 steps of 2 x 2 samples, on every rank
    one = BatchStream(data, batch_size=3, seed=1)
    one.load_state_dict(two[0].state_dict())
    ref = BatchStream(data, batch_size=1, seed=1)
    ref_items = [int(b["x"][0]) for b, _ in zip(ref, range(12), strict=False)]
    assert [int(v) for v in next(iter(one))["x"]] == ref_items[8:10]  # the epoch's last 2, then a new epoch
    assert (one.epoch, one.position) == (0, 10)


def test_a_process_whose_share_is_unreadable_repeats_its_last_batch() -> None:
    order = [i for i, _ in EpochSampler(6, seed=0)]  # epoch 0; rank 1 takes positions 1, 3, 5
    bad = {order[3]}  # rank 1's share of step 2
    stream = BatchStream(Numbers(6, bad), batch_size=1, seed=0, rank=1, world=2, warn=lambda m: None)
    got = [int(b["x"][0]) for b, _ in zip(stream, range(3), strict=False)]
    assert got == [order[1], order[1], order[5]] and stream.skipped == {f"n{order[3]}"}
    first_bad = BatchStream(Numbers(6, {order[1]}), batch_size=1, seed=0, rank=1, world=2, warn=lambda m: None)
    with pytest.raises(DataError, match="first batch has no readable image"):
        next(iter(first_bad))


class Numbers(Dataset):
    """Sample i is {"x": i}; indices in `bad` are unreadable."""

    def __init__(self, size: int, bad: set[int] = frozenset()) -> None:
        self.size, self.bad = size, bad

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: tuple[int, int]) -> dict | Skipped:
        index = key[0]
        return Skipped(f"n{index}", "unreadable") if index in self.bad else {"x": torch.tensor(index)}


@pytest.fixture
def one_process_group():
    """A process group of this process alone (the gloo code paths, without another process)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_synced_batch_norm_computes_batch_norm_and_its_gradients(one_process_group) -> None:
    """Across processes the sums are the gloo all-gather / all-reduce (the 2-process runs above prove them);
    here the maths against torch's BatchNorm, split into real and fake halves as the discriminator uses it."""
    torch.manual_seed(0)
    plain = SplitBatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-1, 1)
    net = torch.nn.Sequential(plain)
    synced = sync_batch_norm(torch.nn.Sequential(SplitBatchNorm2d(3, momentum=0.3)))
    synced[0].load_state_dict(plain.state_dict())
    assert isinstance(synced[0], SyncBatchNorm2d)
    x = (torch.randn(4, 3, 5, 5) * 3 + 2).requires_grad_(True)
    outs, grads = [], []
    for model in (net, synced):
        with separate_batches(model, 2):
            y = model(x)
        (dx, dw, db) = torch.autograd.grad((y * torch.arange(y.numel()).view_as(y).sin()).sum(),
                                           [x, model[0].weight, model[0].bias])
        outs.append(y)
        grads.append((dx, dw, db))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(synced[0].state_dict()[key], plain.state_dict()[key])


def test_synced_batch_norm_refuses_a_second_derivative_with_a_message(one_process_group) -> None:
    net = sync_batch_norm(torch.nn.Sequential(SplitBatchNorm2d(3)))
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"no second derivative.*--no-sync-bn"):
        torch.autograd.grad(net(x).square().sum(), x, create_graph=True)  # as the wgangp gradient penalty does


def test_wrap_networks_puts_the_wrappers_where_the_model_calls_them() -> None:
    model = Pix2Pix(Pix2PixConfig(generator=GeneratorConfig(name="unet_64", base_channels=4)))
    g, d = model.G, model.D
    model.wrap_networks(lambda name, net: torch.nn.Sequential(net) if name == "G" else net)
    assert isinstance(model.G, torch.nn.Sequential) and model.G[0] is g and model.D is d
    assert model.networks()["G"] is model.G

    class Nested(Pix2Pix):
        def networks(self) -> dict[str, torch.nn.Module]:
            return {"G": self.G[0], "D": self.D}

    nested = Nested(Pix2PixConfig(generator=GeneratorConfig(name="unet_64", base_channels=4)))
    nested.G = torch.nn.Sequential(nested.G)
    with pytest.raises(TypeError, match="override it"):
        nested.wrap_networks(lambda name, net: net)
