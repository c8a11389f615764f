"""Fine-tuning with --init-from: sources, architecture from the source, refusals, records, resume, CycleGAN."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from test_reference_import import RefResnet, RefUnet, randomise, save

from helpers import tiny_config, tiny_cyclegan_config, write_pairs, write_unpaired
from i2i import Translator
from i2i.checkpoint.reference_import import import_reference
from i2i.checkpoint.weights import latest_checkpoint, load_state, read_metadata
from i2i.cli.commands import main
from i2i.config import RunConfig
from i2i.models import run_config_from_dict
from i2i.nets import build_generator
from i2i.training.init_from import InitFromError
from i2i.training.state import RunError
from i2i.training.trainer import Trainer

CLI_TINY = ["--workers", "0", "--no-progress", "--log-every", "1", "--deterministic", "--precision", "fp32",
            "--sample-every", "0"]


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def equal(net: torch.nn.Module, weights: Path | dict[str, torch.Tensor]) -> bool:
    """The network's state equals these weights (a .safetensors file or a state dict), tensor for tensor."""
    expected = load_file(str(weights)) if isinstance(weights, Path) else weights
    got = net.state_dict()
    return got.keys() == expected.keys() and all(torch.equal(got[k].cpu(), expected[k].cpu()) for k in got)


def sha256sum_listing(folder: Path) -> str:
    """What `sha256sum *.safetensors | sha256sum` prints in `folder`."""
    lines = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n"
                    for f in sorted(folder.glob("*.safetensors")))
    return hashlib.sha256(lines.encode()).hexdigest()


def dry_run_config(*args: str) -> RunConfig:
    result = cli(*args, "--dry-run")
    assert result.exit_code == 0, result.output
    return run_config_from_dict(json.loads(result.stdout))  # the JSON; the start notes go to stderr


@pytest.fixture(scope="module")
def p2p(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A finished 2-step Pix2Pix run (unet_64, ngf 4, batch norm, 64 px crops) and its data."""
    base = tmp_path_factory.mktemp("p2p")
    root = write_pairs(base / "pairs")
    cfg = tiny_config(root, base / "runs", name="src", max_steps=2, sample_every=0)
    Trainer(cfg, progress=False).fit()
    run = cfg.run_dir
    return SimpleNamespace(root=root, run=run, ckpt=latest_checkpoint(run), cfg=cfg)


@pytest.fixture(scope="module")
def cg(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A finished 2-step CycleGAN run (resnet_6blocks, ngf 4, instance norm) trained on 64 px crops."""
    base = tmp_path_factory.mktemp("cg")
    root = write_unpaired(base / "unpaired")
    cfg = tiny_cyclegan_config(root, base / "runs", name="src", max_steps=2, sample_every=0)
    cfg.data = dataclasses.replace(cfg.data, load_size=72, crop_size=64)
    Trainer(cfg, progress=False).fit()
    return SimpleNamespace(root=root, run=cfg.run_dir, ckpt=latest_checkpoint(cfg.run_dir), cfg=cfg)


def fine_tune_config(source: SimpleNamespace, runs: Path, init_from: Path | str, **train) -> RunConfig:
    return tiny_config(source.root, runs, name="ft", max_steps=3, sample_every=0, init_from=str(init_from), **train)


# ------------------------------------------------------------------------------------- what a source is


@pytest.mark.parametrize("kind", ["run", "ckpt", "file"])
def test_starts_from_a_run_dir_a_checkpoint_folder_or_one_file(
        p2p: SimpleNamespace, tmp_path: Path, messages: Callable[[], str], kind: str) -> None:
    given = {"run": p2p.run, "ckpt": p2p.ckpt, "file": p2p.ckpt / "G.safetensors"}[kind]
    cfg = fine_tune_config(p2p, tmp_path / "runs", given)
    trainer = Trainer(cfg, progress=False)
    err = messages()
    assert equal(trainer.model.G, p2p.ckpt / "G.safetensors")
    if kind == "file":  # only G was published: D starts as a run from scratch would (same seed)
        scratch = Trainer(tiny_config(p2p.root, tmp_path / "runs", name="scratch"), progress=False)
        assert equal(trainer.model.D, scratch.model.D.state_dict())
        assert not equal(trainer.model.D, p2p.ckpt / "D.safetensors")
        assert "D is not in the source: initialised as usual (normal)" in err
        assert trainer.cfg.train.init_from_sha256 == hashlib.sha256(given.read_bytes()).hexdigest()
    else:
        assert equal(trainer.model.D, p2p.ckpt / "D.safetensors")
        assert "init: D <- D.safetensors" in err
        assert trainer.cfg.train.init_from_sha256 == sha256sum_listing(p2p.ckpt)
    assert trainer.cfg.train.init_from == str(given if kind == "file" else p2p.ckpt)  # the checkpoint actually used
    assert not (tmp_path / "runs").exists()  # setting up (and loading) writes nothing


def test_fine_tune_takes_the_architecture_from_the_source_and_starts_fresh(p2p: SimpleNamespace,
                                                                           tmp_path: Path) -> None:
    """No architecture flags typed; another resolution (128 px crops from a 64 px source); fresh step, optimizer
    and data order; the source recorded in config.json and in every weights file."""
    runs = tmp_path / "runs"
    result = cli("train", "pix2pix", "--data", p2p.root, "--runs-dir", runs, "--name", "ft", "--init-from", p2p.run,
                 "--max-steps", 3, "--load-size", 144, "--crop-size", 128, *CLI_TINY)
    assert result.exit_code == 0, result.output
    assert f"init: from {p2p.ckpt}" in result.output and "done: 3 steps" in result.output
    saved = json.loads((runs / "ft" / "config.json").read_text())
    assert saved["model_config"] == p2p.cfg.to_dict()["model_config"]  # unet_64, ngf 4, ndf 4, not the defaults
    assert saved["data"]["crop_size"] == 128
    assert (saved["train"]["init_from"], saved["train"]["init_from_sha256"]) == (str(p2p.ckpt),
                                                                                 sha256sum_listing(p2p.ckpt))
    ckpt = latest_checkpoint(runs / "ft")
    assert read_metadata(ckpt / "G.safetensors")[0]["train"]["init_from"] == str(p2p.ckpt)
    state, source_state = load_state(ckpt), load_state(p2p.ckpt)
    assert (state["step"], source_state["step"]) == (3, 2)
    assert state["epoch_position"] == 3  # the data order starts over (continuing the source's would give 5)
    adam_steps = {float(s["step"]) for s in state["optimizers"]["G"]["state"].values()}
    assert adam_steps == {3.0}  # a fresh optimizer: 3 updates, not 2 + 3
    first = json.loads((runs / "ft" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1 and first["lr"] == pytest.approx(2e-4)  # a fresh schedule


def test_typed_options_override_or_are_refused_before_anything_is_written(p2p: SimpleNamespace,
                                                                         tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    base = ["train", "pix2pix", "--data", p2p.root, "--runs-dir", runs, "--init-from", p2p.run, *CLI_TINY]
    cfg = dry_run_config(*base, "--no-dropout", "--lambda-l1", "5", "--gan-loss", "lsgan", "--init", "xavier")
    g = cfg.model_config.generator
    assert (g.name, g.base_channels, g.norm, cfg.model_config.discriminator.base_channels) == ("unet_64", 4, "batch", 4)
    assert (g.dropout, g.init, cfg.model_config.lambda_l1, cfg.model_config.gan_loss) == (False, "xavier", 5, "lsgan")
    trainer = Trainer(cfg, progress=False)  # dropout and init hold no weights: the source still fits
    assert equal(trainer.model.G, p2p.ckpt / "G.safetensors")

    result = cli(*base, "--name", "norm", "--norm", "instance")
    assert result.exit_code == 1
    assert "G: norm batch in the source, instance here (--norm)" in result.output
    assert "D: norm batch in the source, instance here (--norm)" in result.output
    result = cli(*base, "--name", "ngf", "--ngf", "8", "--generator", "unet_128")
    assert result.exit_code == 1
    assert "G: name unet_64 in the source, unet_128 here (--generator); base_channels 4 in the source, 8 here " \
           "(--ngf)" in result.output
    assert "D:" not in result.output  # D still fits
    result = cli(*base, "--name", "chan", "--output-channels", "1")
    assert result.exit_code == 1 and "out_channels 3 in the source, 1 here" in result.output
    assert "Traceback" not in result.output and not runs.exists()


def test_a_reference_pth_needs_importing_and_other_files_are_refused_with_their_path(tmp_path: Path,
                                                                                  paired_root: Path) -> None:
    pth = save(randomise(RefUnet(3, 3, 6, 4, "batch")), tmp_path / "latest_net_G.pth")
    result = cli("train", "pix2pix", "--data", paired_root, "--init-from", pth, "--dry-run")
    assert result.exit_code == 1 and "i2i import" in result.output and str(pth) in result.output
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    result = cli("train", "pix2pix", "--data", paired_root, "--init-from", junk, "--dry-run")
    assert result.exit_code == 1 and str(junk) in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------- resume and the record


def test_init_from_with_resume_is_refused_and_resume_never_reloads_the_source(p2p: SimpleNamespace,
                                                                             tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(p2p.ckpt, source)
    runs = tmp_path / "runs"
    command = ["train", "pix2pix", "--data", p2p.root, "--runs-dir", runs, "--name", "ft", *CLI_TINY]
    assert cli(*command, "--init-from", source, "--max-steps", 2).exit_code == 0
    result = cli(*command, "--init-from", source, "--max-steps", 3, "--resume")
    assert result.exit_code == 1 and "drop --init-from to resume" in result.output
    assert latest_checkpoint(runs / "ft").name == "step_000002"
    with pytest.raises(RunError, match="drop --init-from"):  # the Python API refuses a new source on resume too
        Trainer(fine_tune_config(p2p, runs, source), resume=True)

    shutil.rmtree(source)  # resuming must not need the source: it continues from the run's own checkpoints
    result = cli(*command, "--max-steps", 3, "--resume")  # the same command minus --init-from; no arch flags
    assert result.exit_code == 0, result.output
    assert "init:" not in result.output and "done: 3 steps" in result.output
    saved = json.loads((runs / "ft" / "config.json").read_text())["train"]
    assert saved["init_from"] == str(source) and saved["init_from_sha256"] == sha256sum_listing(p2p.ckpt)


def test_resume_before_the_first_checkpoint_starts_from_the_recorded_source(p2p: SimpleNamespace,
                                                                           tmp_path: Path) -> None:
    first = fine_tune_config(p2p, tmp_path / "runs", p2p.ckpt)
    Trainer(first, progress=False).run.write_config(first.to_dict())  # killed after writing config.json
    plain = fine_tune_config(p2p, tmp_path / "runs", p2p.ckpt)
    plain.train.init_from = None
    trainer = Trainer(plain, resume=True, progress=False)
    assert equal(trainer.model.G, p2p.ckpt / "G.safetensors")
    assert plain.train.init_from_sha256 == first.train.init_from_sha256


def test_a_recorded_hash_must_match(p2p: SimpleNamespace, tmp_path: Path) -> None:
    cfg = fine_tune_config(p2p, tmp_path / "runs", p2p.ckpt / "G.safetensors", init_from_sha256="0" * 64)
    with pytest.raises(InitFromError, match="has changed since this run recorded it"):
        Trainer(cfg, progress=False)


# ---------------------------------------------------------------------------- the reference's weights


def test_an_imported_reference_generator_fine_tunes_with_its_own_architecture(tmp_path: Path,
                                                                            paired_root: Path) -> None:
    pth = save(randomise(RefUnet(3, 3, 6, 4, "batch")), tmp_path / "facades_label2photo" / "latest_net_G.pth")
    imported = tmp_path / "facades.safetensors"
    import_reference([pth], imported, direction="BtoA")
    assert Translator.from_pretrained(imported, device="cpu").direction == "BtoA"
    cfg = dry_run_config("train", "pix2pix", "--data", paired_root, "--runs-dir", tmp_path / "runs",
                         "--init-from", imported, "--ndf", "4", "--load-size", "72", "--crop-size", "64", *CLI_TINY)
    g = cfg.model_config.generator
    assert (cfg.model_config.direction, g.name, g.base_channels, g.norm, g.dropout) == ("BtoA", "unet_64", 4,
                                                                                       "batch", True)
    cfg.train.max_steps = 1
    trainer = Trainer(cfg, progress=False)
    assert equal(trainer.model.G, imported)
    trainer.fit()
    assert Translator.from_pretrained(cfg.run_dir, device="cpu").direction == "BtoA"


# ------------------------------------------------------------------------------------------- CycleGAN


def test_cyclegan_from_a_cyclegan_run_at_another_resolution(cg: SimpleNamespace, tmp_path: Path) -> None:
    cfg = dry_run_config("train", "cyclegan", "--data", cg.root, "--runs-dir", tmp_path / "runs", "--name", "ft",
                         "--init-from", cg.run, "--load-size", "36", "--crop-size", "32", "--max-steps", "2",
                         *CLI_TINY)
    assert cfg.to_dict()["model_config"] == cg.cfg.to_dict()["model_config"]  # pool size 3, ngf 4, ... kept
    trainer = Trainer(cfg, progress=False)
    for name, net in trainer.model.networks().items():
        assert equal(net, cg.ckpt / f"{name}.safetensors"), name
    assert trainer.model.pool_A.images == [] and trainer.model.pool_B.images == []  # fresh image pools
    summary = trainer.fit()  # 64 px weights train on 32 px crops: the networks are fully convolutional
    assert summary.steps == 2


@pytest.mark.parametrize("into", [None, "BtoA"])
def test_cyclegan_from_one_pix2pix_generator(p2p: SimpleNamespace, tmp_path: Path, into: str | None) -> None:
    unpaired = write_unpaired(tmp_path / "unpaired")
    extra = ["--init-direction", into] if into else []
    result = cli("train", "cyclegan", "--data", unpaired, "--runs-dir", tmp_path / "runs", "--init-from", p2p.run,
                 "--ndf", "4", "--load-size", "72", "--crop-size", "64", "--pool-size", "2", "--max-steps", "1",
                 *extra, *CLI_TINY)
    assert result.exit_code == 0, result.output
    filled, fresh = ("G_BA", "G_AB") if into == "BtoA" else ("G_AB", "G_BA")
    assert f"init: {filled} <- G.safetensors" in result.output
    for name in (fresh, "D_A", "D_B"):
        assert f"init: {name} is not in the source: initialised as usual" in result.output
    assert "D of the source (pix2pix) has no place in this cyclegan run: not used" in result.output
    saved = run_config_from_dict(json.loads((tmp_path / "runs" / "unpaired_cyclegan" / "config.json").read_text()))
    g = saved.model_config.g_ab
    assert (g.name, g.base_channels, g.norm, g.dropout) == ("unet_64", 4, "batch", True)  # the source's G
    assert saved.train.init_direction == into

    cfg = dataclasses.replace(saved, train=dataclasses.replace(saved.train, name="check", init_from_sha256=None))
    trainer = Trainer(cfg, progress=False)
    assert equal(trainer.model.networks()[filled], p2p.ckpt / "G.safetensors")
    assert not equal(trainer.model.networks()[fresh], p2p.ckpt / "G.safetensors")


def test_init_direction_needs_a_one_generator_source_and_a_two_generator_run(cg: SimpleNamespace,
                                                                           p2p: SimpleNamespace) -> None:
    result = cli("train", "cyclegan", "--data", cg.root, "--init-from", cg.run, "--init-direction", "BtoA",
                 "--dry-run")
    assert result.exit_code == 1 and "--init-direction is for a source with one generator" in result.output
    cfg = fine_tune_config(p2p, p2p.run.parent / "never", p2p.run, init_direction="AtoB")
    with pytest.raises(InitFromError, match="a pix2pix run has only one"):
        Trainer(cfg, progress=False)


def test_pix2pix_from_a_cyclegan_generator_and_an_imported_reference_model(cg: SimpleNamespace,
                                                                          tmp_path: Path, paired_root: Path) -> None:
    """The run's --direction picks which CycleGAN generator fills G; the discriminators stay behind."""
    cfg = dry_run_config("train", "pix2pix", "--data", paired_root, "--runs-dir", tmp_path / "runs",
                         "--init-from", cg.run, "--direction", "BtoA", "--ndf", "4", "--load-size", "72",
                         "--crop-size", "64", *CLI_TINY)
    assert (cfg.model_config.generator.name, cfg.model_config.generator.norm) == ("resnet_6blocks", "instance")
    trainer = Trainer(cfg, progress=False)
    assert equal(trainer.model.G, cg.ckpt / "G_BA.safetensors")

    # a published CycleGAN model: one reference ResNet G, imported for the direction it translates
    pth = save(randomise(RefResnet(3, 3, 4, 6, "instance")), tmp_path / "horse2zebra" / "latest_net_G.pth")
    import_reference([pth], tmp_path / "horse2zebra.safetensors")
    cfg = dry_run_config("train", "cyclegan", "--data", cg.root, "--runs-dir", tmp_path / "runs",
                         "--init-from", tmp_path / "horse2zebra.safetensors", "--ndf", "4", *CLI_TINY)
    trainer = Trainer(cfg, progress=False)
    assert equal(trainer.model.G_AB, tmp_path / "horse2zebra.safetensors")


def test_resnet_dropout_may_differ_from_the_source(cg: SimpleNamespace, tmp_path: Path) -> None:
    """Dropout holds no weights: a ResNet source without it fills generators with it (blocks renumbered)."""
    cfg = tiny_cyclegan_config(cg.root, tmp_path / "runs", init_from=str(cg.run))
    m = cfg.model_config
    cfg.model_config = dataclasses.replace(m, g_ab=dataclasses.replace(m.g_ab, dropout=True),
                                           g_ba=dataclasses.replace(m.g_ba, dropout=True))
    trainer = Trainer(cfg, progress=False)
    source = build_generator(cg.cfg.model_config.g_ab)
    source.load_state_dict(load_file(str(cg.ckpt / "G_AB.safetensors")))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(trainer.model.G_AB.eval()(x), source.eval()(x))
