"""Folder trees to translate: walk them, name each output, check the outputs can be written, count what happened."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from i2i.data.io import ImageReadError, convert_depth, is_image_file, write_image
from i2i.translation.video import VIDEO_EXTENSIONS, is_video

Translate = Callable[[Iterable[tuple[np.ndarray, Any]]], Iterator[tuple[np.ndarray, Any]]]


class TranslateError(ImageReadError):
    """An input could not be translated (raised at the first one with `strict`); the message names it."""


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
    bands = 1 if array.ndim == 2 else array.shape[2]
    if (bands not in (1, 2, 3, 4) or array.dtype.kind == "f") and path.suffix.lower() not in (".tif", ".tiff", ".npy"):
        raise ValueError(f"a {bands}-band {array.dtype} output needs TIFF or .npy: pass --format tif (or npy)")
    if array.dtype == np.uint16 and path.suffix.lower() not in (".png", ".tif", ".tiff", ".npy"):
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


def merge_summaries(summaries: list[DirSummary]) -> DirSummary:
    """One summary for several processes' shares of a tree (they ran side by side: the longest time counts)."""
    return DirSummary(translated=sum(s.translated for s in summaries), skipped=sum(s.skipped for s in summaries),
                      failed=[f for s in summaries for f in s.failed],
                      ignored=[f for s in summaries for f in s.ignored],
                      clipped=[f for s in summaries for f in s.clipped],
                      videos=[f for s in summaries for f in s.videos],
                      seconds=max(s.seconds for s in summaries))


def is_video_file(path: Path) -> bool:
    """A video by its extension, or by its first bytes (an MP4 named .jpg is a video, not a broken image)."""
    if not os.path.isfile(path):  # never open a FIFO or a device, whatever its name
        return False
    return path.suffix.lower() in VIDEO_EXTENSIONS or is_video(path)
