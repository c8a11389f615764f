"""Score a trained run on a held-out split (PSNR/SSIM and FID/KID), or two folders against each other."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from i2i.config import DataConfig
from i2i.data.io import ImageReadError, list_images, preview, write_image
from i2i.data.labels import colour_map
from i2i.data.layout import resolve_split
from i2i.evaluation.checkerboard import checkerboard_score
from i2i.evaluation.fid import distribution_metrics_unavailable, distribution_scores
from i2i.evaluation.page import write_results_page
from i2i.evaluation.paired import json_safe, keyed_images, paired_scores
from i2i.translation.translator import Translator


def score_folders(outputs: str | Path, targets: str | Path, *, paired: bool = True, fid: bool = True,
                  batch_size: int = 16, device: str | None = None,
                  per_image: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Mean paired metrics (when `paired`), the checkerboard figure (outputs' energy at the 2- and 4-pixel
    periods over the targets'; 1.0 = like the real images) and FID/KID (when `fid` and the metrics extra is
    installed). `per_image` (a dict) receives each image's paired scores, by name."""
    scores: dict[str, Any] = {}
    if paired:
        result = paired_scores(outputs, targets)
        scores.update(n=result["n"], **result["mean"])
        if per_image is not None:
            per_image.update(result["per_image"])
    scores["checkerboard"] = checkerboard_score(outputs, targets)
    if fid:
        missing = distribution_metrics_unavailable()
        if missing:
            scores["fid_unavailable"] = missing
        else:
            dist = distribution_scores(outputs, targets, batch_size=batch_size, device=device)
            scores.update(fid=dist["fid"], kid=dist["kid_mean"], kid_std=dist["kid_std"], n_fake=dist["n_fake"],
                          n_real=dist["n_real"])
    return scores


def evaluate_run(checkpoint: str | Path, data_root: str | Path, *, split: str = "val", direction: str | None = None,
                 work_dir: str | Path | None = None, fid: bool = True, baseline: bool = True, device: str = "auto",
                 precision: str = "fp32", batch_size: int = 4, ema: bool = True,
                 html: str | Path | None = None) -> dict[str, Any]:
    """Translate a held-out split with a trained run and score it against the target domain.

    Paired runs (Pix2Pix) are scored image by image (PSNR, SSIM, MS-SSIM) and as distributions
    (FID/KID against the split's targets); unpaired runs (CycleGAN) by FID/KID of the outputs against
    the split's real target-domain images. With `baseline`, the inputs themselves are scored the same
    way ("identity": the translation that does nothing). Outputs land in `work_dir` (a temp folder
    by default). Returns {"model": scores, "identity": scores, "split", "direction", "n", "failed"}:
    inputs that could not be read or translated are left out of the scores and listed in "failed".
    `html`: a folder for the results page (input | output | target per image with its scores; see results_page).
    """
    translator = Translator.from_pretrained(checkpoint, direction=direction, device=device, precision=precision,
                                            ema=ema)
    root = Path(data_root)
    unpaired = translator.data_spec.kind == "unpaired"
    split = resolve_split(root, split, unpaired)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        inputs, outputs, targets = work / "inputs", work / "outputs", work / "targets"
        if unpaired:
            source, real = ("A", "B") if translator.direction == "AtoB" else ("B", "A")
            inputs, targets = root / f"{split}{source}", root / f"{split}{real}"
            summary = translator.translate_dir(inputs, outputs, fmt="png", overwrite=True, batch_size=batch_size,
                                               progress=False)
            failed = summary.failed
        else:
            failed = _write_paired_split(translator, root, split, inputs, outputs, targets, batch_size)
        result: dict[str, Any] = {"split": split, "direction": translator.direction, "paired": not unpaired,
                                  "n": len(list_images(outputs, recursive=True)), "failed": failed}
        per_image: dict[str, dict[str, Any]] = {}
        rgb = translator.out_channels in (1, 3)  # FID/KID's Inception network sees photos
        result["model"] = score_folders(outputs, targets, paired=not unpaired, fid=fid and rgb, per_image=per_image)
        if fid and not rgb:
            result["model"]["fid_unavailable"] = (f"FID/KID need gray or RGB images; this model gives "
                                                  f"{translator.out_channels} channels")
        # the inputs as outputs ("identity") only where they are images of the outputs' kind
        baseline = baseline and not translator.label_nc and translator.in_channels == translator.out_channels
        if baseline:
            result["identity"] = score_folders(inputs, targets, paired=not unpaired, fid=fid and rgb)
        if html is not None:
            columns = {"input": inputs, "output": outputs} | ({} if unpaired else {"target": targets})
            results_page(html, columns, result, per_image, title=f"i2i eval {checkpoint}")
    return json_safe(result)


def results_page(folder: str | Path, columns: dict[str, Path], result: dict[str, Any],
                 per_image: dict[str, dict[str, Any]] | None = None, title: str = "i2i eval") -> Path:
    """`folder`/index.html: a row per image of the first column's folder (same-named files of the others beside
    it, matched by relative path without extension) with its scores, under the overall scores."""
    files = {label: keyed_images(Path(path), recursive=True) for label, path in columns.items()}
    return write_results_page(folder, files, result, per_image, title=title)


def scores_file(run_dir: Path, result: dict[str, Any]) -> Path:
    """RUN/eval_SPLIT.json; an unpaired run (a generator per direction) keeps one per direction."""
    suffix = "" if result.get("paired", True) else f"_{result['direction']}"
    return run_dir / f"eval_{result['split']}{suffix}.json"


def _write_paired_split(translator: Translator, root: Path, split: str, inputs: Path, outputs: Path, targets: Path,
                        batch_size: int) -> list[str]:
    """Inputs, targets and translations of a paired split as same-named PNGs (full size, no cropping); returns
    the items that could not be read, which are left out."""
    from i2i.data.paired import PairedDataset

    data = translator.cfg.data
    dataset = PairedDataset(root, split=split, layout=data.layout, direction=translator.data_spec.direction,
                            in_channels=data.label_nc or translator.in_channels, inputs=tuple(data.inputs.split(",")),
                            label_nc=data.label_nc, palette=data.palette)

    failed: list[str] = []
    stacked = len(dataset.inputs) > 1 and not dataset.swap  # the translator takes the parts, each in its range

    def sources() -> Iterator[tuple[np.ndarray | tuple[np.ndarray, ...], str]]:
        for index in range(len(dataset)):
            try:
                source, target = dataset.source_target(index)
                parts = dataset.read_parts(index)[0] if stacked else source
            except ImageReadError as err:
                failed.append(str(err))
                continue
            name = dataset.name(index)
            write_image(inputs / f"{name}.png", preview(source) if not data.label_nc else colour_labels(source, data))
            write_image(targets / (name + _extension(target)), target)
            yield parts, name

    for out, name in translator.translate_stream(sources(), batch_size=batch_size):
        write_image(outputs / (name + _extension(out)), out)
    return failed


def _extension(array: np.ndarray) -> str:
    """.png for what PNG holds (1-4 bands of 8 or 16 bits), .tif for any other band count or float."""
    bands = 1 if array.ndim == 2 else array.shape[2]
    return ".png" if bands <= 4 and array.dtype in (np.uint8, np.uint16) else ".tif"


def colour_labels(ids: np.ndarray, data: DataConfig) -> np.ndarray:
    """Class ids as the run's class colours (or distinct display colours for index labels), ids >= K black."""
    colours = np.array(data.palette, dtype=np.uint8) if data.palette is not None else colour_map(data.label_nc)
    table = np.zeros((max(int(ids.max()) + 1, data.label_nc), 3), dtype=np.uint8)
    table[: data.label_nc] = colours
    return table[ids]


def format_table(result: dict[str, Any]) -> str:
    """The scores of evaluate_run / score_folders as an aligned text table (rows: model, identity)."""
    rows = {k: v for k, v in result.items() if k in ("model", "identity", "scores")}
    keys = [k for k in ("psnr", "ssim", "ms_ssim", "fid", "kid", "checkerboard") if any(k in r for r in rows.values())]
    widths = {k: max(10, len(k) + 2) for k in keys}
    lines = [f"{'':10}" + "".join(f"{k:>{widths[k]}}" for k in keys)]
    for name, scores in rows.items():
        cells = []
        for k in keys:
            v = scores.get(k)
            cells.append(f"{'-' if v is None else ('inf' if v == float('inf') else f'{v:.4g}'):>{widths[k]}}")
        lines.append(f"{name:10}" + "".join(cells))
    notes = {s.get("fid_unavailable") for s in rows.values() if s.get("fid_unavailable")}
    return "\n".join(lines + [f"FID/KID skipped: {n}" for n in notes])


