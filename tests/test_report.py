"""HTML run report: contents, relative offline image links, sample selection, safe regeneration."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config, write_pairs
from i2i.training.report import build_report, pick_samples


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "img":
            self.srcs.append(dict(attrs)["src"] or "")


def image_links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    assert "script" not in parser.tags and "link" not in parser.tags  # no JS, no external stylesheets
    return parser.srcs


def assert_links_resolve(page: Path) -> list[str]:
    srcs = image_links(page)
    for src in srcs:
        assert "://" not in src and not src.startswith("/"), src  # relative: the folder can be moved
        path = page.parent / unquote(src)
        assert path.is_file(), f"{src} does not exist"
        if path.suffix == ".svg":  # a curve: well-formed SVG that draws its series (or says it has none)
            svg = ElementTree.parse(path).getroot()
            drawn = [e for e in svg.iter() if e.tag.rsplit("}", 1)[-1] in ("polyline", "circle")]
            assert drawn or "no finite values" in path.read_text(), src
            assert not [e for e in svg.iter() if any("href" in key for key in e.attrib)], src  # fetches nothing
        else:
            Image.open(path).verify()
    return srcs


def fake_run(root: Path, samples: int = 2) -> Path:
    run = root / "my run"
    (run / "samples").mkdir(parents=True)
    config = {"model": "pix2pix", "model_config": {"generator": {"name": "unet_256"}, "lambda_l1": 123.5},
              "data": {"root": "datasets/facades", "crop_size": 256}, "train": {"name": "facades_run", "lr": 0.0002}}
    (run / "config.json").write_text(json.dumps(config))
    records = [
        {"step": 10, "epoch": 0, "D": 0.7, "G": 30.0, "G_l1": 0.29, "lr": 0.0002, "images_per_s": 7.5},
        {"step": 20, "epoch": 0, "D": 0.6, "G": 25.0, "G_l1": 0.24, "lr": 0.0002, "images_per_s": 7.9},
        {"step": 20, "epoch": 0, "val_psnr": 18.25, "val_fid": 151.5},
        {"step": 30, "epoch": 1, "D": 0.5, "G": 21.0, "G_l1": 0.2, "lr": 0.0001, "images_per_s": 8.1},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rng = np.random.default_rng(0)
    for i in range(samples):
        grid = rng.integers(0, 256, size=(32, 96, 3), dtype=np.uint8)
        Image.fromarray(grid).save(run / "samples" / f"step_{(i + 1) * 10:06d}.png")
    return run


def test_report_shows_config_metrics_and_samples(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    page = build_report(run)
    assert page == run / "report.html" and page.is_file()
    text = page.read_text(encoding="utf-8")
    for value in ("facades_run", "unet_256", "123.5", "datasets/facades", "model_config.lambda_l1"):
        assert value in text
    for metric in ("D", "G_l1", "val_psnr", "val_fid", "18.25", "151.5"):
        assert metric in text
    srcs = assert_links_resolve(page)
    assert [s for s in srcs if s.startswith("samples/")] == ["samples/step_000010.png", "samples/step_000020.png"]
    curves = [s for s in srcs if not s.startswith("samples/")]
    assert len(curves) == 7  # D, G, G_l1, val_psnr, val_fid, lr, images_per_s
    assert "http://" not in text and "https://" not in text


def test_report_survives_moving_the_folder_and_rebuilding(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    build_report(run)
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    assert_links_resolve(moved / "report.html")

    # training goes on: a new record and a line still being written; rebuild many times
    with open(moved / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 40, "epoch": 1, "D": 0.45, "G": 19.0, "G_l1": 0.18, "val_psnr": float("inf"),
                            "lr": 0.0001, "images_per_s": 8.0}) + "\n")
        f.write('{"step": 50, "D": 0.4')
    for _ in range(3):
        page = build_report(moved)
    text = page.read_text(encoding="utf-8")
    assert ">40<" in text and ">inf<" in text  # latest step and the inf PSNR
    assert_links_resolve(page)
    leftovers = [p.name for p in moved.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_samples_are_evenly_spaced_newest_last(tmp_path: Path) -> None:
    run = fake_run(tmp_path, samples=30)
    picked = pick_samples(run, max_samples=12)
    assert len(picked) == 12
    assert picked[0].name == "step_000010.png" and picked[-1].name == "step_000300.png"
    steps = [int(p.stem.split("_")[1]) for p in picked]
    assert steps == sorted(steps)
    page = build_report(run, max_samples=5)
    assert len([s for s in assert_links_resolve(page) if s.startswith("samples/")]) == 5


def test_report_of_an_empty_run(tmp_path: Path) -> None:
    run = tmp_path / "fresh"
    run.mkdir()
    page = build_report(run)
    text = page.read_text(encoding="utf-8")
    assert "No metrics logged yet" in text and "no config.json" in text and "No sample grids yet" in text
    assert image_links(page) == []
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "missing")


def test_report_of_a_real_training_run(tmp_path: Path) -> None:
    from i2i.training.trainer import train

    cfg = tiny_config(write_pairs(tmp_path / "pairs"), tmp_path / "runs", max_steps=4)
    train(cfg, progress=False)
    page = build_report(cfg.run_dir)
    text = page.read_text(encoding="utf-8")
    assert "G_l1" in text and "unet_64" in text
    srcs = assert_links_resolve(page)
    assert len([s for s in srcs if s.startswith("samples/")]) == 2  # steps 2 and 4


def test_a_curve_is_an_svg_of_its_finite_values_binned_to_the_plot_width() -> None:
    from i2i.training.report import _PLOT_W, line_plot

    def points(svg: bytes) -> list[tuple[float, float]]:
        [line] = [e for e in ElementTree.fromstring(svg).iter() if e.tag.endswith("polyline")]
        return [tuple(map(float, p.split(","))) for p in line.attrib["points"].split()]

    short = points(line_plot([1, 2, 3], [3.0, float("nan"), 1.0], "G"))
    assert len(short) == 2 and short[0][1] < short[1][1]  # NaN left out; 3 drawn above 1 (SVG y grows down)
    long = points(line_plot(list(range(5000)), [float(i % 7) for i in range(5000)], "D"))
    assert len(long) < _PLOT_W  # one mean per pixel column
    one = ElementTree.fromstring(line_plot([5], [0.5], "lr"))
    assert [e for e in one.iter() if e.tag.endswith("circle")]
    assert b"no finite values yet" in line_plot([1, 2], [float("inf"), None], "val_fid")
    assert b"&lt;b&gt;" in line_plot([1], [1.0], "<b>")  # a metric name is text, never markup
