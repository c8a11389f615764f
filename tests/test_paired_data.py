"""Tests for i2i.data.paired and i2i.data.sampling: layouts, direction, channels, errors, skipping, resumable order."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from i2i.config import DataConfig
from i2i.data.io import ImageReadError
from i2i.data.layout import DataError, detect_layout, match_pairs, split_folder
from i2i.data.paired import PairedDataset
from i2i.data.sampling import EpochSampler, Skipped, batch_size_of, collate_skipping
from i2i.data.transforms import paired_transform

A_RGB = (200, 30, 10)
B_RGB = (10, 100, 220)
S = 16  # side of one half


def _level(v: float) -> float:
    """A [0, 255] value as the dataset's [-1, 1] tensor value."""
    return v / 255.0 * 2.0 - 1.0


def _solid(rgb: tuple[int, int, int], h: int = S, w: int = S) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def _save(path: Path, array: np.ndarray, palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if palette:
        img = img.quantize(8)  # an adaptive palette holds the exact colours
        assert img.mode == "P"
    img.save(path)
    return path


def _side_by_side(folder: Path, n: int = 3, a: tuple = A_RGB, b: tuple = B_RGB) -> list[Path]:
    return [_save(folder / f"{i:02d}.png", np.concatenate([_solid(a), _solid(b)], axis=1)) for i in range(n)]


def _folders(folder: Path, stems_a: list[str], stems_b: list[str], ext_b: str = ".png") -> None:
    for s in stems_a:
        _save(folder / "A" / f"{s}.png", _solid(A_RGB))
    for s in stems_b:
        _save(folder / "B" / f"{s}{ext_b}", _solid(B_RGB))


def _assert_solid(t: torch.Tensor, rgb: tuple[int, ...], atol: float = 1e-6) -> None:
    assert t.shape[0] == len(rgb)
    for c, v in enumerate(rgb):
        torch.testing.assert_close(t[c], torch.full_like(t[c], _level(v)), atol=atol, rtol=0)


# ------------------------------------------------------------------------------------------------- layouts


def test_side_by_side_with_train_subfolder(tmp_path: Path) -> None:
    files = _side_by_side(tmp_path / "train", n=3)
    _side_by_side(tmp_path / "test", n=1)
    assert detect_layout(tmp_path / "train") == "side_by_side"
    ds = PairedDataset(tmp_path)
    assert ds.layout == "side_by_side" and ds.folder == tmp_path / "train"
    assert len(ds) == 3
    sample = ds[1]
    assert sample["path"] == str(files[1])
    assert sample["input"].shape == sample["target"].shape == (3, S, S)
    _assert_solid(sample["input"], A_RGB)
    _assert_solid(sample["target"], B_RGB)
    assert len(PairedDataset(tmp_path, split="test")) == 1


def test_side_by_side_without_split_folder_uses_root(tmp_path: Path) -> None:
    _side_by_side(tmp_path, n=2)
    assert split_folder(tmp_path, "train") == tmp_path
    ds = PairedDataset(tmp_path, split="train")
    assert ds.folder == tmp_path and len(ds) == 2


def test_folders_layout_and_detect(tmp_path: Path) -> None:
    _folders(tmp_path / "train", ["1", "2", "10"], ["1", "2", "10"])
    folder = tmp_path / "train"
    assert detect_layout(folder) == "folders"
    ds = PairedDataset(tmp_path)
    assert ds.layout == "folders" and len(ds) == 3
    assert [p[0].name for p in ds.items] == ["1.png", "10.png", "2.png"]  # sorted by stem, A and B agree
    assert all(a.stem == b.stem for a, b in ds.items)
    _assert_solid(ds[0]["input"], A_RGB)
    _assert_solid(ds[0]["target"], B_RGB)
    assert ds[0]["path"] == str(folder / "A" / "1.png")


def test_folders_match_by_stem_across_extensions(tmp_path: Path) -> None:
    _folders(tmp_path, ["1", "2"], ["1", "2"], ext_b=".jpg")
    pairs = match_pairs(tmp_path / "A", tmp_path / "B")
    assert [(a.name, b.name) for a, b in pairs] == [("1.png", "1.jpg"), ("2.png", "2.jpg")]
    ds = PairedDataset(tmp_path)
    _assert_solid(ds[1]["target"], B_RGB, atol=4 / 255)  # JPEG of a flat colour: within a few levels


def test_folders_match_recursively_by_relative_path(tmp_path: Path) -> None:
    for sub in ("day", "night"):
        _save(tmp_path / "A" / sub / "x.png", _solid(A_RGB))
        _save(tmp_path / "B" / sub / "x.png", _solid(B_RGB))
    pairs = match_pairs(tmp_path / "A", tmp_path / "B")
    assert [(a.parent.name, b.parent.name) for a, b in pairs] == [("day", "day"), ("night", "night")]


def test_explicit_layout_overrides_detection(tmp_path: Path) -> None:
    _folders(tmp_path, ["1"], ["1"])
    with pytest.raises(DataError, match="no images in"):
        PairedDataset(tmp_path, layout="side_by_side")  # the root itself holds no image files
    _side_by_side(tmp_path / "only_files", n=1)
    with pytest.raises(DataError, match=r"no images in .*only_files[/\\]A"):
        PairedDataset(tmp_path / "only_files", layout="folders")


def test_direction_swaps_input_and_target(tmp_path: Path) -> None:
    _side_by_side(tmp_path / "sbs", n=1)
    _folders(tmp_path / "fold", ["k"], ["k"])
    for root in (tmp_path / "sbs", tmp_path / "fold"):
        ab = PairedDataset(root, direction="AtoB")[0]
        ba = PairedDataset(root, direction="BtoA")[0]
        _assert_solid(ab["input"], A_RGB)
        _assert_solid(ab["target"], B_RGB)
        _assert_solid(ba["input"], B_RGB)
        _assert_solid(ba["target"], A_RGB)


def test_bad_layout_or_direction(tmp_path: Path) -> None:
    _side_by_side(tmp_path, n=1)
    with pytest.raises(DataError, match="side_by_side"):
        PairedDataset(tmp_path, layout="grid")
    with pytest.raises(DataError, match="AtoB"):
        PairedDataset(tmp_path, direction="AB")


# ------------------------------------------------------------------------------------------------ channels


def test_grayscale_file_to_three_channels(tmp_path: Path) -> None:
    gray = np.concatenate([np.full((S, S), 40, np.uint8), np.full((S, S), 220, np.uint8)], axis=1)
    _save(tmp_path / "g.png", gray)
    s = PairedDataset(tmp_path, in_channels=3, out_channels=1)[0]
    assert s["input"].shape == (3, S, S) and s["target"].shape == (1, S, S)
    _assert_solid(s["input"], (40, 40, 40))
    _assert_solid(s["target"], (220,))


def test_rgb_file_to_one_channel_uses_luma(tmp_path: Path) -> None:
    _side_by_side(tmp_path, n=1)
    s = PairedDataset(tmp_path, in_channels=1, out_channels=3)[0]
    luma = 0.299 * A_RGB[0] + 0.587 * A_RGB[1] + 0.114 * A_RGB[2]
    assert s["input"].shape == (1, S, S)
    _assert_solid(s["input"], (luma,), atol=1e-5)
    _assert_solid(s["target"], B_RGB)


def test_rgba_and_palette_files(tmp_path: Path) -> None:
    ab = np.concatenate([_solid(A_RGB), _solid(B_RGB)], axis=1)
    rgba = np.concatenate([ab, np.full((S, 2 * S, 1), 77, np.uint8)], axis=2)  # alpha is dropped, not blended
    _save(tmp_path / "rgba" / "x.png", rgba)
    _save(tmp_path / "pal" / "x.png", ab, palette=True)
    for kind in ("rgba", "pal"):
        s = PairedDataset(tmp_path / kind)[0]
        assert s["input"].shape == (3, S, S), kind
        _assert_solid(s["input"], A_RGB)
        _assert_solid(s["target"], B_RGB)


def test_sixteen_bit_png_is_scaled_by_65535(tmp_path: Path) -> None:
    gray16 = np.concatenate([np.full((S, S), 13107, np.uint16), np.full((S, S), 52428, np.uint16)], axis=1)
    _save(tmp_path / "g16" / "x.png", gray16)  # 0.2 and 0.8 of full scale
    rgb16 = np.zeros((S, 2 * S, 3), np.uint16)
    rgb16[:, :S] = (65535, 0, 32768)
    rgb16[:, S:] = (0, 13107, 65535)
    (tmp_path / "c16").mkdir()
    cv2.imwrite(str(tmp_path / "c16" / "x.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))

    s = PairedDataset(tmp_path / "g16", in_channels=1, out_channels=1)[0]
    torch.testing.assert_close(s["input"], torch.full((1, S, S), -0.6), atol=1e-5, rtol=0)
    torch.testing.assert_close(s["target"], torch.full((1, S, S), 0.6), atol=1e-5, rtol=0)
    c = PairedDataset(tmp_path / "c16")[0]
    expected_in = torch.tensor([1.0, -1.0, 32768 / 65535 * 2 - 1]).view(3, 1, 1).expand(3, S, S)
    expected_t = torch.tensor([-1.0, -0.6, 1.0]).view(3, 1, 1).expand(3, S, S)
    torch.testing.assert_close(c["input"], expected_in, atol=1e-5, rtol=0)
    torch.testing.assert_close(c["target"], expected_t, atol=1e-5, rtol=0)


# -------------------------------------------------------------------------------------------------- errors


def test_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=str(missing)):
        PairedDataset(missing)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as err:
        PairedDataset(tmp_path)
    assert str(tmp_path / "train") in str(err.value)
    assert isinstance(err.value, ValueError)


def test_a_without_b_lists_at_most_five(tmp_path: Path) -> None:
    stems = [f"{i:02d}" for i in range(10)]
    _folders(tmp_path, stems, stems[:3])
    with pytest.raises(DataError) as err:
        PairedDataset(tmp_path)
    msg = str(err.value)
    assert msg.startswith("7 A image(s)")
    assert str(tmp_path / "B") in msg  # where the partners were looked for
    listed = [s for s in stems[3:] if str(tmp_path / "A" / f"{s}.png") in msg]
    assert listed == stems[3:8]  # the first five missing, sorted
    assert "and 2 more" in msg
    for s in stems[:3]:
        assert f"{s}.png" not in msg


def test_a_without_b_few_missing_has_no_more_suffix(tmp_path: Path) -> None:
    _folders(tmp_path, ["a", "b", "c"], ["a"])
    with pytest.raises(DataError) as err:
        match_pairs(tmp_path / "A", tmp_path / "B")
    msg = str(err.value)
    assert str(tmp_path / "A" / "b.png") in msg and str(tmp_path / "A" / "c.png") in msg
    assert "more" not in msg


def test_b_without_a(tmp_path: Path) -> None:
    _folders(tmp_path, ["a"], ["a", "z"])
    with pytest.raises(DataError) as err:
        PairedDataset(tmp_path)
    msg = str(err.value)
    assert msg.startswith("1 B image(s)")
    assert str(tmp_path / "B" / "z.png") in msg and str(tmp_path / "A") in msg


def test_empty_a_or_b_folder(tmp_path: Path) -> None:
    _folders(tmp_path, [], ["a"])
    (tmp_path / "A").mkdir()
    with pytest.raises(DataError, match=r"no images in .*A"):
        PairedDataset(tmp_path)


# ------------------------------------------------------------------------------------ unreadable samples


def test_odd_width_is_skipped_or_raises(tmp_path: Path) -> None:
    _side_by_side(tmp_path, n=1)
    odd = _save(tmp_path / "odd.png", np.zeros((S, 2 * S + 1, 3), np.uint8))
    ds = PairedDataset(tmp_path)
    index = [p[0] for p in ds.items].index(odd)
    out = ds[index]
    assert isinstance(out, Skipped)
    assert out.path == str(odd)
    assert "odd width" in out.reason and str(2 * S + 1) in out.reason
    with pytest.raises(ImageReadError, match="odd width"):
        PairedDataset(tmp_path, strict=True)[index]
    assert not isinstance(ds[1 - index], Skipped)


def test_corrupt_file_is_skipped_or_raises(tmp_path: Path) -> None:
    _side_by_side(tmp_path, n=1)
    bad = tmp_path / "zz_bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    ds = PairedDataset(tmp_path)
    assert len(ds) == 2
    out = ds[1]
    assert isinstance(out, Skipped) and out.path == str(bad) and str(bad) in out.reason
    with pytest.raises(ImageReadError) as err:
        PairedDataset(tmp_path, strict=True)[1]
    assert str(bad) in str(err.value)


def test_folders_pair_with_different_sizes_is_skipped(tmp_path: Path) -> None:
    _save(tmp_path / "A" / "x.png", _solid(A_RGB, 16, 16))
    _save(tmp_path / "B" / "x.png", _solid(B_RGB, 16, 24))
    out = PairedDataset(tmp_path)[0]
    assert isinstance(out, Skipped) and "differ in size" in out.reason


def test_collate_skipping_drops_and_lists(tmp_path: Path) -> None:
    _side_by_side(tmp_path, n=3)
    ds = PairedDataset(tmp_path)
    samples = [ds[0], Skipped("/x/bad.png", "cannot read"), ds[2], Skipped("/x/odd.png", "odd width 33")]
    batch = collate_skipping(samples)
    assert batch["input"].shape == (2, 3, S, S) and batch["target"].shape == (2, 3, S, S)
    assert batch["path"] == [ds[0]["path"], ds[2]["path"]]
    assert batch["skipped"] == [samples[1], samples[3]]  # the Skipped records, in order
    assert batch_size_of(batch) == 2
    empty = collate_skipping([Skipped("/x/a.png", "r")])
    assert empty == {"skipped": [Skipped("/x/a.png", "r")]}
    assert batch_size_of(empty) == 0
    assert collate_skipping([ds[1]])["skipped"] == []


# ------------------------------------------------------------------------------------------------ sampler


def test_epoch_sampler_is_a_permutation_each_epoch() -> None:
    s = EpochSampler(37, seed=5)
    orders = []
    for epoch in range(3):
        s.set_epoch(epoch)
        items = list(s)
        assert len(items) == len(s) == 37
        indices = [i for i, _ in items]
        assert sorted(indices) == list(range(37))
        assert all(isinstance(i, int) and isinstance(seed, int) for i, seed in items)
        orders.append(indices)
    assert orders[0] != orders[1] != orders[2] and orders[0] != orders[2]
    assert orders[0] != list(range(37))


def test_epoch_sampler_is_reproducible_for_seed_and_epoch() -> None:
    a, b = EpochSampler(20, seed=1), EpochSampler(20, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice gives the same epoch
    c = EpochSampler(20, seed=2)
    c.set_epoch(4)
    assert list(c) != list(a)
    seeds = [seed for _, seed in a]
    assert len(set(seeds)) == 20  # each position gets its own augmentation seed


def test_epoch_sampler_resume_yields_the_tail() -> None:
    s = EpochSampler(25, seed=3)
    s.set_epoch(2)
    full = list(s)
    for k in (0, 1, 7, 24, 25):
        s.set_epoch(2, start=k)
        assert len(s) == 25 - k
        assert list(s) == full[k:]
    s.set_epoch(2, start=30)
    assert len(s) == 0 and list(s) == []


def test_epoch_sampler_without_shuffle() -> None:
    s = EpochSampler(6, seed=0, shuffle=False)
    s.set_epoch(3)
    assert [i for i, _ in s] == list(range(6))
    s.set_epoch(4)
    assert [i for i, _ in s] == list(range(6))


# ------------------------------------------------------------------------------------- seeded augmentation


def _textured(tmp_path: Path, n: int = 2, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        _save(tmp_path / f"{i}.png", np.concatenate([a, 255 - a], axis=1))
    return tmp_path


def test_dataset_keyed_with_seed_is_reproducible(tmp_path: Path) -> None:
    cfg = DataConfig(preprocess="crop", crop_size=24, flip=True)
    ds = PairedDataset(_textured(tmp_path), transform=paired_transform(cfg, train=True))
    first = ds[(1, 1234)]
    ds[(1, 99)]  # other draws in between do not matter
    again = ds[(1, 1234)]
    other_ds = PairedDataset(tmp_path, transform=paired_transform(cfg, train=True))
    for s in (again, other_ds[(1, 1234)]):
        assert torch.equal(s["input"], first["input"]) and torch.equal(s["target"], first["target"])
    assert first["input"].shape == (3, 24, 24)
    # B = 255 - A on every pixel: the crop/flip is shared (up to uint8 rounding of 1 - x)
    torch.testing.assert_close(first["target"], -first["input"], atol=1e-6, rtol=0)
    crops = {ds[(1, seed)]["input"].numpy().tobytes() for seed in range(8)}
    assert len(crops) > 1


def test_dataloader_with_sampler_and_skipping(tmp_path: Path) -> None:
    _textured(tmp_path, n=5)
    _save(tmp_path / "odd.png", np.zeros((8, 9, 3), np.uint8))
    cfg = DataConfig(preprocess="crop", crop_size=24)
    ds = PairedDataset(tmp_path, transform=paired_transform(cfg, train=True))
    sampler = EpochSampler(len(ds), seed=0)
    sampler.set_epoch(1)

    def run() -> tuple[list, list[torch.Tensor]]:
        skipped, inputs = [], []
        for batch in DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_skipping, num_workers=0):
            skipped += batch["skipped"]
            if batch_size_of(batch):
                inputs.append(batch["input"])
        return skipped, inputs

    skipped, inputs = run()
    assert len(skipped) == 1 and skipped[0].path == str(tmp_path / "odd.png") and "odd width" in skipped[0].reason
    assert sum(x.shape[0] for x in inputs) == 5
    skipped2, inputs2 = run()  # same epoch again: same order and same crops
    assert skipped2 == skipped
    assert all(torch.equal(x, y) for x, y in zip(inputs, inputs2, strict=True))


def test_duplicate_stems_in_a_folder_are_an_error_not_a_silent_drop(tmp_path: Path) -> None:
    for folder in ("A", "B"):
        (tmp_path / folder).mkdir()
    for name in ("A/1.png", "A/1.jpg", "B/1.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name)
    with pytest.raises(DataError, match=r"1\.jpg"):
        match_pairs(tmp_path / "A", tmp_path / "B")
