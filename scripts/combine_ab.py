#!/usr/bin/env python3
"""Combine folders A and B into side-by-side A|B pix2pix images, or split A|B images back into A and B."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

try:
    from i2i.data.io import IMAGE_EXTENSIONS, ImageReadError, list_images, read_image, write_image
except ImportError:  # a checkout without `pip install -e .`: use the package next to this script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from i2i.data.io import IMAGE_EXTENSIONS, ImageReadError, list_images, read_image, write_image

SIXTEEN_BIT_EXTS = (".png", ".tif", ".tiff")
MAX_LISTED = 5


class UsageError(Exception):
    """Bad folders or options: reported as an error, exit status 2."""


def _info(msg: str) -> None:
    print(msg, file=sys.stderr)


def _warn(msg: str) -> None:
    _info(f"warning: {msg}")


def _error(msg: str) -> None:
    _info(f"error: {msg}")


def _normalize_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    ext = ext.lower()
    ext = ext if ext.startswith(".") else f".{ext}"
    if ext not in IMAGE_EXTENSIONS:
        raise UsageError(f"--ext {ext} is not an image extension; use one of {', '.join(IMAGE_EXTENSIONS)}")
    return ext


def _inside_any(path: Path, folders: Sequence[Path]) -> bool:
    """True when `path` (resolved, existing or not) is one of `folders` or lies below one (all resolved)."""
    resolved = path.resolve()
    return any(resolved == f or resolved.is_relative_to(f) for f in folders)


def _check_dirs(inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Inputs must be folders; no output may be an input, lie inside one, or nest inside another output."""
    for folder in inputs:
        if not folder.is_dir():
            raise UsageError(f"input folder {folder} does not exist or is not a folder")
    resolved_in = [p.resolve() for p in inputs]
    resolved_out = [p.resolve() for p in outputs]
    for out, out_r in zip(outputs, resolved_out, strict=True):
        for inp, inp_r in zip(inputs, resolved_in, strict=True):
            if out_r == inp_r or out_r.is_relative_to(inp_r):
                raise UsageError(f"output folder {out} is inside input folder {inp}; choose another output")
    for i, a in enumerate(resolved_out):
        for b in resolved_out[i + 1 :]:
            if a == b or a.is_relative_to(b) or b.is_relative_to(a):
                raise UsageError(f"output folders {a} and {b} must be separate")


def _index_by_stem(folder: Path) -> tuple[dict[Path, Path], dict[Path, list[Path]]]:
    """Map relative path without extension (e.g. train/1) to its file, plus keys shared by several files."""
    groups: dict[Path, list[Path]] = defaultdict(list)
    for path in list_images(folder, recursive=True):
        rel = path.relative_to(folder)
        groups[rel.parent / rel.stem].append(path)
    unique = {key: paths[0] for key, paths in groups.items() if len(paths) == 1}
    ambiguous = {key: paths for key, paths in groups.items() if len(paths) > 1}
    return unique, ambiguous


def _report_unmatched(label: str, paths: list[Path]) -> None:
    if not paths:
        return
    _info(f"{len(paths)} {label}:")
    for path in paths[:MAX_LISTED]:
        _info(f"  {path}")
    if len(paths) > MAX_LISTED:
        _info(f"  ... and {len(paths) - MAX_LISTED} more")


def _to_uint16(image: np.ndarray) -> np.ndarray:
    return image.astype(np.uint16) * 257 if image.dtype == np.uint8 else image


def _with_channels(image: np.ndarray, color: bool, alpha: bool) -> np.ndarray:
    """Convert HxWxC (C in 1..4) to gray/RGB with or without alpha; gray->RGB repeats, new alpha is opaque."""
    has_alpha = image.shape[2] in (2, 4)
    base = image[:, :, :-1] if has_alpha else image
    if color and base.shape[2] == 1:
        base = np.repeat(base, 3, axis=2)
    if not alpha:
        return base
    alpha_ch = image[:, :, -1:] if has_alpha else np.full_like(image[:, :, :1], np.iinfo(image.dtype).max)
    return np.concatenate([base, alpha_ch], axis=2)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    shrinking = height * width < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    out = cv2.resize(image, (width, height), interpolation=interp)
    return out[:, :, None] if out.ndim == 2 else out


def combine_pair(a: np.ndarray, b: np.ndarray, out_ext: str) -> tuple[np.ndarray, list[str]]:
    """Side-by-side A|B with B resized to A's size and both brought to a common dtype and channel layout."""
    notes: list[str] = []
    if a.shape[:2] != b.shape[:2]:
        notes.append(f"B is {b.shape[1]}x{b.shape[0]}, A is {a.shape[1]}x{a.shape[0]}; resized B to A's size")
        b = _resize(b, a.shape[0], a.shape[1])
    if a.dtype != b.dtype:
        a, b = _to_uint16(a), _to_uint16(b)
    color = max(a.shape[2], b.shape[2]) >= 3
    alpha = a.shape[2] in (2, 4) or b.shape[2] in (2, 4)
    ab = np.concatenate([_with_channels(a, color, alpha), _with_channels(b, color, alpha)], axis=1)
    if ab.dtype == np.uint16 and out_ext not in SIXTEEN_BIT_EXTS:
        notes.append(f"16-bit data reduced to 8 bits for {out_ext} output (use --ext png to keep 16 bits)")
        ab = (ab // 257).astype(np.uint8)
    return ab, notes


def cmd_combine(args: argparse.Namespace) -> int:
    dir_a, dir_b, out_dir = Path(args.a), Path(args.b), Path(args.out)
    _check_dirs([dir_a, dir_b], [out_dir])
    ext = _normalize_ext(args.ext)
    inputs = [dir_a.resolve(), dir_b.resolve()]
    index_a, ambiguous_a = _index_by_stem(dir_a)
    index_b, ambiguous_b = _index_by_stem(dir_b)
    failures = 0
    for group in [*ambiguous_a.values(), *ambiguous_b.values()]:
        names = ", ".join(p.name for p in group)
        _error(f"several files in {group[0].parent} share the stem {group[0].stem!r} ({names}); skipped")
        failures += 1
    ambiguous = ambiguous_a.keys() | ambiguous_b.keys()

    only_a = [index_a[k] for k in sorted(index_a.keys() - index_b.keys() - ambiguous)]
    only_b = [index_b[k] for k in sorted(index_b.keys() - index_a.keys() - ambiguous)]
    written = skipped = 0
    for key in sorted(index_a.keys() & index_b.keys()):
        path_a, path_b = index_a[key], index_b[key]
        target = out_dir / key.parent / (key.name + (ext or path_a.suffix.lower()))
        if _inside_any(target, inputs):
            _error(f"refusing to write {target}: it is inside an input folder")
            failures += 1
            continue
        if target.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            image_a, image_b = read_image(path_a), read_image(path_b)
        except ImageReadError as err:
            _error(f"{err}; skipped")
            failures += 1
            continue
        ab, notes = combine_pair(image_a, image_b, target.suffix.lower())
        for note in notes:
            _warn(f"{path_b}: {note}")
        try:
            write_image(target, ab)
        except (OSError, ValueError) as err:
            _error(f"cannot write {target}: {err}")
            failures += 1
            continue
        written += 1

    print(f"combined {written} pairs into {out_dir}")
    if skipped:
        print(f"{skipped} outputs already existed and were kept (use --overwrite to replace)")
    _report_unmatched(f"files in A without a match in B ({dir_b})", only_a)
    _report_unmatched(f"files in B without a match in A ({dir_a})", only_b)
    if failures:
        _info(f"{failures} files failed")
        return 1
    if args.strict and (only_a or only_b):
        return 1
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    in_dir, out_a, out_b = Path(args.in_dir), Path(args.out_a), Path(args.out_b)
    _check_dirs([in_dir], [out_a, out_b])
    ext = _normalize_ext(args.ext)
    inputs = [in_dir.resolve()]
    failures = written = skipped = 0
    claimed: dict[Path, Path] = {}
    for path in list_images(in_dir, recursive=True):
        rel = path.relative_to(in_dir)
        rel = rel.with_suffix(ext or rel.suffix.lower())
        if rel in claimed:
            _error(f"{path} and {claimed[rel]} would both be written as {rel}; skipped {path}")
            failures += 1
            continue
        claimed[rel] = path
        target_a, target_b = out_a / rel, out_b / rel
        if _inside_any(target_a, inputs) or _inside_any(target_b, inputs):
            _error(f"refusing to write {rel} under {out_a} / {out_b}: it is inside the input folder")
            failures += 1
            continue
        if not args.overwrite and target_a.exists() and target_b.exists():
            skipped += 1
            continue
        try:
            image = read_image(path)
        except ImageReadError as err:
            _error(f"{err}; skipped")
            failures += 1
            continue
        width = image.shape[1]
        if width % 2:
            _error(f"{path} has odd width {width}; cannot split into two equal halves, skipped")
            failures += 1
            continue
        half = width // 2
        try:
            for target, part in ((target_a, image[:, :half]), (target_b, image[:, half:])):
                if args.overwrite or not target.exists():
                    write_image(target, np.ascontiguousarray(part))
        except (OSError, ValueError) as err:
            _error(f"cannot write {target}: {err}")
            failures += 1
            continue
        written += 1

    print(f"split {written} images into {out_a} and {out_b}")
    if skipped:
        print(f"{skipped} outputs already existed and were kept (use --overwrite to replace)")
    if failures:
        _info(f"{failures} files failed")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="Exit status: 0 ok, 1 some files failed (or unmatched files with --strict), 2 usage error.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    combine = sub.add_parser(
        "combine",
        help="pair A and B files by relative path + stem and write A|B images",
        description="Pair files of A and B by relative path and stem (train/1.jpg <-> train/1.png) and "
        "write side-by-side A|B images under OUT, keeping sub-folders.",
    )
    combine.add_argument("--a", required=True, metavar="DIR_A", help="folder of A images")
    combine.add_argument("--b", required=True, metavar="DIR_B", help="folder of B images")
    combine.add_argument("--out", required=True, metavar="DIR", help="output folder (not inside A or B)")
    combine.add_argument("--ext", help="output extension, e.g. png (default: the A file's extension)")
    combine.add_argument("--strict", action="store_true", help="exit 1 when any file has no partner")
    combine.add_argument("--overwrite", action="store_true", help="replace existing output files")
    combine.set_defaults(func=cmd_combine)

    split = sub.add_parser(
        "split",
        help="split A|B images into left (A) and right (B) halves",
        description="Split every A|B image under IN into its left half (written under OUT_A) and right "
        "half (OUT_B), keeping sub-folders and file names.",
    )
    split.add_argument("--in", dest="in_dir", required=True, metavar="DIR", help="folder of A|B images")
    split.add_argument("--out-a", required=True, metavar="DIR", help="output folder for the left halves")
    split.add_argument("--out-b", required=True, metavar="DIR", help="output folder for the right halves")
    split.add_argument("--ext", help="output extension, e.g. png (default: the input file's extension)")
    split.add_argument("--overwrite", action="store_true", help="replace existing output files")
    split.set_defaults(func=cmd_split)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as err:
        parser.error(str(err))  # prints usage + message, exits 2
    return 2  # unreachable: parser.error exits


if __name__ == "__main__":
    sys.exit(main())
