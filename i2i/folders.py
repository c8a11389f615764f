"""Translate a file or a folder tree: walk it, name the outputs, skip finished ones, decode and encode in
threads beside the model, and summarise. The translation itself is a callable (the Translator's stream)."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from i2i.config import FORMATS
from i2i.data.io import ImageReadError, convert_depth, list_images, read_image, write_image

# (array, tag) pairs in -> (translated array, tag) pairs out, in order (Translator.translate_stream)
Translate = Callable[[Iterable[tuple[np.ndarray, Any]]], Iterator[tuple[np.ndarray, Any]]]


@dataclass
class DirSummary:
    """Counts of one `translate_tree` run."""

    translated: int = 0
    skipped: int = 0  # output already there (resumed run) or identical to the input path
    failed: list[str] = field(default_factory=list)  # "path: reason"
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.translated / self.seconds if self.seconds else 0.0
        return (f"translated {self.translated}, skipped {self.skipped} (already done), failed {len(self.failed)} "
                f"in {self.seconds:.1f} s ({rate:.2f} images/s)")


def output_path(source: Path, base: Path, dst: Path, fmt: str) -> Path:
    """Where the translation of `source` goes: the same relative path under `dst`, extension by `fmt`."""
    rel = source.relative_to(base)
    return dst / (rel if fmt == "same" else rel.with_suffix(f".{fmt}"))


def write_output(path: Path, array: np.ndarray) -> None:
    """Write a translated array in the format `path` names (16-bit only where the format has it, no JPEG alpha)."""
    if array.dtype == np.uint16 and path.suffix.lower() not in (".png", ".tif", ".tiff"):
        array = convert_depth(array, np.uint8)
    if path.suffix.lower() in (".jpg", ".jpeg") and array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[:, :, :-1]  # JPEG has no alpha
    write_image(path, array)


def translate_file(translate: Translate, src: str | Path, dst: str | Path, overwrite: bool = False) -> DirSummary:
    """Translate one image file into the file `dst` (its extension picks the format)."""
    src, dst = Path(src), Path(dst)
    summary, started = DirSummary(), time.perf_counter()
    if dst.resolve() == src.resolve():
        raise ValueError(f"refusing to overwrite the input {src}")
    if dst.exists() and not overwrite:
        summary.skipped = 1
    else:
        for out, _ in translate([(read_image(src), None)]):
            write_output(dst, out)
        summary.translated = 1
    summary.seconds = time.perf_counter() - started
    return summary


def translate_tree(translate: Translate, src: str | Path, dst: str | Path, *, fmt: str = "same",
                   overwrite: bool = False, strict: bool = False, allow_inside_input: bool = False,
                   io_threads: int = 2, read_ahead: int = 8, progress: bool = True,
                   shard: tuple[int, int] | None = None) -> DirSummary:
    """Translate a file or a whole tree into `dst`, mirroring relative paths and names.

    Existing outputs are skipped unless `overwrite` (so a killed run resumes), every output is
    written atomically, inputs are never overwritten, and `dst` inside `src` is refused unless
    `allow_inside_input`. Unreadable files are reported and skipped (or raise with `strict`).
    `shard=(rank, world)` takes only every world-th input of the sorted list, from the rank-th: the
    share of one of several processes, fixed before finished outputs are skipped, so that it never
    depends on what is already done.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.exists():
        raise FileNotFoundError(f"input {src} does not exist")
    if src.is_dir() and dst.is_relative_to(src) and not allow_inside_input:
        raise ValueError(f"output {dst} is inside the input folder {src}; choose another output folder "
                         "(or allow it: allow_inside_input=True, --allow-output-inside-input)")
    files = [src] if src.is_file() else [p for p in list_images(src, recursive=True) if not p.is_relative_to(dst)]
    if shard is not None:
        files = files[shard[0]::shard[1]]
    base = src.parent if src.is_file() else src
    summary = DirSummary()
    jobs = []
    for f in files:
        out = output_path(f, base, dst, fmt)
        if out.resolve() == f.resolve() or (out.exists() and not overwrite):
            summary.skipped += 1
        else:
            jobs.append((f, out))
    started = time.perf_counter()
    bar = tqdm(total=len(jobs), disable=not progress, unit="img", dynamic_ncols=True)

    def fail(path: Path, reason: str) -> None:
        summary.failed.append(f"{path}: {reason}")
        tqdm.write(f"error: {reason}", file=sys.stderr)
        if strict:
            raise ImageReadError(reason)

    with ThreadPoolExecutor(max_workers=max(1, io_threads)) as pool:
        def decoded() -> Iterator[tuple[np.ndarray, Path]]:
            for (source, out_path), future in prefetch(pool, lambda job: read_image(job[0]), jobs, read_ahead):
                try:
                    yield future.result(), out_path
                except ImageReadError as err:
                    fail(source, str(err))
                    bar.update(1)

        writes: list[tuple[Path, Future]] = []
        for array, out_path in translate(decoded()):
            writes.append((out_path, pool.submit(write_output, out_path, array)))
            bar.update(1)
            bar.set_postfix_str(f"{bar.n / max(time.perf_counter() - started, 1e-9):.2f} img/s")
        for path, future in writes:
            try:
                future.result()
                summary.translated += 1
            except (OSError, ValueError) as err:
                fail(path, f"cannot write {path}: {err}")
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def prefetch(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, depth: int) -> Iterator[tuple[Any, Future]]:
    """Yield (item, future of fn(item)) in order, keeping at most `depth` jobs in flight."""
    pending: deque = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= depth:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def merge_summaries(summaries: list[DirSummary]) -> DirSummary:
    """One summary for several processes' shares of a tree (they ran side by side: the longest time counts)."""
    return DirSummary(translated=sum(s.translated for s in summaries), skipped=sum(s.skipped for s in summaries),
                      failed=[f for s in summaries for f in s.failed], seconds=max(s.seconds for s in summaries))
