"""Translate a file or a folder tree: walk it, name the outputs, skip finished ones, decode and encode in
threads beside the model, and summarise. The translation itself is a callable (the Translator's stream)."""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from i2i.config import FORMATS
from i2i.data.io import ImageReadError, convert_depth, is_image_file, read_image, write_image
from i2i.video import (
    VIDEO_EXTENSIONS,
    VideoOptions,
    VideoReadError,
    VideoUnavailable,
    is_video,
    translate_video,
)

# (array, tag) pairs in -> (translated array, tag) pairs out, in order (Translator.translate_stream)
Translate = Callable[[Iterable[tuple[np.ndarray, Any]]], Iterator[tuple[np.ndarray, Any]]]


class TranslateError(ImageReadError):
    """An input could not be translated (raised at the first one with `strict`); the message names it."""


def shown(text: str | os.PathLike) -> str:
    """`text` safe to print: bytes of non-UTF-8 file names (kept by Python as surrogates) as \\x escapes."""
    return os.fspath(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass
class DirSummary:
    """What one translation did with every file it was given."""

    translated: int = 0
    skipped: int = 0  # output already there: a resumed run (never counted for an input that failed)
    failed: list[str] = field(default_factory=list)  # one message per input not translated, naming it
    ignored: list[str] = field(default_factory=list)  # "path: reason" of files left alone (not images, hidden)
    clipped: list[str] = field(default_factory=list)  # inputs whose float values were clipped to [0, 1]
    videos: list[str] = field(default_factory=list)  # one line per translated video (frames/s, flicker)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every image was translated or already done (what exit status 0 means)."""
        return not self.failed

    def line(self) -> str:
        rate = self.translated / self.seconds if self.seconds else 0.0
        text = f"translated {self.translated}, skipped {self.skipped} (already done), failed {len(self.failed)}"
        if self.ignored:
            text += f", ignored {len(self.ignored)} (not images or hidden)"
        unit = "files/s" if self.videos else "images/s"  # a video counts as one file (its frames/s: its own line)
        return text + f" in {self.seconds:.1f} s ({rate:.2f} {unit})"

    def details(self, limit: int = 10) -> list[str]:
        """Lines naming what the counts hide: the files left alone and the float images that were clipped."""
        lines = []
        if self.ignored:
            more = f" (and {len(self.ignored) - limit} more)" if len(self.ignored) > limit else ""
            lines.append(f"ignored {len(self.ignored)} file(s) that are not images or are hidden{more}:")
            lines += [f"  {entry}" for entry in self.ignored[:limit]]
        if self.clipped:
            lines.append(f"float values clipped to [0, 1] in {len(self.clipped)} file(s), first: {self.clipped[0]}")
        return lines + [f"video {line}" for line in self.videos]


@dataclass
class TreeScan:
    """Every entry under a folder, sorted into images to translate, inputs that fail, and files left alone."""

    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)  # by extension, or by content for other names
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)


_SPECIAL = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
            stat.S_ISBLK: "a block device"}


def scan_tree(root: Path, exclude: Path | None = None) -> TreeScan:
    """Walk `root` (following symbolic links to folders, never in a loop) and account for every entry.

    Images (by extension) and videos (by extension or first bytes) are listed;
    dangling symbolic links, link loops, unreadable folders and special
    files named like images (a FIFO would block a reader forever) fail with a reason; other files and
    hidden entries are ignored with a reason. Only regular files are opened, for their first 12 bytes.
    `exclude` (the output folder, when it lies inside `root`) is skipped.
    """
    scan = TreeScan()
    skip = _identity(exclude) if exclude is not None else None
    top = os.stat(root)
    pending = [(root, frozenset({(top.st_dev, top.st_ino)}))]  # a stack, not recursion: any depth is fine
    while pending:
        folder, ancestors = pending.pop()
        try:
            names = sorted(os.listdir(folder))
        except OSError as err:
            scan.failed.append((folder, f"cannot list this folder: {err.strerror or err}"))
            continue
        for name in names:
            path = folder / name
            if name.startswith("."):
                scan.ignored.append((path, "hidden"))
                continue
            try:
                st = os.stat(path)
            except OSError as err:
                scan.failed.append((path, _stat_problem(path, err)))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    scan.failed.append((path, f"symbolic link loop: leads back to {os.path.realpath(path)}"))
                elif key != skip:
                    pending.append((path, ancestors | {key}))
            elif stat.S_ISREG(st.st_mode) and is_video_file(path):
                scan.videos.append(path)
            elif not is_image_file(path):
                scan.ignored.append((path, "not an image or video (by its extension and first bytes)"))
            elif stat.S_ISREG(st.st_mode):
                scan.images.append(path)
            else:
                kind = next((k for test, k in _SPECIAL.items() if test(st.st_mode)), "a special file")
                scan.failed.append((path, f"not a regular file ({kind}); not opened"))
    scan.images.sort()
    scan.videos.sort()
    scan.failed.sort()
    scan.ignored.sort()
    return scan


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _stat_problem(path: Path, err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if err.errno == errno.ENOENT and path.is_symlink():
        return f"dangling symbolic link (points to {os.readlink(path)}, which does not exist)"
    return f"cannot read: {err.strerror or err}"


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


def file_in_the_way(path: Path) -> Path | None:
    """The existing file (not folder) among `path`'s parents that would stop it from being created, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


class _Failures:
    """Collects failed inputs into a summary: reported as they happen, raised at the first with `strict`."""

    def __init__(self, summary: DirSummary, strict: bool) -> None:
        self.summary, self.strict = summary, strict

    def __call__(self, message: str) -> None:
        message = shown(message)
        self.summary.failed.append(message)
        tqdm.write(f"error: {message}", file=sys.stderr)
        if self.strict:
            raise TranslateError(message)


def _clip_warner(summary: DirSummary) -> Callable[[str], None]:
    """Note each input whose float values were clipped; print a warning for the first one only."""
    lock = threading.Lock()

    def warn(message: str) -> None:
        with lock:
            summary.clipped.append(shown(message))
            first = len(summary.clipped) == 1
        if first:
            tqdm.write(f"warning: {shown(message)} (warned once; the summary counts the others)", file=sys.stderr)

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
                   strict: bool = False, video: VideoOptions | None = None) -> DirSummary:
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
                array = read_image(src, warn=_clip_warner(summary))
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
                   shard: tuple[int, int] | None = None, video: VideoOptions | None = None) -> DirSummary:
    """Translate a file or a whole tree into `dst`, mirroring relative paths and names.

    Every file is accounted for: translated, skipped (its output exists: a killed run resumes; `overwrite`
    redoes it), failed with a reason (unreadable, not a regular file, a dangling or looping link, an output
    that cannot be written; `strict` raises TranslateError at the first), or ignored (not an image, hidden).
    Outputs are written atomically and only under `dst`; inputs are never modified. `dst` inside `src` is
    refused unless `allow_inside_input`, and `dst` equal to `src` always.
    `shard=(rank, world)` translates only every world-th image of the sorted list, from the rank-th (the share
    of one of several processes; fixed before finished outputs are skipped, so it never depends on what is
    already done); the failed and ignored entries of the walk are reported by rank 0 alone.
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
    if shard is not None:
        images, videos = images[shard[0]::shard[1]], videos[shard[0]::shard[1]]
        if shard[0] != 0:
            scan.ignored, scan.failed = [], []
    summary.ignored = [f"{shown(path)}: {reason}" for path, reason in scan.ignored]
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
                read = lambda job: read_image(job[0], warn=clip_warn)  # noqa: E731
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


def check_writable(folder: Path) -> None:
    """Create `folder` and a file in it (removed at once), or raise OSError saying OUTPUT cannot be used: a
    read-only or unusable output is found before the work, not after every image was translated."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".i2i-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OSError(f"cannot write in the output folder {shown(folder)}: {err.strerror or err}; nothing was "
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
            clashes.append(f"the output of {shown(source)} would be {shown(out)}, which is the input "
                           f"{shown(inputs[where])}")
        elif src_dir is not None and where.is_relative_to(src_dir) and not inside_allowed:
            clashes.append(f"the output of {shown(source)} would be {shown(out)}, inside the input folder "
                           f"{shown(src_dir)}")
    if clashes:
        more = f"\n  (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise ValueError("refusing to write outputs onto the inputs; nothing was written:\n  " +
                         "\n  ".join(clashes[:5]) + more + "\nchoose an output folder outside the input folder")


def is_video_file(path: Path) -> bool:
    """A video by its extension, or by its first bytes (an MP4 named .jpg is a video, not a broken image)."""
    if not os.path.isfile(path):  # never open a FIFO or a device, whatever its name
        return False
    return path.suffix.lower() in VIDEO_EXTENSIONS or is_video(path)


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


def merge_summaries(summaries: list[DirSummary]) -> DirSummary:
    """One summary for several processes' shares of a tree (they ran side by side: the longest time counts)."""
    return DirSummary(translated=sum(s.translated for s in summaries), skipped=sum(s.skipped for s in summaries),
                      failed=[f for s in summaries for f in s.failed],
                      ignored=[f for s in summaries for f in s.ignored],
                      clipped=[f for s in summaries for f in s.clipped],
                      videos=[f for s in summaries for f in s.videos],
                      seconds=max(s.seconds for s in summaries))
