"""Hostile-user checks: each test fails without the fix it names (issue 13, defects 1-14), plus the file-level
guarantees (disk full, outputs never leave OUTPUT, INPUT never modified). Bad files are built here, never committed.
Process-level guarantees (Ctrl-C, kill -9) are in test_interrupts.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import i2i.checkpoint.weights
import i2i.translation.tree
from helpers import cli, same_weights, tiny_config, write_pairs
from i2i.checkpoint.rundir import RunBusyError, RunDir
from i2i.checkpoint.weights import CheckpointError, latest_checkpoint
from i2i.data.io import read_image, write_image
from i2i.training.state import RunError
from i2i.training.trainer import Trainer, train
from i2i.translation.made_by import RECORD
from i2i.translation.translator import Translator

TINY = ["--generator", "unet_64", "--ngf", "4", "--ndf", "4", "--load-size", "72", "--crop-size", "64",
        "--workers", "0", "--no-progress", "--log-every", "1", "--deterministic", "--precision", "fp32"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reliability")
    return train(tiny_config(write_pairs(tmp / "pairs"), tmp / "runs", max_steps=2), progress=False).run_dir


@pytest.fixture(scope="module")
def translator(run_dir: Path) -> Translator:
    return Translator.from_pretrained(run_dir)


def photo(h: int = 40, w: int = 48, channels: int = 3, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    return np.random.default_rng(seed).integers(0, top + 1, (h, w, channels)).astype(dtype)


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (links not followed): its kind, mode, size, mtime and a content hash."""
    state = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = None
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read(1 << 26)).hexdigest()  # enough to see any change i2i could make
        link = os.readlink(path) if path.is_symlink() else None
        state[os.fsdecode(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size,
                                                      st.st_mtime_ns, digest, link)
    return state


# -- 1: one training per run directory ------------------------------------------------------------------------

def test_a_run_in_use_is_refused_at_once_naming_the_process(paired_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    holder = RunDir(runs / "r")
    with holder.lock():
        before = sorted(p.name for p in holder.path.iterdir())
        result = cli("train", "pix2pix", "--data", paired_root, "--runs-dir", runs, "--name", "r", *TINY,
                     "--max-steps", "2")
        assert result.exit_code == 1
        assert "in use" in result.output and f"process {os.getpid()}" in result.output
        assert sorted(p.name for p in holder.path.iterdir()) == before  # nothing written: no config, no metrics
        with pytest.raises(RunBusyError), holder.lock():  # a second lock in the same process is refused too
            pass
        cfg = tiny_config(paired_root, runs, name="r", max_steps=2)
        with pytest.raises(RunBusyError, match="in use"):
            Trainer(cfg, progress=False)
    assert train(tiny_config(paired_root, runs, name="r", max_steps=2), progress=False).steps == 2  # released


def test_a_run_started_meanwhile_is_not_overwritten(paired_root: Path, tmp_path: Path) -> None:
    """Both checks run again once fit() holds the lock: a run that began after this Trainer was built wins."""
    runs = tmp_path / "runs"
    late = Trainer(tiny_config(paired_root, runs, name="r", max_steps=2), progress=False)
    first = train(tiny_config(paired_root, runs, name="r", max_steps=2), progress=False)
    with pytest.raises(RunError, match="already holds a run"):
        late.fit()
    assert latest_checkpoint(runs / "r") == first.checkpoint


# -- 2: exit codes ------------------------------------------------------------------------------------------

def test_disk_full_while_translating_exits_3(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in"
    for i in range(4):
        write_image(src / f"{i}.png", photo(seed=i))

    def full(path: Path, array: np.ndarray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(i2i.translation.tree, "write_image", full)
    result = cli("translate", run_dir, src, tmp_path / "out", "--no-progress")
    assert result.exit_code == 3, result.output
    assert "failed 4" in result.output and "No space left" in result.output
    single = cli("translate", run_dir, src / "0.png", tmp_path / "one.png")
    assert single.exit_code == 3 and "No space left" in single.output


def test_exit_0_only_when_everything_was_done(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_image(src / "a.png", photo())
    assert cli("translate", run_dir, src, tmp_path / "out", "--no-progress").exit_code == 0
    again = cli("translate", run_dir, src, tmp_path / "out", "--no-progress")  # already done: still success
    assert again.exit_code == 0 and "skipped 1" in again.output
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert cli("translate", run_dir, src, tmp_path / "out", "--no-progress").exit_code == 3
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "notes.txt").write_text("hello")
    nothing = cli("translate", run_dir, only_text, tmp_path / "o2", "--no-progress")
    assert nothing.exit_code == 1 and "nothing to translate" in nothing.output and "notes.txt" in nothing.output


def test_eval_exits_3_when_inputs_failed(run_dir: Path, tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "data", n=3)
    (root / "train").rename(root / "val")
    (root / "val" / "bad.png").write_bytes(b"GIF89a not really")
    result = cli("eval", run_dir, "--data", root, "--no-fid", "--json", tmp_path / "scores.json")
    assert result.exit_code == 3, result.output
    assert "bad.png" in result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["n"] == 3 and len(scores["failed"]) == 1


# -- 3, 7: corrupt, foreign or crafted checkpoint files --------------------------------------------------------

def bad_weights(kind: str, good: bytes) -> bytes:
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "random":
        return np.random.default_rng(0).bytes(4096)
    if kind == "empty":
        return b""
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "foreign_pt"])
def test_corrupt_weights_give_one_clear_message(run_dir: Path, tmp_path: Path, kind: str) -> None:
    weights = tmp_path / "G.safetensors"
    if kind == "foreign_pt":  # a .pt from another project
        weights = tmp_path / "model.pt"
        torch.save({"state_dict": {"conv.weight": torch.zeros(3, 3)}}, weights)
    else:
        weights.write_bytes(bad_weights(kind, (latest_checkpoint(run_dir) / "G.safetensors").read_bytes()))
    src = tmp_path / "x.png"
    write_image(src, photo())
    for args in (["translate", weights, src, tmp_path / "o.png"],
                 ["export", weights, tmp_path / "g.pt", "--format", "torchscript"]):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert str(weights) in result.output and "not a readable i2i weights file" in result.output
        assert "Traceback" not in result.output and "SafetensorError" not in result.output
    with pytest.raises(CheckpointError, match=weights.name):
        Translator.from_pretrained(weights)


def test_eval_names_a_corrupt_weights_file(run_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    good = (latest_checkpoint(run_dir) / "G.safetensors").read_bytes()
    (ckpt / "G.safetensors").write_bytes(good[:1000])
    root = write_pairs(tmp_path / "data", n=2)
    result = cli("eval", ckpt, "--data", root, "--split", "train", "--no-fid")
    assert result.exit_code == 1 and "G.safetensors" in result.output and "not a readable" in result.output


def two_checkpoints(paired_root: Path, runs: Path) -> Path:
    """A run with checkpoints at steps 2 and 4 (the newest)."""
    return train(tiny_config(paired_root, runs, name="r", max_steps=4, save_every=2), progress=False).run_dir


def test_resume_skips_a_corrupt_checkpoint_and_continues_exactly(paired_root: Path, tmp_path: Path,
                                                                 messages: Callable[[], str]) -> None:
    runs = tmp_path / "runs"
    straight = train(tiny_config(paired_root, runs, name="straight", max_steps=6), progress=False)
    run = two_checkpoints(paired_root, runs)
    newest = run / "ckpt" / "step_000004" / "G.safetensors"
    newest.write_bytes(newest.read_bytes()[:500])  # truncated by a full disk or a bad copy
    resumed = train(tiny_config(paired_root, runs, name="r", max_steps=6), resume=True, progress=False)
    err = messages()
    assert "skipping checkpoint step_000004" in err and "G.safetensors" in err and "resuming from step_000002" in err
    assert same_weights(straight.checkpoint, resumed.checkpoint)  # continued from step 2 as if never interrupted


class Payload:
    """Unpickling this would run a command (it must never be executed)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_in_plain_words(paired_root: Path, tmp_path: Path) -> None:
    runs, marker = tmp_path / "runs", tmp_path / "pwned"
    run = two_checkpoints(paired_root, runs)
    torch.save({"step": 4, "evil": Payload(marker)}, run / "ckpt" / "step_000004" / "state.pt")
    result = cli("train", "pix2pix", "--data", paired_root, "--runs-dir", runs, "--name", "r", *TINY,
                 "--max-steps", "5", "--resume", "--sample-every", "2", "--save-every", "2")
    assert result.exit_code == 0, result.output
    assert "not a checkpoint i2i wrote" in result.output and "will not be loaded" in result.output
    assert "weights_only" not in result.output and "UnpicklingError" not in result.output
    assert "resuming from step_000002" in result.output and "done: 5 steps" in result.output
    assert not marker.exists()


def test_resume_with_no_loadable_checkpoint_says_so(paired_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = two_checkpoints(paired_root, runs)
    for state in (run / "ckpt").glob("step_*/state.pt"):
        state.write_bytes(b"PK\x03\x04 not a zip")
    result = cli("train", "pix2pix", "--data", paired_root, "--runs-dir", runs, "--name", "r", *TINY,
                 "--max-steps", "6", "--resume")
    assert result.exit_code == 1 and "no checkpoint of" in result.output and "step_000002" in result.output


# -- 4, 10: the Python API refuses what it cannot translate faithfully ---------------------------------------

@pytest.mark.parametrize("value, error, words", [
    (np.zeros((0, 5, 3), np.uint8), ValueError, ["empty array", "(0, 5, 3)", "HxW"]),
    (np.zeros(100, np.uint8), ValueError, ["(100)", "HxWxC"]),
    (np.zeros((2, 16, 16, 3), np.uint8), ValueError, ["(2, 16, 16, 3)", "list of arrays"]),
    (np.zeros((16, 16, 5), np.uint8), ValueError, ["5 channels", "C = 1"]),
    (np.zeros((3, 80, 80), np.uint8), ValueError, ["(3, 80, 80)", "transpose(1, 2, 0)"]),
    (np.ones((8, 8, 3), bool), TypeError, ["bool", "uint8"]),
    (np.ones((8, 8, 3), np.int8), TypeError, ["int8", "astype"]),
    (np.full((8, 8, 3), 200, np.int64), TypeError, ["int64", "uint16"]),
    (np.full((8, 8, 3), 200.0), ValueError, ["[200, 200]", "value_range"]),
    (np.full((8, 8, 3), np.nan, np.float32), ValueError, ["NaN"]),
    (np.full((8, 8, 3), np.inf, np.float32), ValueError, ["infinite"]),
    (torch.full((3, 8, 8), 7, dtype=torch.int64), TypeError, ["int64", "floating-point"]),
    (torch.full((3, 8, 8), float("nan")), ValueError, ["NaN"]),
    (torch.full((3, 8, 8), 5.0), ValueError, ["[5, 5]", "tensor_range"]),
    (torch.zeros(8, 8, 3), ValueError, ["(8, 8, 3)", "permute"]),
    (torch.zeros(0, 3, 8, 8), ValueError, ["empty"]),
    (torch.zeros(8, 8), ValueError, ["(8, 8)", "CxHxW"]),
])
def test_api_refuses_what_it_cannot_translate(translator: Translator, value: object, error: type,
                                              words: list[str]) -> None:
    with pytest.raises(error) as info:
        translator(value)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_api_float_arrays_in_a_stated_range_come_back_in_it(translator: Translator) -> None:
    image = photo(32, 40)
    as_uint8 = translator(image).astype(np.float64)
    in_255 = translator(image.astype(np.float64), value_range=(0, 255))
    assert in_255.dtype == np.float64 and in_255.shape == image.shape
    assert np.abs(in_255 - as_uint8).max() <= 1.0  # the same translation, in the caller's range
    unit = translator(image.astype(np.float32) / 255)
    assert unit.dtype == np.float32 and unit.min() >= 0 and unit.max() <= 1
    with pytest.raises(ValueError, match="outside the expected range"):
        translator(image.astype(np.float64) / 255 * 2 - 1)  # [-1, 1] arrays need value_range=(-1, 1)
    np.testing.assert_allclose(translator(image.astype(np.float64) / 255 * 2 - 1, value_range=(-1, 1)),
                               unit * 2 - 1, atol=2e-3)
    with pytest.raises(ValueError, match="value_range applies to float arrays"):
        translator(image, value_range=(0, 255))


# -- 5: bad option combinations, from the command line ----------------------------------------------------

def test_crop_larger_than_load_fails_before_anything_is_written(paired_root: Path, tmp_path: Path) -> None:
    result = cli("train", "pix2pix", "--data", paired_root, "--runs-dir", tmp_path / "runs", *TINY,
                 "--load-size", "64", "--crop-size", "72")
    assert result.exit_code == 2 and "crop" in result.output.lower() and "72" in result.output
    assert not (tmp_path / "runs").exists()


# -- 6: an output path below a file ----------------------------------------------------------------------

def test_output_below_a_file_is_a_clear_error(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jpg"
    write_image(src, photo())
    result = cli("translate", run_dir, src, src / "out.jpg")
    assert result.exit_code == 1 and f"{src} is a file, not a folder" in result.output
    folder = cli("translate", run_dir, tmp_path, tmp_path / "in.jpg" / "sub", "--no-progress")
    assert folder.exit_code == 1 and "is a file, not a folder" in folder.output
    (tmp_path / "tree").mkdir()
    write_image(tmp_path / "tree" / "sub" / "a.png", photo())
    write_image(tmp_path / "tree" / "b.png", photo())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("a file where a folder should be")
    mixed = cli("translate", run_dir, tmp_path / "tree", tmp_path / "out", "--no-progress")
    assert mixed.exit_code == 3 and "translated 1" in mixed.output and "is a file" in mixed.output


# -- 8: long names -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", ["x" * 240, "y" * 251, "é" * 125])  # 244, 255 and 254 bytes with ".png"
def test_names_at_the_length_limit_are_written(translator: Translator, tmp_path: Path, stem: str) -> None:
    src = tmp_path / "in" / f"{stem}.png"
    write_image(src, photo())  # the temp name must fit as well
    summary = translator.translate_dir(tmp_path / "in", tmp_path / "out", progress=False)
    assert summary.translated == 1 and summary.ok, summary.failed
    assert read_image(tmp_path / "out" / src.name).shape == (40, 48, 3)
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == sorted([src.name, RECORD])  # no temp file left, only the output and its checkpoint record


# -- 9: multi-frame images ------------------------------------------------------------------------------------

def frames(n: int = 3) -> list[Image.Image]:
    return [Image.fromarray(photo(24, 32, seed=i)) for i in range(n)]


def test_animated_and_multi_page_images_are_refused_with_a_reason(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    first, *rest = frames()
    first.save(src / "anim.gif", save_all=True, append_images=rest)
    first.save(src / "anim.png", save_all=True, append_images=rest)  # APNG
    first.save(src / "pages.tif", save_all=True, append_images=rest)
    first.save(src / "still.gif")
    result = cli("translate", run_dir, src, tmp_path / "out", "--no-progress")
    assert result.exit_code == 3, result.output
    assert "translated 1" in result.output and "failed 3" in result.output
    for name in ("anim.gif", "anim.png", "pages.tif"):
        assert f"{name}: it holds 3 frames" in result.output
        assert not (tmp_path / "out" / name).exists()
    assert read_image(tmp_path / "out" / "still.gif").shape == (24, 32, 3)
    single = cli("translate", run_dir, src / "anim.gif", tmp_path / "one.png")
    assert single.exit_code == 3 and "3 frames" in single.output and not (tmp_path / "one.png").exists()


# -- 11: output folder = input folder ------------------------------------------------------------------------

def test_output_equal_to_input_says_what_happened(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "dir"
    write_image(src / "file.jpg", photo())
    before = tree_state(src)
    one = cli("translate", run_dir, src / "file.jpg", src)
    assert one.exit_code == 1 and "would be the input itself" in one.output and "already done" not in one.output
    both = cli("translate", run_dir, src, src, "--allow-output-inside-input")
    assert both.exit_code == 1 and "the output folder is the input folder" in both.output
    assert tree_state(src) == before


# -- 12: permissions -------------------------------------------------------------------------------------------

def test_every_file_of_a_run_honours_the_umask(paired_root: Path, tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        run = train(tiny_config(paired_root, tmp_path / "runs", max_steps=2), progress=False).run_dir
    finally:
        os.umask(old)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files) and any(p.name == "state.pt" for p in files)
    modes = {p.relative_to(run).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o664)}, modes


# -- 13: float images ---------------------------------------------------------------------------------------------

def test_float_tiffs_are_read_as_unit_range_and_clipping_is_reported_once(
        translator: Translator, tmp_path: Path, messages: Callable[[], str]) -> None:
    import cv2

    src = tmp_path / "in"
    src.mkdir()
    ramp = np.linspace(-1, 3, 24 * 32, dtype=np.float32).reshape(24, 32)
    Image.fromarray(ramp, mode="F").save(src / "a_wide.tif")
    Image.fromarray(ramp * 2, mode="F").save(src / "b_wider.tif")
    Image.fromarray(np.clip(ramp, 0, 1), mode="F").save(src / "c_unit.tif")
    cv2.imwrite(str(src / "d_rgb.tif"), np.dstack([np.clip(ramp, 0, 1)] * 3))  # float RGB: PIL cannot open it
    summary = translator.translate_dir(src, tmp_path / "out", io_threads=1, progress=False)
    assert summary.translated == 4 and summary.ok
    assert len(summary.clipped) == 2 and "a_wide.tif" in summary.clipped[0] and "[-1, 3]" in summary.clipped[0]
    err = messages()
    assert err.count("clipped to [0, 1]") == 1 and "a_wide.tif" in err
    assert any("clipped to [0, 1] in 2 file(s)" in line for line in summary.details())
    np.testing.assert_array_equal(read_image(src / "c_unit.tif")[:, :, 0],
                                  (np.clip(ramp, 0, 1) * 65535).round().astype(np.uint16))
    assert read_image(tmp_path / "out" / "d_rgb.tif").dtype == np.uint16
    notes: list[str] = []
    read_image(src / "a_wide.tif", warn=notes.append)
    assert len(notes) == 1 and "a_wide.tif" in notes[0]


# -- 14 and the corpus: every file accounted for, nothing hangs, INPUT untouched, OUTPUT never left -------------

def make_hostile_tree(root: Path, outside: Path) -> dict[str, list[str]]:
    """Good images mixed with every kind of bad file; returns the names expected in each outcome."""
    good = photo(40, 48)
    root.mkdir(parents=True)
    write_image(root / "good.jpg", good)
    write_image(root / "sub" / "deep16.png", photo(32, 32, dtype=np.uint16))
    write_image(root / "gray.png", photo(30, 30, channels=1))
    Image.fromarray(good).quantize(8).save(root / "palette.png")
    Image.fromarray(good).convert("CMYK").save(root / "cmyk.jpg")
    (root / "jpeg_named.png").write_bytes((root / "good.jpg").read_bytes())  # wrong extension, readable
    (root / "x.jpg").mkdir()  # a folder named like an image: walked into
    write_image(root / "x.jpg" / "inner.png", good)
    write_image(root / os.fsdecode(b"caf\xe9 \xff.png"), good)  # a Latin-1 name: not UTF-8
    write_image(outside / "elsewhere.png", good)
    (root / "abs_link.png").symlink_to(outside / "elsewhere.png")  # absolute link to a file: read, mirrored here
    expected_ok = ["good.jpg", "deep16.png", "gray.png", "palette.png", "cmyk.jpg", "jpeg_named.png", "inner.png",
                   "caf", "abs_link.png"]

    (root / "zero.png").write_bytes(b"")
    (root / "truncated.jpg").write_bytes((root / "good.jpg").read_bytes()[:200])
    (root / "truncated.png").write_bytes((root / "palette.png").read_bytes()[:60])
    (root / "text.png").write_text("I am not a picture")
    bomb = Image.new("1", (1, 1))
    bomb.save(root / "bomb.png")
    data = bytearray((root / "bomb.png").read_bytes())
    data[16:24] = (200_000).to_bytes(4, "big") * 2  # IHDR claims 200000 x 200000 pixels (a decompression bomb)
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    (root / "bomb.png").write_bytes(bytes(data))
    os.mkfifo(root / "photo.png")  # open() would block forever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.jpg"))
    sock.close()
    (root / "dangling.png").symlink_to(root / "gone.png")
    (root / "self.png").symlink_to(root / "self.png")
    (root / "sub" / "up").symlink_to("..")  # a folder loop
    first, *rest = frames()
    first.save(root / "anim.gif", save_all=True, append_images=rest)
    (root / "device.png").symlink_to("/dev/zero")  # reading it would never end
    with open(root / "sparse.jpg", "wb") as f:
        f.truncate(20 * 2**30)  # 20 GiB of holes: reading it whole first would exhaust memory
    expected_failed = ["zero.png", "truncated.jpg", "truncated.png", "text.png", "bomb.png", "photo.png", "sock.jpg",
                       "dangling.png", "self.png", "up", "anim.gif", "device.png", "sparse.jpg"]

    (root / "README.txt").write_text("notes")
    (root / ".hidden.png").write_bytes(b"junk")
    expected_ignored = ["README.txt", ".hidden.png"]
    return {"ok": expected_ok, "failed": expected_failed, "ignored": expected_ignored}


def run_with_deadline(fn: Callable[[], Any], seconds: float = 120) -> Any:
    """Run fn() in a thread; fail instead of hanging (a FIFO opened for reading would block forever)."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:  # re-raised in the test's thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the translation hung"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_a_hostile_tree_is_fully_accounted_for(run_dir: Path, tmp_path: Path) -> None:
    src, dst, outside = tmp_path / "in", tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    expected = make_hostile_tree(src, outside)
    before, outside_before = tree_state(src), tree_state(outside)
    result = run_with_deadline(lambda: cli("translate", run_dir, src, dst, "--no-progress", "--format", "png"))
    out = result.output
    assert result.exit_code == 3, out
    assert f"translated {len(expected['ok'])}," in out and f"failed {len(expected['failed'])}" in out
    assert f"ignored {len(expected['ignored'])}" in out
    for name in expected["failed"] + expected["ignored"]:
        assert name in out, name
    assert "not a regular file (a FIFO)" in out and "dangling symbolic link" in out and "symbolic link loop" in out
    assert "a character device" in out and "decompression bomb" in out
    assert "caf\\xe9 \\xff.png" not in out  # a good file is not listed
    written = sorted(os.fsdecode(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file() and p.name != RECORD)
    assert len(written) == len(expected["ok"]) and "x.jpg/inner.png" in written
    assert (dst / os.fsdecode(b"caf\xe9 \xff.png")).is_file()  # the name's bytes are kept
    assert not (dst / "abs_link.png").is_symlink()
    assert tree_state(src) == before and tree_state(outside) == outside_before  # INPUT and elsewhere untouched
    again = run_with_deadline(lambda: cli("translate", run_dir, src, dst, "--no-progress", "--format", "png"))
    assert f"translated 0, skipped {len(expected['ok'])}" in again.output and again.exit_code == 3
    strict = run_with_deadline(lambda: cli("translate", run_dir, src, tmp_path / "o2", "--strict", "--no-progress"))
    assert strict.exit_code == 3 and "--strict" in strict.output


def test_outputs_never_leave_the_output_folder(translator: Translator, tmp_path: Path) -> None:
    src, dst, outside = tmp_path / "in", tmp_path / "out", tmp_path / "outside"
    for name in ("a..b.png", "sub/x..png", "esc/y.png", "ok/z.png"):
        write_image(src / name, photo())
    outside.mkdir()
    dst.mkdir()
    (dst / "esc").symlink_to(outside)  # an absolute link planted in OUTPUT
    summary = translator.translate_dir(src, dst, progress=False)
    assert summary.translated == 3 and len(summary.failed) == 1
    assert "esc/y.png" in summary.failed[0] and "leads outside the output folder" in summary.failed[0]
    assert list(outside.iterdir()) == []
    resolved = dst.resolve()
    for path in dst.rglob("*"):
        if path.is_file():
            assert path.resolve().is_relative_to(resolved)
    with pytest.raises(ValueError, match="inside the input"):
        translator.translate_dir(src, src / "out", progress=False)


def test_input_is_never_modified_even_with_output_inside_it(translator: Translator, tmp_path: Path) -> None:
    src = tmp_path / "in"
    for i in range(3):
        write_image(src / f"{i}.png", photo(seed=i))
    (src / "bad.png").write_bytes(b"nope")
    before = tree_state(src)
    for fmt in ("same", "png", "jpg"):
        translator.translate_dir(src, src / f"out_{fmt}", fmt=fmt, allow_inside_input=True, overwrite=True,
                                 progress=False)
    after = {k: v for k, v in tree_state(src).items() if not k.startswith("out_")}
    assert after == before


def test_unreadable_permissions_are_reported(translator: Translator, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod does not stop root from reading, so nothing is unreadable")
    src = tmp_path / "in"
    write_image(src / "locked.png", photo())
    (src / "locked.png").chmod(0)
    summary = translator.translate_dir(src, tmp_path / "out", progress=False)
    assert len(summary.failed) == 1 and "Permission denied" in summary.failed[0]


def test_a_fifo_given_directly_is_never_opened(run_dir: Path, translator: Translator, tmp_path: Path) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        run_with_deadline(lambda: read_image(fifo))
    with pytest.raises(OSError, match="a FIFO"):
        run_with_deadline(lambda: translator(fifo))
    result = run_with_deadline(lambda: cli("translate", run_dir, fifo, tmp_path / "out.png"))
    assert result.exit_code == 3 and "not a regular file (a FIFO)" in result.output


def test_eval_of_two_folders_names_an_unreadable_file(tmp_path: Path) -> None:
    for folder in ("outputs", "targets"):
        write_image(tmp_path / folder / "a.png", photo())
    (tmp_path / "outputs" / "b.png").write_bytes(b"")
    write_image(tmp_path / "targets" / "b.png", photo())
    result = cli("eval", "--outputs", tmp_path / "outputs", "--targets", tmp_path / "targets", "--no-fid")
    assert result.exit_code == 3 and "b.png" in result.output


def test_two_inputs_never_share_one_output(translator: Translator, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_image(src / "a.jpg", photo(seed=1))
    write_image(src / "a.png", photo(seed=2))
    summary = translator.translate_dir(src, tmp_path / "out", fmt="png", progress=False)
    assert summary.translated == 1 and len(summary.failed) == 1
    assert "a.png: its output" in summary.failed[0] and "already the output of" in summary.failed[0]
    again = translator.translate_dir(src, tmp_path / "out", fmt="png", progress=False)
    assert again.skipped == 1 and len(again.failed) == 1  # not counted as "already done"
    assert translator.translate_dir(src, tmp_path / "same", progress=False).translated == 2


def remove_chain(top: Path, depth: int) -> None:
    """Remove top/d/d/.../d (`depth` levels) and their files without recursion (shutil.rmtree would recurse)."""
    folders = [top.joinpath(*["d"] * n) for n in range(depth + 1)]
    for folder in reversed(folders):
        if folder.is_dir():
            for entry in folder.iterdir():
                if not entry.is_dir():
                    entry.unlink()
            folder.rmdir()


def test_any_depth_of_folders_is_walked_and_mirrored(translator: Translator, tmp_path: Path) -> None:
    depth = 1100  # deeper than Python's recursion limit
    folder = tmp_path / "in"
    folder.mkdir()
    for _ in range(depth):
        folder = folder / "d"
        folder.mkdir()
    try:
        write_image(folder / "deep.png", photo())
        summary = translator.translate_dir(tmp_path / "in", tmp_path / "out", progress=False)
        assert summary.translated == 1 and summary.ok
        assert (tmp_path / "out" / folder.relative_to(tmp_path / "in") / "deep.png").is_file()
    finally:  # pytest's own clean-up of old temp folders recurses
        remove_chain(tmp_path / "in", depth)
        remove_chain(tmp_path / "out", depth)


def test_a_damaged_config_json_is_named(paired_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = two_checkpoints(paired_root, runs)
    (run / "config.json").write_text('{"model": "pix2pix", ')
    result = cli("train", "pix2pix", "--data", paired_root, "--runs-dir", runs, "--name", "r", *TINY,
                 "--max-steps", "6", "--resume")
    assert result.exit_code == 1 and "config.json is damaged" in result.output
