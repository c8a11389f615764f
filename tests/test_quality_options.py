"""The quality options end to end: multi-scale spectral D, resize upsampling, feature matching, generator EMA,
input-only augmentation, the checkerboard figure in eval, and recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from helpers import same_weights, tiny_config, write_pairs
from i2i.cli.commands import main
from i2i.config import DataConfig
from i2i.data import DataSpec, make_dataset
from i2i.evaluation.evaluate import evaluate_run
from i2i.training.trainer import train
from i2i.translation.made_by import RECORD
from i2i.translation.translator import Translator


def hq_config(root: Path, runs: Path, name: str, max_steps: int):
    cfg = tiny_config(root, runs, name=name, max_steps=max_steps, ema_decay=0.9)
    m = cfg.model_config
    m.generator.upsample = "resize"
    m.discriminator.name, m.discriminator.num_d, m.discriminator.norm = "multiscale", 2, "spectral"
    m.lambda_fm = 10.0
    cfg.data.input_augment = True
    return cfg


def test_every_option_trains_resumes_exactly_and_translates_with_the_average(tmp_path: Path) -> None:
    root, runs = write_pairs(tmp_path / "pairs"), tmp_path / "runs"
    straight = train(hq_config(root, runs, "straight", 5), progress=False)
    train(hq_config(root, runs, "split", 3), progress=False)
    resumed = train(hq_config(root, runs, "split", 5), resume=True, progress=False)
    assert same_weights(straight.checkpoint, resumed.checkpoint, names=("G", "D", "G_ema"))
    records = [json.loads(line) for line in (straight.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["G_fm"] > 0 for r in records)

    raw, averaged = (load_file(str(straight.checkpoint / f"{n}.safetensors")) for n in ("G", "G_ema"))
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)  # the average lags the raw weights
    x = torch.rand(3, 64, 64) * 2 - 1
    with_ema = Translator.from_pretrained(straight.run_dir, precision="fp32")
    without = Translator.from_pretrained(straight.run_dir, precision="fp32", ema=False)
    single = Translator.from_pretrained(straight.checkpoint / "G_ema.safetensors", precision="fp32")
    assert torch.equal(with_ema(x), single(x)) and not torch.equal(with_ema(x), without(x))


def test_input_augmentation_changes_the_input_only(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "pairs", n=2, size=48)
    plain = DataConfig(root=str(root), load_size=48, crop_size=48)
    jittered = DataConfig(root=str(root), load_size=48, crop_size=48, input_augment=True)
    a, b = (make_dataset(DataSpec("paired"), d)[(0, 7)] for d in (plain, jittered))
    assert torch.equal(a["target"], b["target"])  # same geometry, target untouched
    assert not torch.equal(a["input"], b["input"]) and b["input"].abs().max() <= 1


def test_eval_reports_the_checkerboard_figure(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "pairs", n=4, size=64)
    (root / "train").rename(root / "val")
    write_pairs(root, n=4, size=64)
    run = train(tiny_config(root, tmp_path / "runs", max_steps=2), progress=False).run_dir
    result = evaluate_run(run, root, split="val", fid=False)
    assert result["model"]["checkerboard"] > 0 and result["identity"]["checkerboard"] > 0


def test_named_recipes_resolve_on_the_command_line(paired_root: Path) -> None:
    from i2i.config import RECIPES

    args = ["train", "pix2pix", "--data", str(paired_root), "--dry-run"]
    for name, values in RECIPES.items():
        cfg = json.loads(CliRunner().invoke(main, [*args, "--recipe", name], catch_exceptions=False).output)
        assert cfg["train"]["recipe"] == name
        model, train = cfg["model_config"], cfg["train"]
        where = {"upsample": model["generator"]["upsample"], "discriminator": model["discriminator"]["name"],
                 "num_d": model["discriminator"]["num_d"], "d_norm": model["discriminator"]["norm"]}
        for option, value in values.items():
            got = where[option] if option in where else {**model, **train, **cfg["data"]}[option]
            assert got == value, (name, option)
    typed = json.loads(CliRunner().invoke(main, [*args, "--recipe", "hq", "--upsample", "deconv"],
                                          catch_exceptions=False).output)
    assert typed["model_config"]["generator"]["upsample"] == "deconv"


def test_checkerboard_of_a_translated_folder_is_finite(tmp_path: Path) -> None:
    from i2i.evaluation.checkerboard import checkerboard_score

    images = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(3)]
    assert np.isfinite(checkerboard_score(images, images)) and checkerboard_score(images, images) == 1.0


def test_a_recipe_run_translates_with_no_flags_retyped(paired_root: Path, tmp_path: Path) -> None:
    from i2i.config import RECIPES

    tiny = ["--generator", "unet_64", "--ngf", "4", "--ndf", "4", "--load-size", "72", "--crop-size", "64",
            "--workers", "0", "--no-progress", "--sample-every", "0", "--max-steps", "2"]
    trained = CliRunner().invoke(main, ["train", "pix2pix", "--data", str(paired_root), "--runs-dir",
                                        str(tmp_path / "runs"), "--name", "hq", "--recipe", "hq", *tiny])
    assert trained.exit_code == 0, trained.output
    translator = Translator.from_pretrained(tmp_path / "runs" / "hq", device="cpu")
    assert translator.cfg.train.recipe == "hq"
    assert translator.gen_cfg.upsample == RECIPES["hq"]["upsample"] != "deconv"
    out = CliRunner().invoke(main, ["translate", str(tmp_path / "runs" / "hq"), str(paired_root / "train"),
                                    str(tmp_path / "out")])
    assert out.exit_code == 0, out.output
    made = [p for p in (tmp_path / "out").iterdir() if p.name != RECORD]
    assert len(made) == len(list((paired_root / "train").iterdir()))


def test_a_recipe_and_derived_defaults_apply_from_python_as_on_the_command_line(paired_root: Path,
                                                                                   tmp_path: Path) -> None:
    from i2i.config import apply_recipe
    from i2i.nets import DiscriminatorConfig

    assert DiscriminatorConfig(name="multiscale").num_d == 2 and DiscriminatorConfig().num_d == 1
    cfg = tiny_config(paired_root, tmp_path / "runs", max_steps=1)
    cfg.train.recipe = "hq"
    resolved = apply_recipe(cfg)
    g, d = resolved.model_config.generator, resolved.model_config.discriminator
    assert (g.upsample, d.name, d.num_d) == ("resize", "multiscale", 2)
    assert resolved.train.recipe_values == {"upsample": "resize", "discriminator": "multiscale", "num_d": 2}
    assert cfg.model_config.generator.upsample == "deconv"  # the caller's config is left as it was
    assert apply_recipe(resolved) is resolved  # applied once
    run = train(cfg, progress=False).run_dir
    saved = json.loads((run / "config.json").read_text())
    assert saved["model_config"]["generator"]["upsample"] == "resize"
    assert saved["model_config"]["discriminator"]["name"] == "multiscale"
