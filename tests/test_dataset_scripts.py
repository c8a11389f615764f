"""Tests for scripts/download_dataset.sh (against a local file:// host) and scripts/combine_ab.py."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOWNLOAD = REPO / "scripts" / "download_dataset.sh"
COMBINE = REPO / "scripts" / "combine_ab.py"

needs_curl = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("bash") is None,
    reason="download_dataset.sh needs bash and curl, not found on PATH",
)


def _jpeg_bytes(seed: int, size: tuple[int, int] = (16, 8)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _make_tar_gz(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _make_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def _run_download(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(DOWNLOAD), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A folder served as --base-url file://HOST with facades.tar.gz (pix2pix) and horse2zebra.zip."""
    root = tmp_path / "host"
    root.mkdir()
    _make_tar_gz(
        root / "facades.tar.gz",
        {
            "facades/train/1.jpg": _jpeg_bytes(1),
            "facades/train/2.jpg": _jpeg_bytes(2),
            "facades/val/1.jpg": _jpeg_bytes(3),
        },
    )
    _make_zip(
        root / "horse2zebra.zip",
        {
            "horse2zebra/trainA/h1.jpg": _jpeg_bytes(4),
            "horse2zebra/trainB/z1.jpg": _jpeg_bytes(5),
            "horse2zebra/testA/h2.jpg": _jpeg_bytes(6),
            "horse2zebra/testB/z2.jpg": _jpeg_bytes(7),
        },
    )
    return root


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- download_dataset.sh


@needs_curl
def test_download_pix2pix_tar_gz(host: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "facades"
    result = _run_download("--base-url", f"file://{host}", "facades", str(dest))
    assert result.returncode == 0, result.stderr
    assert (dest / "train" / "1.jpg").read_bytes() == _jpeg_bytes(1)
    assert (dest / "train" / "2.jpg").read_bytes() == _jpeg_bytes(2)
    assert (dest / "val" / "1.jpg").read_bytes() == _jpeg_bytes(3)
    assert not (dest / "facades").exists()  # the archive's top-level folder was unwrapped
    assert "3 images" in result.stdout and str(dest) in result.stdout
    assert _leftovers(dest.parent) == []  # temp archive and unpack folder are gone


@needs_curl
def test_download_cyclegan_zip(host: Path, tmp_path: Path) -> None:
    dest = tmp_path / "h2z"
    result = _run_download("--base-url", f"file://{host}/", "horse2zebra", str(dest))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert (dest / "trainB" / "z1.jpg").read_bytes() == _jpeg_bytes(5)
    assert "4 images" in result.stdout
    assert _leftovers(tmp_path) == []


@needs_curl
def test_download_existing_dest_is_a_noop_and_force_replaces(host: Path, tmp_path: Path) -> None:
    dest = tmp_path / "facades"
    dest.mkdir()
    (dest / "stale.jpg").write_bytes(b"old")
    result = _run_download("--base-url", f"file://{host}", "facades", str(dest))
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["stale.jpg"]

    result = _run_download("--force", "--base-url", f"file://{host}", "facades", str(dest))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["train", "val"]  # old content replaced, not merged
    assert _leftovers(tmp_path) == []


@needs_curl
def test_download_into_existing_empty_dest(host: Path, tmp_path: Path) -> None:
    dest = tmp_path / "facades"
    dest.mkdir()
    result = _run_download("--base-url", f"file://{host}", "facades", str(dest))
    assert result.returncode == 0, result.stderr
    assert (dest / "train" / "1.jpg").is_file()


@needs_curl
def test_download_failure_cleans_up_and_keeps_old_data(host: Path, tmp_path: Path) -> None:
    (host / "maps.tar.gz").write_bytes(b"this is not a tarball")
    dest = tmp_path / "maps"
    result = _run_download("--base-url", f"file://{host}", "maps", str(dest))
    assert result.returncode == 1
    assert "cannot unpack" in result.stderr
    assert not dest.exists()
    assert _leftovers(tmp_path) == []

    dest = tmp_path / "night2day"  # archive missing on the host: curl fails; --force keeps the old folder
    dest.mkdir()
    (dest / "keep.jpg").write_bytes(b"keep")
    result = _run_download("--force", "--base-url", f"file://{host}", "night2day", str(dest))
    assert result.returncode == 1
    assert "download failed" in result.stderr
    assert (dest / "keep.jpg").read_bytes() == b"keep"
    assert _leftovers(tmp_path) == []


def test_download_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    result = _run_download("nosuchset", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "unknown dataset 'nosuchset'" in result.stderr
    for name in ("facades", "edges2handbags", "horse2zebra", "iphone2dslr_flower"):
        assert name in result.stderr
    assert not (tmp_path / "x").exists()


def test_download_refuses_cityscapes(tmp_path: Path) -> None:
    result = _run_download("cityscapes", str(tmp_path / "cityscapes"))
    assert result.returncode == 2
    assert "cityscapes-dataset.com" in result.stderr
    assert not (tmp_path / "cityscapes").exists()


def test_download_help() -> None:
    result = _run_download("--help")
    assert result.returncode == 0
    assert "--base-url" in result.stdout and "--force" in result.stdout


# ---------------------------------------------------------------- combine_ab.py


@pytest.fixture(scope="module")
def combine_ab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("combine_ab", COMBINE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _rand(seed: int, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    high = 65536 if dtype == np.uint16 else 256
    return np.random.default_rng(seed).integers(0, high, shape, dtype=dtype)


@pytest.fixture
def run(combine_ab: ModuleType) -> Callable[..., int]:
    def _run(*args: str | Path) -> int:
        return int(combine_ab.main([str(a) for a in args]))

    return _run


def test_combine_then_split_round_trip(tmp_path: Path, run: Callable[..., int]) -> None:
    originals = {
        "train/1.png": (_rand(1, (12, 10, 3)), _rand(2, (12, 10, 3))),
        "train/2.png": (_rand(3, (8, 6, 3)), _rand(4, (8, 6, 3))),
        "val/3.png": (_rand(5, (9, 7), np.uint16), _rand(6, (9, 7), np.uint16)),  # 16-bit gray
    }
    for rel, (a, b) in originals.items():
        _save(tmp_path / "A" / rel, a)
        _save(tmp_path / "B" / rel, b)

    assert run("combine", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", tmp_path / "AB") == 0
    for rel, (a, b) in originals.items():
        np.testing.assert_array_equal(_load(tmp_path / "AB" / rel), np.concatenate([a, b], axis=1))

    out_a, out_b = tmp_path / "A2", tmp_path / "B2"
    assert run("split", "--in", tmp_path / "AB", "--out-a", out_a, "--out-b", out_b) == 0
    for rel, (a, b) in originals.items():
        np.testing.assert_array_equal(_load(out_a / rel), a)
        np.testing.assert_array_equal(_load(out_b / rel), b)


def test_combine_reports_unmatched_and_strict_fails(
    tmp_path: Path, run: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    for stem in ("1", "2", "3"):
        _save(tmp_path / "A" / "train" / f"{stem}.jpg", _rand(int(stem), (8, 8, 3)))
    for stem in ("2", "3", "4"):
        _save(tmp_path / "B" / "train" / f"{stem}.png", _rand(int(stem), (8, 8, 3)))

    assert run("combine", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", tmp_path / "AB") == 0
    err = capsys.readouterr().err
    assert "1 files in A without a match in B" in err and str(Path("train") / "1.jpg") in err
    assert "1 files in B without a match in A" in err and str(Path("train") / "4.png") in err
    # stems pair across extensions; the output keeps A's extension
    assert sorted(p.name for p in (tmp_path / "AB" / "train").iterdir()) == ["2.jpg", "3.jpg"]

    args = ("combine", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", tmp_path / "AB2", "--strict")
    assert run(*args) == 1


def test_combine_lists_at_most_five_unmatched(
    tmp_path: Path, run: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(8):
        _save(tmp_path / "A" / f"{i}.png", _rand(i, (4, 4, 3)))
    (tmp_path / "B").mkdir()
    assert run("combine", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", tmp_path / "AB") == 0
    err = capsys.readouterr().err
    assert "8 files in A without a match in B" in err
    assert "... and 3 more" in err
    assert sum(line.startswith("  ") and line.endswith(".png") for line in err.splitlines()) == 5


def test_combine_resizes_b_and_unifies_channels(
    tmp_path: Path, run: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    a = _rand(1, (8, 10, 3))
    b = np.full((4, 5), 77, dtype=np.uint8)  # smaller and grayscale
    _save(tmp_path / "A" / "x.png", a)
    _save(tmp_path / "B" / "x.png", b)
    assert run("combine", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", tmp_path / "AB") == 0
    assert "resized B to A's size" in capsys.readouterr().err
    ab = _load(tmp_path / "AB" / "x.png")
    assert ab.shape == (8, 20, 3)
    np.testing.assert_array_equal(ab[:, :10], a)
    assert (ab[:, 10:] == 77).all()  # gray repeated into all three channels


def test_split_odd_width_is_an_error_but_others_are_split(
    tmp_path: Path, run: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    _save(tmp_path / "AB" / "odd.png", _rand(1, (4, 7, 3)))
    _save(tmp_path / "AB" / "even.png", _rand(2, (4, 8, 3)))
    rc = run("split", "--in", tmp_path / "AB", "--out-a", tmp_path / "A", "--out-b", tmp_path / "B")
    assert rc == 1
    err = capsys.readouterr().err
    assert "odd.png" in err and "odd width 7" in err
    assert (tmp_path / "A" / "even.png").is_file() and (tmp_path / "B" / "even.png").is_file()
    assert not (tmp_path / "A" / "odd.png").exists()


def test_refuses_to_write_inside_input(tmp_path: Path, run: Callable[..., int]) -> None:
    _save(tmp_path / "A" / "1.png", _rand(1, (4, 4, 3)))
    _save(tmp_path / "B" / "1.png", _rand(2, (4, 4, 3)))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    with pytest.raises(SystemExit) as exc:
        run("combine", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", tmp_path / "A" / "out")
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        run("split", "--in", tmp_path / "A", "--out-a", tmp_path / "A", "--out-b", tmp_path / "X")
    assert exc.value.code == 2
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_existing_outputs_kept_unless_overwrite(tmp_path: Path, run: Callable[..., int]) -> None:
    _save(tmp_path / "A" / "1.png", _rand(1, (4, 4, 3)))
    _save(tmp_path / "B" / "1.png", _rand(2, (4, 4, 3)))
    target = tmp_path / "AB" / "1.png"
    target.parent.mkdir()
    target.write_bytes(b"precious")
    args = ("combine", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", tmp_path / "AB")
    assert run(*args) == 0
    assert target.read_bytes() == b"precious"
    assert run(*args, "--overwrite") == 0
    assert _load(target).shape == (4, 8, 3)


def test_unreadable_image_is_reported_and_skipped(
    tmp_path: Path, run: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    _save(tmp_path / "A" / "good.png", _rand(1, (4, 4, 3)))
    _save(tmp_path / "B" / "good.png", _rand(2, (4, 4, 3)))
    (tmp_path / "A" / "bad.png").write_bytes(b"not an image")
    _save(tmp_path / "B" / "bad.png", _rand(3, (4, 4, 3)))
    assert run("combine", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", tmp_path / "AB") == 1
    assert str(tmp_path / "A" / "bad.png") in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "AB").iterdir()) == ["good.png"]


def test_cli_runs_as_a_script(tmp_path: Path) -> None:
    _save(tmp_path / "AB" / "1.png", _rand(1, (4, 8, 3)))
    cmd = [sys.executable, str(COMBINE), "split", "--in", str(tmp_path / "AB")]
    cmd += ["--out-a", str(tmp_path / "A"), "--out-b", str(tmp_path / "B")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "split 1 images" in result.stdout
    assert _load(tmp_path / "A" / "1.png").shape == (4, 4, 3)
