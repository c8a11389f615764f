"""Where the images of a dataset are: split folders, paired layouts, unpaired domains; clear errors naming paths."""

from __future__ import annotations

from pathlib import Path

from i2i.data.io import list_images


class DataError(ValueError):
    """The data folder cannot be used as given; the message names the paths involved."""


def split_folder(root: str | Path, split: str) -> Path:
    """`root/split` when it exists, otherwise `root` itself (a folder holding one split)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    return root / split if (root / split).is_dir() else root


def resolve_split(root: Path, split: str, unpaired: bool) -> str:
    """`split` when the data has it, else its usual stand-in (val <-> test), else an error naming the paths."""
    def exists(name: str) -> bool:
        return (root / f"{name}A").is_dir() if unpaired else (root / name).is_dir()

    for candidate in (split, {"val": "test", "test": "val"}.get(split, split)):
        if exists(candidate):
            return candidate
    wanted = f"{root / split}A/ and {split}B/" if unpaired else str(root / split)
    raise FileNotFoundError(f"no {split} split in {root}: expected {wanted}")


def detect_layout(folder: Path) -> str:
    """'folders' when folder/A and folder/B exist, 'side_by_side' when the folder holds images."""
    if (folder / "A").is_dir() and (folder / "B").is_dir():
        return "folders"
    if list_images(folder):
        return "side_by_side"
    raise DataError(f"no paired images in {folder}: expected A|B image files, or A/ and B/ sub-folders "
                    "with matching file names")


def match_pairs(*folders: Path) -> list[tuple[Path, ...]]:
    """Match the files of `folders` by stem (recursively), one file from each per item: A/ and B/, and any extra
    input folders stacked into A (A_depth/ ...). Every stem needs its file in every folder."""
    def by_stem(folder: Path) -> dict[str, Path]:
        stems: dict[str, Path] = {}
        for p in list_images(folder, recursive=True):
            stem = str(p.relative_to(folder).with_suffix(""))
            if stem in stems:
                raise DataError(f"two images share the name {stem!r}: {stems[stem]} and {p}; pairs are matched "
                                "by name, so keep one of them")
            stems[stem] = p
        return stems

    found = [by_stem(folder) for folder in folders]
    for folder, stems in zip(folders, found, strict=True):
        if not stems:
            raise DataError(f"no images in {folder}")
    problems = []
    for folder, mine in zip(folders, found, strict=True):
        for other_folder, other in zip(folders, found, strict=True):
            missing = sorted(set(mine) - set(other))
            if other is mine or not missing:
                continue
            listed = ", ".join(str(mine[s]) for s in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            problems.append(f"{len(missing)} {folder.name} image(s) have no partner with the same name in "
                            f"{other_folder}: {listed}{more}")
    if problems:  # every side, so one look shows a renamed file's names
        raise DataError("; ".join(problems))
    return [tuple(stems[s] for stems in found) for s in sorted(found[0])]


def domain_folder(root: str | Path, split: str, domain: str) -> Path:
    """ROOT/{split}{domain}, checked to exist."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    folder = root / f"{split}{domain}"
    if not folder.is_dir():
        raise DataError(f"domain folder {folder} does not exist (unpaired data needs {split}A/ and {split}B/)")
    return folder
