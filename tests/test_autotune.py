"""Speed chosen by measurement (runtime/autotune.py, training/speed.py, translation/speed.py): a timer injected in
place of the clock makes a candidate slow or fast and `auto` follows; the cache is used and invalidated; typed
options are not measured; processes under DDP take rank 0's verdict; a measured run trains exactly like the same
settings typed; `i2i bench` reports the machine."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import i2i.runtime.autotune as autotune
from helpers import cli, same_weights, tiny_config
from i2i.config import DataConfig, RunConfig
from i2i.models import Pix2PixConfig, build_model
from i2i.nets import GeneratorConfig, build_generator
from i2i.training import speed
from i2i.training.distributed import Group
from i2i.training.trainer import train
from i2i.translation import speed as translation_speed
from i2i.translation.translator import Translator


@pytest.fixture(autouse=True)
def measuring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Measuring on (conftest turns it off for every other test), a cache of this test's own, bf16 worth trying."""
    monkeypatch.setenv("I2I_AUTOTUNE", "on")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(autotune, "bf16_slowdown", lambda device: 1.0)


class FakeTimer:
    """Seconds per step by setting: 1 s, times the factor of each option named in `factors`; runs each step once
    (so every candidate is really built and stepped) and counts the settings it was asked for."""

    def __init__(self, **factors: float) -> None:
        self.factors, self.calls = factors, []

    def __call__(self, setting: dict, step) -> float:
        step()
        self.calls.append(dict(setting))
        seconds = 1.0
        for name, value in setting.items():
            seconds *= self.factors.get(f"{name}={value}", 1.0)
        return seconds


def choose(cfg, timer, group: Group | None = None):
    return speed.choose(cfg, build_model(cfg), torch.device("cpu"), group or Group(), timer=timer)


def auto_config(paired_root: Path, tmp_path: Path, **train):
    return tiny_config(paired_root, tmp_path / "runs", **{"precision": "auto", **train})


def test_auto_follows_the_timer_where_bf16_is_slow_and_where_it_is_fast(paired_root: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = auto_config(paired_root, tmp_path)
    slow, record = choose(cfg, FakeTimer(**{"precision=bf16": 1.9}))
    assert slow.precision == "fp32" and "bf16 1.90x slower" in record["summary"]
    monkeypatch.setenv("I2I_AUTOTUNE", "fresh")  # measure again rather than read the cache
    fast, record = choose(cfg, FakeTimer(**{"precision=bf16": 0.5, "gemm_convolutions=False": 0.8}))
    assert fast.precision == "bf16" and fast.gemm_convolutions is False
    assert record["chosen"] == {"precision": "bf16", "channels_last": False, "gemm_convolutions": False,
                                "one_pass_batchnorm": True}
    assert "fp32 2.00x slower" in record["summary"]


def test_a_lower_precision_that_changes_the_output_is_not_chosen(paired_root: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "PRECISION_TOLERANCE", -1.0)  # any difference at all is too much
    chosen, _ = choose(auto_config(paired_root, tmp_path), FakeTimer(**{"precision=bf16": 0.1}))
    assert chosen.precision == "fp32"


def test_the_verdict_is_cached_and_measured_again_for_another_torch_device_or_shape(
        paired_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = auto_config(paired_root, tmp_path)
    first = FakeTimer(**{"precision=bf16": 0.5})
    _, record = choose(cfg, first)
    assert first.calls and not record["cached"]
    again = FakeTimer()  # would pick fp32: a cached bf16 proves the cache was used
    chosen, record = choose(cfg, again)
    assert again.calls == [] and record["cached"] and chosen.precision == "bf16"
    assert autotune.cache_file() == tmp_path / "cache" / "i2i" / "autotune.json"
    assert len(json.loads(autotune.cache_file().read_text())) == 1

    def measured(cfg, *patches: tuple) -> bool:
        timer = FakeTimer()
        with monkeypatch.context() as m:
            for target, name, value in patches:
                m.setattr(target, name, value)
            choose(cfg, timer)
        return bool(timer.calls)

    assert measured(cfg, (torch, "__version__", "9.9.9"))
    assert measured(cfg, (autotune, "device_name", lambda device: "Another CPU"))
    assert measured(auto_config(paired_root, tmp_path, batch_size=2))  # another shape
    assert not measured(cfg)  # the first verdict is still there


def test_typed_options_are_not_measured(paired_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(paired_root, tmp_path / "runs", precision="bf16", channels_last=False, gemm_convolutions=False,
                      one_pass_batchnorm=True)
    timer = FakeTimer()
    chosen, record = choose(cfg, timer)
    assert timer.calls == [] and record is None
    assert chosen == speed.Speed("bf16", False, False, True)
    partly = tiny_config(paired_root, tmp_path / "runs", precision="fp32", channels_last=True)
    timer = FakeTimer()
    choose(partly, timer)
    assert timer.calls and all(c["precision"] == "fp32" and c["channels_last"] for c in timer.calls)


def test_measuring_off_falls_back_to_the_fixed_rules(paired_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_AUTOTUNE", "off")
    timer = FakeTimer()
    chosen, record = choose(auto_config(paired_root, tmp_path), timer)
    assert timer.calls == [] and record is None and chosen.gemm_convolutions and chosen.one_pass_batchnorm


def test_the_budget_stops_measuring_after_the_baseline_and_names_what_it_left() -> None:
    timed = []
    verdict = autotune.tune({"a": (1, 2, 3), "b": (True, False)}, lambda s: timed.append(s) or 1.0, budget=-1.0)
    assert timed == [{"a": 1, "b": True}] and verdict.chosen == {"a": 1, "b": True}
    assert len(verdict.untimed) == 3
    line = verdict.summary({"a": (1, 2, 3), "b": (True, False)}, lambda k, v: f"{k} {v}")
    assert "a 2, a 3, b False not timed (the -1 s budget was spent)" in line
    timed.clear()
    verdict = autotune.tune({"a": (1, 2, 3), "b": (True, False)}, lambda s: timed.append(s) or 3.0 - s["a"],
                            budget=60.0)
    assert verdict.chosen == {"a": 3, "b": True} and len(timed) == 4 and not verdict.untimed  # each option once


def test_the_budget_predicts_each_setting_from_the_best_so_far_and_its_relative_cost() -> None:
    import time

    def measure(setting: dict) -> float:
        time.sleep(0.05 * setting["batch"])  # what timing a batch really costs: its size
        return 1.0
    # the baseline (batch 2) takes 0.1 s: batch 1 (0.05 s predicted) fits in the 0.25 s, batch 16 (0.8 s) does not
    verdict = autotune.tune({"batch": (2, 16, 1)}, measure, budget=0.25, relative_cost=lambda s: s["batch"])
    assert [t["setting"]["batch"] for t in verdict.timings] == [2, 1] and verdict.untimed == [{"batch": 16}]


def test_once_a_cheaper_setting_wins_the_budget_is_predicted_from_it() -> None:
    import time

    def measure(setting: dict) -> float:
        time.sleep(0.3 if setting["a"] == 1 else 0.01)  # the slow baseline is also slow to time
        return 1.0 if setting["a"] == 1 else 0.5
    # predicted from the baseline (0.3 s each) only one of b's five options would fit in 0.62 s; from a=2's 0.01 s
    # all of them do
    verdict = autotune.tune({"a": (1, 2), "b": (0, 1, 2, 3, 4, 5)}, measure, budget=0.62)
    assert verdict.untimed == [] and len(verdict.timings) == 7 and verdict.chosen == {"a": 2, "b": 0}


def test_a_budget_of_zero_seconds_times_the_baseline_only(paired_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_AUTOTUNE_SECONDS", "0")
    timer = FakeTimer(**{"precision=bf16": 0.5})
    chosen, record = choose(auto_config(paired_root, tmp_path), timer)
    assert timer.calls == [{"precision": "fp32", "gemm_convolutions": True, "one_pass_batchnorm": True,
                            "channels_last": False}]
    assert chosen.precision == "fp32" and "bf16, gemm convolutions off" in record["summary"]
    assert "not timed (the 0 s budget was spent)" in record["summary"]


def test_a_step_too_slow_for_the_budget_is_timed_at_a_smaller_crop(tmp_path: Path) -> None:
    from helpers import write_unpaired
    from i2i.models import CycleGANConfig
    from i2i.nets import DiscriminatorConfig

    g = GeneratorConfig(name="resnet_6blocks", base_channels=4)
    d = DiscriminatorConfig(in_channels=3, base_channels=4)
    cfg = RunConfig("cyclegan", CycleGANConfig(g_ab=g, g_ba=g, d_a=d, d_b=d),
                    DataConfig(root=str(write_unpaired(tmp_path / "data")), crop_size=256),
                    tiny_config(tmp_path, tmp_path / "runs", precision="auto").train)
    model = build_model(cfg)
    assert speed.proxy_crops(cfg, model) == [256, 128, 64]
    shapes = []

    def timer(setting: dict, step) -> float:  # one step at 64x64 "takes" 1 s: 2.5 s per setting even there
        import torch.nn.functional as F
        real = F.conv2d
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(F, "conv2d", lambda x, *a, **k: shapes.append(x.shape[-1]) or real(x, *a, **k))
            step()
        return 1.0

    _, record = speed.choose(cfg, model, torch.device("cpu"), Group(), timer=timer)
    assert shapes and max(shapes) < 128  # the 64x64 proxy (70 after the stem's reflection padding), never 256
    assert "timed at 64x64, a proxy of the run's 256x256" in record["summary"]
    unet = tiny_config(tmp_path, tmp_path / "runs")
    unet.data.crop_size, unet.model_config.generator.name = 256, "unet_128"
    assert speed.proxy_crops(unet, build_model(unet)) == [256, 128]  # unet_128: H and W multiples of 128


def _rank(rank: int, store: str, root: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        os.environ["XDG_CACHE_HOME"] = os.path.join(out, f"cache{rank}")  # no shared cache to agree through
        autotune.bf16_slowdown = lambda device: 1.0
        cfg = tiny_config(Path(root), Path(out) / "runs", precision="auto")
        # each process would choose differently by its own timing: rank 0 bf16, rank 1 fp32
        timer = FakeTimer(**{"precision=bf16": 0.5 if rank == 0 else 2.0})
        chosen, record = choose(cfg, timer, Group(rank=rank, world=2, local_rank=rank, local_world=2,
                                                  backend="gloo"))
        Path(out, f"rank{rank}.json").write_text(json.dumps({"precision": chosen.precision, "timed": len(timer.calls),
                                                             "record": record}))
    finally:
        dist.destroy_process_group()


def test_processes_under_ddp_take_rank_0s_verdict(paired_root: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tests = str(Path(__file__).parent)  # the spawned processes import this module and helpers.py
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p))
    with tempfile.NamedTemporaryFile(dir=tmp_path) as store:
        mp.spawn(_rank, args=(store.name + ".store", str(paired_root), str(tmp_path)), nprocs=2)
    zero, one = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert zero["precision"] == one["precision"] == "bf16"
    assert zero["timed"] > 0 and one["timed"] == 0 and zero["record"] == one["record"]


def test_a_measured_run_records_its_choice_resumes_with_it_and_trains_as_the_same_choice_typed(
        paired_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = train(auto_config(paired_root, tmp_path, name="auto", max_steps=2), progress=False)
    saved = json.loads((summary.run_dir / "config.json").read_text())["train"]
    chosen = saved["speed"]["chosen"]
    assert saved["precision"] == "auto" and chosen["precision"] in ("fp32", "bf16")
    assert json.loads((summary.run_dir / "timings.json").read_text())["speed"] == saved["speed"]["summary"]

    typed = train(tiny_config(paired_root, tmp_path / "runs", name="typed", max_steps=2, **chosen), progress=False)
    assert same_weights(summary.checkpoint, typed.checkpoint)  # measuring left the random streams alone

    monkeypatch.setattr(autotune, "tune", lambda *a, **k: pytest.fail("a resumed run measured again"))
    autotune.cache_file().unlink()  # the run's own record is what resume uses
    resumed = train(auto_config(paired_root, tmp_path, name="auto", max_steps=4), resume=True, progress=False)
    assert resumed.steps == 4
    assert json.loads((resumed.run_dir / "config.json").read_text())["train"]["speed"]["chosen"] == chosen


# ------------------------------------------------------------------------------------------------ translation


def tiny_generator() -> tuple[torch.nn.Module, GeneratorConfig]:
    gen_cfg = GeneratorConfig(name="unet_64", base_channels=4, dropout=False)
    torch.manual_seed(0)
    return build_generator(gen_cfg).eval(), gen_cfg


def test_translation_takes_the_fastest_batch_and_precision_the_timer_shows_and_caches_them() -> None:
    net, _ = tiny_generator()
    timer = FakeTimer(**{"batch_size=4": 0.5 * 4 / 8, "batch_size=1": 1.0 / 8, "precision=bf16": 0.5})
    chosen = translation_speed.choose(net, torch.device("cpu"), 3, 64, timer=timer)
    # seconds per image: batch 8 1/8, batch 1 1/8 (no gain), batch 4 0.5/8 (2x faster); bf16 halves again
    assert (chosen.batch_size, chosen.precision) == (4, "bf16")
    assert chosen.summary.startswith("bf16, batch 4; fp32 2.00x slower") and "measured in" in chosen.summary
    again = translation_speed.choose(net, torch.device("cpu"), 3, 64, timer=FakeTimer())
    assert (again.batch_size, again.precision) == (4, "bf16") and "cached verdict" in again.summary


def test_translation_times_only_what_was_left_to_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    net, _ = tiny_generator()
    timer = FakeTimer(**{"precision=bf16": 0.5})
    chosen = translation_speed.choose(net, torch.device("cpu"), 3, 64, precision="fp32", timer=timer)
    assert chosen.precision == "fp32" and {c["precision"] for c in timer.calls} == {"fp32"}
    typed = translation_speed.choose(net, torch.device("cpu"), 3, 64, precision="fp32", batch_size=2,
                                     timer=FakeTimer())
    assert (typed.precision, typed.batch_size, typed.summary) == ("fp32", 2, "")
    monkeypatch.setenv("I2I_AUTOTUNE", "off")
    rules = translation_speed.choose(net, torch.device("cpu"), 3, 64, timer=FakeTimer())
    assert (rules.batch_size, rules.summary) == (8, "")


def test_an_out_of_memory_batch_is_skipped_not_fatal() -> None:
    def measure(setting: dict) -> float:
        if setting["batch"] == 64:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return 1.0 / setting["batch"]

    verdict = autotune.tune({"batch": (8, 64, 16)}, measure, budget=60.0)
    assert verdict.chosen == {"batch": 16}
    assert "batch 64 not usable (out of memory)" in verdict.explain({"batch": (8, 64, 16)}, lambda k, v: f"{k} {v}")


def test_a_translator_left_to_auto_uses_and_reports_the_measured_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    net, gen_cfg = tiny_generator()
    real = translation_speed.choose
    monkeypatch.setattr(translation_speed, "choose",
                        lambda *a, **k: real(*a, **k, timer=FakeTimer(**{"batch_size=16": 0.5})))
    cfg = RunConfig("pix2pix", Pix2PixConfig(), DataConfig(crop_size=64))
    translator = Translator(net, gen_cfg, cfg, "AtoB", torch.device("cpu"))
    assert translator.batch_size == 16 and "batch 16" in translator.speed.summary
    out = translator.translate_arrays([np.zeros((64, 64, 3), np.uint8)] * 3)
    assert len(out) == 3 and out[0].shape == (64, 64, 3)


def test_translation_measured_for_real_picks_among_the_candidates() -> None:
    net, _ = tiny_generator()
    chosen = translation_speed.choose(net, torch.device("cpu"), 3, 64)
    assert chosen.precision in ("fp32", "bf16") and chosen.batch_size in translation_speed.BATCHES["cpu"]
    assert "measured in" in chosen.summary


def test_bench_reports_the_machine_the_peaks_and_a_row_per_thing_timed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_AUTOTUNE", "off")  # the rows at the fixed rules: measuring is tested above
    report = tmp_path / "bench.json"
    result = cli("bench", "--what", "translate", "--size", "256", "--steps", "1", "--json", report)
    assert result.exit_code == 0, result.output
    saved = json.loads(report.read_text())
    assert saved["machine"]["device"] == "cpu" and saved["machine"]["threads"] >= 1
    assert saved["matmul_peak_gflop_per_s"]["fp32"] > 0
    (row,) = saved["results"]
    assert row["what"] == "unet_256 translate" and row["per_s"] > 0 and row["gflop"] > 0
    assert "unet_256 translate" in result.output
    assert cli("bench", "--size", "100").exit_code == 2  # the unet_256 generator needs a multiple of 256
