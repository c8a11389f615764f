"""The results page of `i2i eval --html`: input | output | target per image with its scores, viewable offline."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from i2i.data.io import atomic_write_bytes

PAGE = "index.html"
IMAGES = "images"
METRICS = ("psnr", "ssim", "ms_ssim", "fid", "kid", "checkerboard")
STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:center;vertical-align:middle}th{background:#f2f2f2}
td.name{text-align:left;font-family:monospace}img{max-width:256px;max-height:256px;image-rendering:auto}"""


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.4g}"
    return html.escape(str(value))


def _scores_table(result: dict[str, Any]) -> str:
    rows = {k: v for k, v in result.items() if k in ("model", "identity", "scores") and isinstance(v, dict)}
    keys = [k for k in METRICS if any(k in r for r in rows.values())]
    head = "".join(f"<th>{k}</th>" for k in keys)
    body = "".join(f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{_number(s.get(k))}</td>" for k in keys)
                   + "</tr>" for name, s in rows.items())
    return f"<table class=\"scores\"><tr><th></th>{head}</tr>{body}</table>"


def write_results_page(folder: str | Path, columns: dict[str, dict[str, Path]], result: dict[str, Any],
                       per_image: dict[str, dict[str, Any]] | None = None, title: str = "i2i eval") -> Path:
    """Write `folder`/index.html and copies of the images in `folder`/images: one row per key of the first column
    (the images of each column by key, e.g. {"input": ..., "output": ..., "target": ...}), with that image's
    scores from `per_image`, under a table of the overall scores in `result`. Every file is written atomically."""
    folder = Path(folder)
    images = folder / IMAGES
    images.mkdir(parents=True, exist_ok=True)
    per_image = per_image or {}
    metrics = [k for k in ("psnr", "ssim", "ms_ssim") if any(k in s for s in per_image.values())]
    keys = sorted(next(iter(columns.values()), {}))
    header = "<th>image</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "".join(
        f"<th>{m}</th>" for m in metrics)
    rows = []
    for index, key in enumerate(keys):
        cells = [f"<td class=\"name\">{html.escape(key)}</td>"]
        for label, files in columns.items():
            source = files.get(key)
            if source is None:
                cells.append("<td>–</td>")
                continue
            name = f"{index:05d}_{label}{source.suffix.lower()}"
            atomic_write_bytes(images / name, source.read_bytes())
            cells.append(f"<td><img src=\"{IMAGES}/{quote(name)}\" alt=\"{html.escape(label)} {html.escape(key)}\">"
                         "</td>")
        cells += [f"<td>{_number(per_image.get(key, {}).get(m))}</td>" for m in metrics]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    where = " · ".join(f"{k}: {html.escape(str(result[k]))}" for k in ("split", "direction", "n") if k in result)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{where}</p>"
            f"{_scores_table(result)}<table class=\"images\"><tr>{header}</tr>{''.join(rows)}</table></body></html>\n")
    path = folder / PAGE
    atomic_write_bytes(path, page.encode())
    return path
