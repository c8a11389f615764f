"""Translate a file or a folder tree: skip finished outputs, decode and encode in threads, write atomically, report."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from i2i.config import FORMATS
from i2i.data.io import ImageReadError, printable, read_image
from i2i.translation.made_by import MadeBy, check_record, write_record
from i2i.translation.tree import (
    _SPECIAL,
    DirSummary,
    Translate,
    TranslateError,
    TreeScan,
    file_in_the_way,
    is_video_file,
    output_path,
    scan_tree,
    write_output,
)
from i2i.translation.video import VIDEO_EXTENSIONS, VideoOptions, VideoReadError, VideoUnavailable
from i2i.translation.video_encode import translate_video

log = logging.getLogger(__name__)


class _Failures:
    """Collects failed inputs into a summary: reported as they happen, raised at the first with `strict`."""

    def __init__(self, summary: DirSummary, strict: bool) -> None:
        self.summary, self.strict = summary, strict

    def __call__(self, message: str) -> None:
        message = printable(message)
        self.summary.failed.append(message)
        log.error(f"error: {message}")
        if self.strict:
            raise TranslateError(message)


def _clip_warner(summary: DirSummary) -> Callable[[str], None]:
    """Note each input whose float values were clipped; print a warning for the first one only."""
    lock = threading.Lock()

    def warn(message: str) -> None:
        with lock:
            summary.clipped.append(printable(message))
            first = len(summary.clipped) == 1
        if first:
            log.warning(f"warning: {printable(message)} (warned once; the summary counts the others)")

    return warn


@contextmanager
def _summary_on_interrupt(summary: DirSummary, started: float) -> Iterator[None]:
    """Ctrl-C or a stop signal (a KeyboardInterrupt) leaves with what was done so far as its `summary`: every
    output written is complete (atomic writes; a video's temp file is removed), and a rerun continues."""
    try:
        yield
    except KeyboardInterrupt as err:
        summary.seconds = time.perf_counter() - started
        err.summary = summary  # type: ignore[attr-defined]
        raise


def translate_file(translate: Translate, src: str | Path, dst: str | Path, overwrite: bool = False,
                   strict: bool = False, video: VideoOptions | None = None, indices: bool = False) -> DirSummary:
    """Translate one image or video file into the file `dst` (its extension picks the format).

    An input that cannot be read, or an output that cannot be written, is counted in `failed` (raised as
    TranslateError with `strict`); a `dst` that could never be written (the input itself, below a file,
    a folder) raises ValueError before anything is translated.
    """
    src, dst = Path(src), Path(dst)
    summary, started = DirSummary(), time.perf_counter()
    if dst.resolve() == src.resolve():
        raise ValueError(f"refusing to overwrite the input {src}")
    blocker = file_in_the_way(dst)
    if blocker is not None:
        raise ValueError(f"cannot write {dst}: {blocker} is a file, not a folder")
    if dst.exists() and not dst.is_file():
        raise ValueError(f"cannot write {dst}: it exists and is not a file")
    fail = _Failures(summary, strict)
    if overwrite or not dst.exists():
        check_writable(dst.parent)
    with _summary_on_interrupt(summary, started):
        if dst.exists() and not overwrite:
            summary.skipped = 1
        elif is_video_file(src):
            _translate_video(translate, src, dst, video or VideoOptions(), summary, fail, progress=False)
        else:
            try:
                array = read_image(src, warn=_clip_warner(summary), indices=indices)
            except ImageReadError as err:
                fail(str(err))
            else:
                for out, _ in translate([(array, None)]):
                    try:
                        write_output(dst, out)
                        summary.translated = 1
                    except (OSError, ValueError) as err:
                        fail(f"cannot write {dst}: {err}")
    summary.seconds = time.perf_counter() - started
    return summary


def translate_tree(translate: Translate, src: str | Path, dst: str | Path, *, fmt: str = "same",
                   overwrite: bool = False, strict: bool = False, allow_inside_input: bool = False,
                   io_threads: int = 2, read_ahead: int = 8, progress: bool = True,
                   shard: tuple[int, int] | None = None, video: VideoOptions | None = None,
                   made_by: MadeBy | None = None, indices: bool = False) -> DirSummary:
    """Translate a file or a whole tree into `dst`, mirroring relative paths and names.

    Every file is accounted for: translated, skipped (its output exists: a killed run resumes; `overwrite`
    redoes it), failed with a reason (unreadable, not a regular file, a dangling or looping link, an output
    that cannot be written; `strict` raises TranslateError at the first), or ignored (not an image, hidden).
    Outputs are written atomically and only under `dst`; inputs are never modified. `dst` inside `src` is
    refused unless `allow_inside_input`, and `dst` equal to `src` always.
    `shard=(rank, world)` translates only every world-th image of the sorted list, from the rank-th (the share
    of one of several processes; fixed before finished outputs are skipped, so it never depends on what is
    already done); the failed and ignored entries of the walk are reported by rank 0 alone.
    `made_by` (the checkpoint) is recorded in `dst`; a `dst` another checkpoint made raises ValueError, before
    anything is translated, unless `overwrite` (see i2i.translation.made_by).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    given = Path(src)
    src, dst = given.resolve(), Path(dst).resolve()
    if not src.exists():
        raise FileNotFoundError(f"input {given} does not exist" + (" (a dangling symbolic link)"
                                                                     if given.is_symlink() else ""))
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"output {dst} is a file; OUTPUT must be a folder (or, for one input file, an output "
                         "file name with an extension)")
    blocker = file_in_the_way(dst)
    if blocker is not None:
        raise ValueError(f"cannot create the output folder {dst}: {blocker} is a file, not a folder")
    summary = DirSummary()
    fail = _Failures(summary, strict)
    if src.is_dir():
        if dst == src:
            raise ValueError(f"the output folder is the input folder {src}: the outputs would replace the "
                             "inputs; choose another output folder")
        if dst.is_relative_to(src) and not allow_inside_input:
            raise ValueError(f"output {dst} is inside the input folder {src}; choose another output folder "
                             "(or allow it: allow_inside_input=True, --allow-output-inside-input)")
        scan, base = scan_tree(src, exclude=dst), src
    else:
        scan, base = TreeScan(), src.parent
        if output_path(src, base, dst, fmt) == src:
            raise ValueError(f"the output for {src} would be the input itself (OUTPUT is its folder); choose "
                             "another output folder or an output file name")
        kind = next((k for test, k in _SPECIAL.items() if test(src.stat().st_mode)), None)
        if kind:
            scan.failed.append((src, f"not a regular file ({kind}); not opened"))
        else:
            (scan.videos if is_video_file(src) else scan.images).append(src)
    images, videos = scan.images, scan.videos
    _refuse_outputs_on_inputs(images, videos, base, dst, fmt, src if src.is_dir() else None)
    if images or videos:
        check_writable(dst)
        if made_by is not None:
            check_record(dst, made_by, overwrite)
            if shard is None or shard[0] == 0:
                write_record(dst, made_by)
    if shard is not None:
        images, videos = images[shard[0]::shard[1]], videos[shard[0]::shard[1]]
        if shard[0] != 0:
            scan.ignored, scan.failed = [], []
    summary.ignored = [f"{printable(path)}: {reason}" for path, reason in scan.ignored]
    for path, reason in scan.failed:
        fail(f"{path}: {reason}")
    jobs = []
    planned: dict[Path, Path] = {}  # output -> the input it belongs to
    for f in images:
        out = output_path(f, base, dst, fmt)
        home = out.parent.resolve()
        if out in planned:  # a.jpg and a.png with --format png: never let one output replace the other
            fail(f"{f}: its output {out} is already the output of {planned[out]}; not written (--format same "
                 "keeps each extension)")
        elif not home.is_relative_to(dst):
            fail(f"{f}: its output folder {out.parent} leads outside the output folder (to {home}) through a "
                 "symbolic link; not written")
        elif out.exists() and not out.is_file():
            fail(f"{f}: cannot write {out}: it exists and is not a file")
        elif out.resolve() == f.resolve():
            fail(f"{f}: its output would replace the input itself; not written")
        elif out.exists() and not overwrite:
            planned[out] = f
            summary.skipped += 1
        else:
            planned[out] = f
            jobs.append((f, out))
    started = time.perf_counter()
    with _summary_on_interrupt(summary, started):
        bar = tqdm(total=len(jobs), disable=not progress, unit="img", dynamic_ncols=True)
        clip_warn = _clip_warner(summary)

        with ThreadPoolExecutor(max_workers=max(1, io_threads)) as pool:
            def decoded() -> Iterator[tuple[np.ndarray, Path]]:
                read = lambda job: read_image(job[0], warn=clip_warn, indices=indices)  # noqa: E731
                for (_, out_path), future in prefetch(pool, read, jobs, read_ahead):
                    try:
                        yield future.result(), out_path
                    except ImageReadError as err:
                        fail(str(err))
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
                    fail(f"cannot write {path}: {err}")
        bar.close()
        for source in videos:  # one at a time: each streams its frames through the model
            out = video_output_path(source, base, dst)
            if out.exists() and not overwrite:
                summary.skipped += 1
            elif not out.parent.resolve().is_relative_to(dst):
                fail(f"{source}: its output folder {out.parent} leads outside the output folder; not written")
            else:
                _translate_video(translate, source, out, video or VideoOptions(), summary, fail, progress)
    summary.seconds = time.perf_counter() - started
    return summary


def translate_stacked(translate: Translate, src: str | Path, dst: str | Path, inputs: tuple[str, ...], *,
                      fmt: str = "same", overwrite: bool = False, strict: bool = False, progress: bool = True,
                      ) -> DirSummary:
    """Translate inputs stacked from several folders: SRC/<inputs[0]>/, SRC/<inputs[1]>/, ... matched by file
    stem (other folders under SRC, such as B/, are left alone) into DST/<stem>.<ext>, the extension that of the
    first part's file (or `fmt`). A stem that lacks one of its parts raises ValueError naming them all."""
    from i2i.data.layout import DataError, match_pairs

    src, dst = Path(src), Path(dst)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    folders = [src / name for name in inputs]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise ValueError(f"the model stacks {', '.join(inputs)} into its input: expected the folder(s) "
                         f"{', '.join(missing)}")
    try:
        items = match_pairs(*folders)
    except DataError as err:
        raise ValueError(str(err)) from err
    if dst.resolve() in [f.resolve() for f in folders] or any(f.resolve() in dst.resolve().parents for f in folders):
        raise ValueError(f"refusing to write into the input folders under {src}: pick another output folder")
    summary, started = DirSummary(), time.perf_counter()
    fail = _Failures(summary, strict)
    dst.mkdir(parents=True, exist_ok=True)
    check_writable(dst)

    def parts() -> Iterator[tuple[tuple[np.ndarray, ...], Path]]:
        for paths in tqdm(items, desc="translate", unit="img", disable=not progress):
            out = output_path(paths[0], folders[0], dst, fmt)
            if out.exists() and not overwrite:
                summary.skipped += 1
                continue
            try:
                arrays = tuple(read_image(p) for p in paths)
            except ImageReadError as err:
                fail(str(err))
                continue
            if any(a.shape[:2] != arrays[0].shape[:2] for a in arrays):
                fail(f"the parts of {paths[0].stem} differ in size: "
                     + ", ".join(f"{p} {a.shape[1]}x{a.shape[0]}" for p, a in zip(paths, arrays, strict=True)))
                continue
            yield arrays, out

    with _summary_on_interrupt(summary, started):
        for out, path in translate(parts()):
            try:
                write_output(path, out)
                summary.translated += 1
            except (OSError, ValueError) as err:
                fail(f"cannot write {path}: {err}")
    summary.seconds = time.perf_counter() - started
    return summary


def check_writable(folder: Path) -> None:
    """Create `folder` and a file in it (removed at once), or raise OSError saying OUTPUT cannot be used: a
    read-only or unusable output is found before the work, not after every image was translated."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".i2i-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OSError(f"cannot write in the output folder {printable(folder)}: {err.strerror or err}; nothing was "
                      "translated") from err


def _refuse_outputs_on_inputs(images: list[Path], videos: list[Path], base: Path, dst: Path, fmt: str,
                              src_dir: Path | None) -> None:
    """Raise ValueError, before anything is written, when a planned output would land on an input or inside the
    input folder (INPUT inside OUTPUT: `OUT/x/x/f.jpg` -> `OUT/x/f.jpg`), naming both paths."""
    inputs = {p.resolve(): p for p in [*images, *videos]}
    outputs = [(f, output_path(f, base, dst, fmt)) for f in images] + [(v, video_output_path(v, base, dst))
                                                                       for v in videos]
    inside_allowed = src_dir is not None and dst.is_relative_to(src_dir)  # --allow-output-inside-input
    clashes = []
    for source, out in outputs:
        where = out.parent.resolve() / out.name
        if where in inputs and where != source.resolve():
            clashes.append(f"the output of {printable(source)} would be {printable(out)}, which is the input "
                           f"{printable(inputs[where])}")
        elif src_dir is not None and where.is_relative_to(src_dir) and not inside_allowed:
            clashes.append(f"the output of {printable(source)} would be {printable(out)}, inside the input folder "
                           f"{printable(src_dir)}")
    if clashes:
        more = f"\n  (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise ValueError("refusing to write outputs onto the inputs; nothing was written:\n  " +
                         "\n  ".join(clashes[:5]) + more + "\nchoose an output folder outside the input folder")


def video_output_path(source: Path, base: Path, dst: Path) -> Path:
    """A video's output: the same relative path under `dst`; a name without a video extension gets ".mp4"."""
    rel = source.relative_to(base)
    return dst / (rel if rel.suffix.lower() in VIDEO_EXTENSIONS else rel.with_name(rel.name + ".mp4"))


def _translate_video(translate: Translate, src: Path, dst: Path, options: VideoOptions, summary: DirSummary,
                     fail: Callable[[str], None], progress: bool) -> None:
    """One video through the stream of `translate`, counted in `summary` (failures named, never raised)."""
    def frames(batch: list[np.ndarray]) -> list[np.ndarray]:
        return [out for out, _ in translate((frame, None) for frame in batch)]

    try:
        result = translate_video(src, dst, frames, codec=options.codec, crf=options.crf, bitrate=options.bitrate,
                                 overwrite=True, progress=progress)
    except (VideoReadError, VideoUnavailable, OSError, ValueError) as err:
        fail(f"{src}: {err}")
        return
    summary.translated += 1
    summary.videos.append(result.line())


def prefetch(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, depth: int) -> Iterator[tuple[Any, Future]]:
    """Yield (item, future of fn(item)) in order, keeping at most `depth` jobs in flight."""
    pending: deque = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= depth:
            yield pending.popleft()
    while pending:
        yield pending.popleft()
