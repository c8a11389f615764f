"""A self-contained HTML report of a run directory: config, loss and metric curves, sample grids, latest metrics."""

from __future__ import annotations

import html
import json
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from i2i.data.io import atomic_write_bytes

REPORT_NAME = "report.html"
ASSETS_DIR = "report_files"  # curve SVGs, next to report.html
NOT_METRICS = ("step", "epoch", "lr", "images_per_s")  # bookkeeping keys of metrics.jsonl
VALIDATION_PREFIXES = ("val_", "test_")
SAMPLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")

_PLOT_W, _PLOT_H = 420, 240
_LINE, _ENVELOPE, _GRID, _TEXT = "#1f77b4", "#aec7e8", "#e1e1e1", "#3c3c3c"


# -- reading the run -----------------------------------------------------------------------------------------


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; blank and unparsable lines (a line being written right now) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_series(records: Sequence[dict[str, Any]]) -> dict[str, tuple[list[float], list[float | None]]]:
    """key -> (steps, values) for every numeric key of the records, in log order; None values are kept as gaps."""
    series: dict[str, tuple[list[float], list[float | None]]] = {}
    for record in records:
        step = record.get("step")
        if not _is_number(step):
            continue
        for key, value in record.items():
            if key == "step" or not (_is_number(value) or value is None):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(float(step))
            values.append(None if value is None else float(value))
    return series


def _flatten(config: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(config, dict):
        rows = []
        for key, value in config.items():
            rows.extend(_flatten(value, f"{prefix}{key}."))
        return rows
    text = config if isinstance(config, str) else json.dumps(config)
    return [(prefix[:-1], text)]


def _sample_step(path: Path) -> tuple[int, str]:
    numbers = re.findall(r"\d+", path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def pick_samples(run_dir: str | os.PathLike, max_samples: int = 12) -> list[Path]:
    """Sample grids of the run, oldest first: all of them, or `max_samples` evenly spaced (first and last kept)."""
    folder = Path(run_dir) / "samples"
    if not folder.is_dir() or max_samples <= 0:
        return []
    grids = sorted((p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in SAMPLE_EXTENSIONS and not p.name.startswith(".")),
                   key=_sample_step)
    if len(grids) <= max_samples:
        return grids
    if max_samples == 1:
        return [grids[-1]]
    picks = sorted({round(i * (len(grids) - 1) / (max_samples - 1)) for i in range(max_samples)})
    return [grids[i] for i in picks]


# -- plots ---------------------------------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps)."""
    span = hi - lo
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def _bins(xs: list[float], ys: list[float], n: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Long series as n x-bins: bin centre, mean, min, max (what a plot n pixels wide can show anyway)."""
    lo, hi = xs[0], xs[-1]
    width = (hi - lo) / n or 1.0
    groups: dict[int, list[float]] = {}
    for x, y in zip(xs, ys, strict=True):
        groups.setdefault(min(int((x - lo) / width), n - 1), []).append(y)
    keys = sorted(groups)
    centres = [lo + (k + 0.5) * width for k in keys]
    return (centres, [sum(groups[k]) / len(groups[k]) for k in keys], [min(groups[k]) for k in keys],
            [max(groups[k]) for k in keys])


def line_plot(steps: Sequence[float], values: Sequence[float | None], title: str) -> bytes:
    """A small SVG line chart of values over steps (non-finite values are left out); returns the SVG bytes.

    A long series is drawn as one mean per pixel column with its min-max envelope (what the width can show)."""
    left, right, top, bottom = 62, 14, 26, 30
    box = (left, top, _PLOT_W - right, _PLOT_H - bottom)
    points = sorted((x, y) for x, y in zip(steps, values, strict=True) if y is not None and math.isfinite(y))
    latest = next((y for y in reversed(values) if y is not None), None)
    label = title if latest is None else f"{title}   latest {_fmt(latest)}"
    parts = [_text(left, 17, label, size=13)]
    if not points:
        parts += [_rect(box), _text(left + 10, top + 20, "no finite values yet")]
        return _svg(parts)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = (xs[0], xs[-1]) if xs[-1] > xs[0] else (xs[0] - 1, xs[0] + 1)
    y_lo, y_hi = min(ys), max(ys)
    if y_hi == y_lo:
        pad = abs(y_lo) * 0.05 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    y_pad = (y_hi - y_lo) * 0.04
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad

    def px(x: float) -> float:
        return box[0] + (x - x_lo) / (x_hi - x_lo) * (box[2] - box[0])

    def py(y: float) -> float:
        return box[3] - (y - y_lo) / (y_hi - y_lo) * (box[3] - box[1])

    for tick in _nice_ticks(y_lo, y_hi):
        parts += [_line(box[0], py(tick), box[2], py(tick), _GRID), _text(box[0] - 6, py(tick) + 4, _fmt(tick), "end")]
    for tick in _nice_ticks(x_lo, x_hi):
        parts += [_line(px(tick), box[1], px(tick), box[3], _GRID), _text(px(tick), box[3] + 16, _fmt(tick), "middle")]
    parts += [_rect(box), _text(box[0] - 6, box[3] + 16, "step", "end")]
    if len(xs) > box[2] - box[0]:
        centres, means, lows, highs = _bins(xs, ys, box[2] - box[0])
        parts += [_line(px(x), py(lo), px(x), py(hi), _ENVELOPE)
                  for x, lo, hi in zip(centres, lows, highs, strict=True)]
        xs, ys = centres, means
    if len(xs) == 1:
        parts.append(f'<circle cx="{px(xs[0]):.1f}" cy="{py(ys[0]):.1f}" r="3" fill="{_LINE}"/>')
    else:
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{_LINE}" stroke-width="2" '
                     'stroke-linejoin="round"/>')
    return _svg(parts)


def _svg(parts: list[str]) -> bytes:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_PLOT_W}" height="{_PLOT_H}" '
            f'viewBox="0 0 {_PLOT_W} {_PLOT_H}" font-family="sans-serif" font-size="11" fill="{_TEXT}">'
            f'<rect width="100%" height="100%" fill="white"/>{"".join(parts)}</svg>\n').encode()


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">'
            f'{html.escape(text)}</text>')


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}"/>'


def _rect(box: tuple[float, float, float, float]) -> str:
    return (f'<rect x="{box[0]}" y="{box[1]}" width="{box[2] - box[0]}" height="{box[3] - box[1]}" fill="none" '
            'stroke="#a0a0a0"/>')


def _write_if_changed(path: Path, payload: bytes) -> None:
    try:
        if path.read_bytes() == payload:
            return
    except OSError:
        pass
    atomic_write_bytes(path, payload)


# -- the page ------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 4px; } h2 { font-size: 1.15em; margin-top: 28px; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plots img { width: 420px; height: 240px; border: 1px solid #eee; }
figure { margin: 0 0 18px 0; } figcaption { color: #555; font-size: 0.9em; }
figure img { max-width: 100%; border: 1px solid #eee; }
"""


def _src(path: Path, run_dir: Path) -> str:
    return html.escape(quote(path.relative_to(run_dir).as_posix()))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f"<td class=\"num\">{html.escape(c)}</td>" if i < len(numeric) and numeric[i]
                        else f"<td>{html.escape(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _safe_name(key: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "metric"
    name, n = f"curve_{base}.svg", 1
    while name in used:
        n += 1
        name = f"curve_{base}_{n}.svg"
    used.add(name)
    return name


def build_report(run_dir: str | os.PathLike, *, max_samples: int = 12) -> Path:
    """Write run_dir/report.html (atomically) and its curve SVGs under run_dir/report_files/; return its path.

    The page shows the latest value of every metric, one curve per loss / validation metric / lr / throughput
    from metrics.jsonl, up to `max_samples` evenly spaced sample grids (newest last) and the config.json table.
    Every image is referenced by a relative path (the run folder can be moved or copied) and nothing is loaded
    from the network. Safe to call while training writes to the run: a half-written log line is skipped and
    each file is replaced atomically; it costs a few milliseconds per curve.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    config_path = run_dir / "config.json"
    config: Any = None
    config_note = ""
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            config_note = f"config.json could not be read: {err}"
    else:
        config_note = "no config.json in this run directory"

    records = read_metrics(run_dir / "metrics.jsonl")
    series = metric_series(records)
    name = run_dir.name
    if isinstance(config, dict) and isinstance(config.get("train"), dict) and config["train"].get("name"):
        name = str(config["train"]["name"])
    model = config.get("model") if isinstance(config, dict) else None

    metric_keys = [k for k in series if k not in NOT_METRICS]
    validation = [k for k in metric_keys if k.startswith(VALIDATION_PREFIXES)]
    losses = [k for k in metric_keys if k not in validation]
    bookkeeping = [k for k in ("lr", "images_per_s") if k in series]

    assets = run_dir / ASSETS_DIR
    used: set[str] = set()
    plot_srcs: dict[str, str] = {}
    if series:
        assets.mkdir(exist_ok=True)
    for key in losses + validation + bookkeeping:
        file = assets / _safe_name(key, used)
        _write_if_changed(file, line_plot(*series[key], title=key))
        plot_srcs[key] = _src(file, run_dir)

    parts = [f"<h1>{html.escape(name)}</h1>"]
    meta = []
    if model:
        meta.append(f"model {model}")
    steps_logged = [float(r["step"]) for r in records if _is_number(r.get("step"))]
    if steps_logged:
        meta.append(f"step {_fmt(max(steps_logged))}")
    for key, label in (("epoch", "epoch"), ("lr", "lr"), ("images_per_s", "images/s")):
        latest_value = series[key][1][-1] if key in series else None
        if latest_value is not None:
            meta.append(f"{label} {_fmt(latest_value)}")
    meta.append("report written " + time.strftime("%Y-%m-%d %H:%M:%S"))
    parts.append(f"<p class=\"meta\">{html.escape(' · '.join(meta))}</p>")

    parts.append("<h2>Latest metrics</h2>")
    if metric_keys:
        rows = []
        for key in losses + validation:
            steps, values = series[key]
            finite = [v for v in values if v is not None and math.isfinite(v)]
            latest = values[-1]
            rows.append([key, "null" if latest is None else _fmt(latest), _fmt(steps[-1]),
                         _fmt(min(finite)) if finite else "", _fmt(max(finite)) if finite else ""])
        parts.append(_table(["metric", "latest", "at step", "min", "max"], rows, [False, True, True, True, True]))
    else:
        parts.append("<p>No metrics logged yet.</p>")

    for title, keys in (("Loss curves", losses), ("Validation metrics", validation),
                        ("Learning rate and throughput", bookkeeping)):
        if keys:
            imgs = "".join(f"<img src=\"{plot_srcs[k]}\" alt=\"{html.escape(k)} over steps\">" for k in keys)
            parts.append(f"<h2>{title}</h2><div class=\"plots\">{imgs}</div>")

    samples = pick_samples(run_dir, max_samples)
    parts.append("<h2>Samples</h2>")
    if samples:
        total = len([p for p in (run_dir / "samples").iterdir() if p.suffix.lower() in SAMPLE_EXTENSIONS])
        if total > len(samples):
            parts.append(f"<p class=\"meta\">{len(samples)} of {total} sample grids, evenly spaced; newest last.</p>")
        for path in samples:
            step, _ = _sample_step(path)
            caption = f"step {step}" if step >= 0 else path.name
            parts.append(f"<figure><img src=\"{_src(path, run_dir)}\" alt=\"{html.escape(caption)}\" loading=\"lazy\">"
                         f"<figcaption>{html.escape(caption)} — {html.escape(path.name)}</figcaption></figure>")
    else:
        parts.append("<p>No sample grids yet.</p>")

    parts.append("<h2>Config</h2>")
    if config_note:
        parts.append(f"<p>{html.escape(config_note)}</p>")
    if config is not None:
        parts.append(_table(["option", "value"], _flatten(config)))

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(name)} — i2i report</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    out = run_dir / REPORT_NAME
    atomic_write_bytes(out, page.encode("utf-8"))
    return out
