"""Tests for i2i.data.io: decoding every common image flavour, float conversion, atomic writes, listing."""

from __future__ import annotations

import os
import struct
import zlib
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from i2i.data import io as iio
from i2i.data.io import ImageReadError, list_images, read_image, to_float, write_image


def _blocky_rgb(h: int = 48, w: int = 80, block: int = 16, seed: int = 0) -> np.ndarray:
    """An asymmetric HxWx3 uint8 image of flat `block`-sized squares: JPEG noise stays small on it."""
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, (h // block, w // block, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(colors, block, axis=0), block, axis=1))


def _noise(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 1) -> np.ndarray:
    hi = 65536 if dtype == np.uint16 else 256
    return np.random.default_rng(seed).integers(0, hi, shape, dtype=dtype)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _dir_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------------- 8-bit reads


def test_read_rgb_png_exact(tmp_path: Path) -> None:
    rgb = _noise((17, 23, 3))
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (17, 23, 3)
    np.testing.assert_array_equal(out, rgb)
    assert out.flags.c_contiguous


def test_read_rgb_jpeg_close(tmp_path: Path) -> None:
    rgb = _blocky_rgb()
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95, subsampling=0)
    out = read_image(tmp_path / "a.jpg")
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 2.0


def test_read_accepts_str_path(tmp_path: Path) -> None:
    rgb = _noise((4, 5, 3))
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.png")), rgb)


def test_read_gray_l(tmp_path: Path) -> None:
    gray = _noise((9, 13))
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.dtype == np.uint8 and out.shape == (9, 13, 1)
    np.testing.assert_array_equal(out[:, :, 0], gray)


def _palette_image() -> Image.Image:
    rgb = _blocky_rgb(32, 48, block=8, seed=3)
    return Image.fromarray(rgb).quantize(colors=6)


def test_read_palette_without_transparency(tmp_path: Path) -> None:
    pal = _palette_image()
    pal.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.dtype == np.uint8 and out.shape == (32, 48, 3)
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("ext", [".png", ".gif"])
def test_read_palette_with_transparency(tmp_path: Path, ext: str) -> None:
    pal = _palette_image()
    indices = np.asarray(pal)
    clear = int(indices[0, 0])
    pal.save(tmp_path / f"p{ext}", transparency=clear)
    out = read_image(tmp_path / f"p{ext}")
    assert out.dtype == np.uint8 and out.shape == (32, 48, 4)
    np.testing.assert_array_equal(out[:, :, 3], np.where(indices == clear, 0, 255))
    opaque = indices != clear
    np.testing.assert_array_equal(out[:, :, :3][opaque], np.asarray(pal.convert("RGB"))[opaque])


def test_read_rgba(tmp_path: Path) -> None:
    rgba = _noise((10, 12, 4))
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (10, 12, 4)
    np.testing.assert_array_equal(out, rgba)


def test_read_la(tmp_path: Path) -> None:
    la = _noise((10, 12, 2))
    Image.fromarray(la, mode="LA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (10, 12, 2)
    np.testing.assert_array_equal(out, la)


def test_read_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    rgb = _blocky_rgb(seed=5)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
    out = read_image(tmp_path / "c.jpg")
    assert out.dtype == np.uint8 and out.shape == (48, 80, 3)
    assert np.abs(out.astype(int) - rgb).mean() < 3.0


def test_read_one_bit(tmp_path: Path) -> None:
    mask = _noise((11, 14)) > 127
    Image.fromarray(mask).save(tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "1"
    out = read_image(tmp_path / "m.png")
    assert out.dtype == np.uint8 and out.shape == (11, 14, 1)
    np.testing.assert_array_equal(out[:, :, 0], np.where(mask, 255, 0))


# -------------------------------------------------------------------------------------------- 16-bit reads


def test_read_16bit_gray_png_keeps_values_above_255(tmp_path: Path) -> None:
    gray = _noise((9, 7), np.uint16)
    gray[0, 0], gray[0, 1] = 65535, 256
    Image.fromarray(gray).save(tmp_path / "g16.png")  # PIL mode I;16
    assert (tmp_path / "g16.png").read_bytes()[24] == 16  # really a 16-bit PNG
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16 and out.shape == (9, 7, 1)
    np.testing.assert_array_equal(out[:, :, 0], gray)
    assert out.max() > 255


def test_read_16bit_rgb_png_written_by_cv2(tmp_path: Path) -> None:
    rgb = _noise((8, 10, 3), np.uint16)
    assert cv2.imwrite(str(tmp_path / "c16.png"), rgb[:, :, ::-1])  # OpenCV stores BGR
    out = read_image(tmp_path / "c16.png")
    assert out.dtype == np.uint16 and out.shape == (8, 10, 3)
    np.testing.assert_array_equal(out, rgb)  # exact values, RGB order


@pytest.mark.parametrize("shape", [(8, 10), (8, 10, 1), (8, 10, 3), (8, 10, 4)])
def test_write_read_16bit_png_roundtrip(tmp_path: Path, shape: tuple[int, ...]) -> None:
    arr = _noise(shape, np.uint16)
    write_image(tmp_path / "x.png", arr)
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, arr.reshape(8, 10, -1))


def test_16bit_file_read_by_pil_matches_write(tmp_path: Path) -> None:
    """What write_image stores as 16-bit RGB is what another reader (OpenCV) sees, in RGB order."""
    rgb = _noise((6, 5, 3), np.uint16)
    write_image(tmp_path / "x.png", rgb)
    bgr = cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bgr[:, :, ::-1], rgb)


def test_write_read_16bit_rgb_tiff_roundtrip(tmp_path: Path) -> None:
    rgb = _noise((8, 10, 3), np.uint16)
    write_image(tmp_path / "x.tif", rgb)  # write_image documents .tif as valid for 16 bits
    out = read_image(tmp_path / "x.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgb)


def test_write_read_16bit_gray_tiff_roundtrip(tmp_path: Path) -> None:
    gray = _noise((8, 10), np.uint16)
    write_image(tmp_path / "x.tif", gray)
    out = read_image(tmp_path / "x.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[:, :, 0], gray)


# -------------------------------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize(("orientation", "k"), [(6, -1), (8, 1)])  # 6: rotate 90° CW to view, 8: 90° CCW
def test_exif_orientation_applied(tmp_path: Path, orientation: int, k: int) -> None:
    stored = _blocky_rgb(48, 80)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=95, subsampling=0, exif=exif)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (80, 48, 3)
    expected = np.rot90(stored, k)
    assert np.abs(out.astype(int) - expected).mean() < 2.0
    wrong = np.rot90(stored, -k)  # the opposite rotation must not match: the test can tell them apart
    assert np.abs(out.astype(int) - wrong).mean() > 20.0


def test_exif_without_orientation_is_untouched(tmp_path: Path) -> None:
    stored = _blocky_rgb(48, 80)
    exif = Image.Exif()
    exif[0x010F] = "camera maker"
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=95, subsampling=0, exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (48, 80, 3)


def _jpeg_with_bad_exif(path: Path) -> None:
    """A JPEG whose EXIF has orientation 6 and an ImageLength tag (0x0101) holding a string."""

    def entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
        return struct.pack("<HHI", tag, kind, count) + value

    raw = (
        b"Exif\x00\x00II*\x00"
        + struct.pack("<IH", 8, 2)
        + entry(0x0101, 2, 4, b"cam\x00")
        + entry(0x0112, 3, 1, struct.pack("<HH", 6, 0))
        + struct.pack("<I", 0)
    )
    Image.fromarray(_blocky_rgb()).save(path, exif=raw)


def test_malformed_exif_raises_image_read_error(tmp_path: Path) -> None:
    path = tmp_path / "bad exif.jpg"
    _jpeg_with_bad_exif(path)
    try:
        read_image(path)  # decoding the pixels (ignoring the EXIF) would also be acceptable
    except ImageReadError as err:
        assert str(path) in str(err)


# ------------------------------------------------------------------------------------------- bad files


def _assert_read_error(path: Path) -> None:
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)


def test_random_bytes_raise(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_read_error(path)


def test_random_bytes_behind_16bit_png_header_raise(tmp_path: Path) -> None:
    """A PNG signature plus bit depth 16 sends the file to the OpenCV decoder; garbage must still fail."""
    header = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0))
    assert header[24] == 16
    path = tmp_path / "bad16.png"
    path.write_bytes(header + np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
    _assert_read_error(path)


def _encoded(kind: str) -> bytes:
    if kind == "png16":
        ok, enc = cv2.imencode(".png", _noise((32, 32, 3), np.uint16))
        assert ok
        return enc.tobytes()
    out = BytesIO()
    Image.fromarray(_noise((32, 32, 3))).save(out, format={"jpg": "JPEG", "png": "PNG"}[kind])
    return out.getvalue()


@pytest.mark.parametrize("kind", ["jpg", "png", "png16"])
def test_truncated_file_raises(tmp_path: Path, kind: str) -> None:
    data = _encoded(kind)
    path = tmp_path / f"half.{kind[:3]}"
    path.write_bytes(data[: len(data) // 2])
    _assert_read_error(path)


def test_text_file_with_image_extension_raises(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n" * 20)
    _assert_read_error(path)


def test_empty_and_missing_files_raise(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_read_error(tmp_path / "empty.png")
    _assert_read_error(tmp_path / "missing.png")


def test_huge_dimensions_in_header_raise_image_read_error(tmp_path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # 400 Mpx, no pixel data
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))
    _assert_read_error(path)


# ------------------------------------------------------------------------------------------------ to_float


def test_to_float_uint8_rgb_to_rgb() -> None:
    rgb = _noise((5, 6, 3))
    out = to_float(rgb, 3)
    assert out.dtype == np.float32 and out.shape == (5, 6, 3)
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-7)


def test_to_float_rgb_to_gray_uses_601_luma() -> None:
    rgb = _noise((5, 6, 3))
    out = to_float(rgb, 1)
    assert out.dtype == np.float32 and out.shape == (5, 6, 1)
    expected = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    np.testing.assert_allclose(out[:, :, 0], expected, atol=1e-6)
    pil_l = np.asarray(Image.fromarray(rgb).convert("L")) / 255.0  # same weights as PIL's "L"
    np.testing.assert_allclose(out[:, :, 0], pil_l, atol=1.0 / 255 + 1e-6)
    pure = np.zeros((1, 3, 3), np.uint8)
    pure[0, 0, 0] = pure[0, 1, 1] = pure[0, 2, 2] = 255
    np.testing.assert_allclose(to_float(pure, 1)[0, :, 0], [0.299, 0.587, 0.114], atol=1e-6)


def test_to_float_gray_to_rgb_repeats() -> None:
    gray = _noise((5, 6, 1))
    out = to_float(gray, 3)
    assert out.shape == (5, 6, 3)
    for c in range(3):
        np.testing.assert_allclose(out[:, :, c], gray[:, :, 0] / 255.0, atol=1e-7)
    np.testing.assert_allclose(to_float(gray, 1), gray / 255.0, atol=1e-7)


def test_to_float_drops_alpha() -> None:
    rgba = _noise((4, 4, 4))
    np.testing.assert_allclose(to_float(rgba, 3), rgba[:, :, :3] / 255.0, atol=1e-7)
    np.testing.assert_allclose(to_float(rgba, 1), to_float(np.ascontiguousarray(rgba[:, :, :3]), 1))
    la = _noise((4, 4, 2))
    np.testing.assert_allclose(to_float(la, 1), la[:, :, :1] / 255.0, atol=1e-7)
    np.testing.assert_allclose(to_float(la, 3), np.repeat(la[:, :, :1], 3, axis=2) / 255.0, atol=1e-7)


def test_to_float_uint16_scaled_to_unit_range() -> None:
    arr = np.array([[[0], [1], [32768], [65535]]], dtype=np.uint16)
    out = to_float(arr, 1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0], [0.0, 1 / 65535, 32768 / 65535, 1.0], rtol=1e-6)
    rgb16 = _noise((3, 3, 3), np.uint16)
    out3 = to_float(rgb16, 3)
    assert out3.min() >= 0.0 and out3.max() <= 1.0
    np.testing.assert_allclose(out3, rgb16 / 65535.0, rtol=1e-6)


def test_to_float_takes_any_band_count_it_is_given_and_refuses_a_mismatch() -> None:
    assert to_float(_noise((2, 2, 5)), 5).shape == (2, 2, 5)
    with pytest.raises(ImageReadError, match=r"has 3 channel.*takes 2"):
        to_float(_noise((2, 2, 3)), 2)
    with pytest.raises(ImageReadError, match=r"has 3 channel.*takes 4"):
        to_float(_noise((2, 2, 3)), 4)


# ------------------------------------------------------------------------------------------- write_image


@pytest.mark.parametrize("shape", [(7, 9), (7, 9, 1), (7, 9, 3), (7, 9, 4)])
def test_write_uint8_png_roundtrip_exact(tmp_path: Path, shape: tuple[int, ...]) -> None:
    arr = _noise(shape)
    write_image(tmp_path / "x.png", arr)
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr.reshape(7, 9, -1))


def test_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", _noise((8, 8, 3)))
    write_image(tmp_path / "a.png", _noise((8, 8, 3), seed=2))  # overwrite in place
    write_image(tmp_path / "b.jpg", _noise((8, 8, 3)))
    write_image(tmp_path / "c.png", _noise((8, 8), np.uint16))
    assert _dir_names(tmp_path) == ["a.png", "b.jpg", "c.png"]
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), _noise((8, 8, 3), seed=2))


def test_write_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "x.png"
    write_image(path, _noise((3, 3)))
    assert path.is_file()


def test_write_jpeg_drops_alpha(tmp_path: Path) -> None:
    rgba = np.dstack([_blocky_rgb(), np.full((48, 80), 7, np.uint8)])
    write_image(tmp_path / "x.jpg", rgba)
    out = read_image(tmp_path / "x.jpg")
    assert out.shape == (48, 80, 3)
    assert np.abs(out.astype(int) - rgba[:, :, :3]).mean() < 6.0  # 4:2:0 chroma blurs block edges


@pytest.mark.parametrize(
    ("name", "array", "error"),
    [
        ("x.jpg", _noise((6, 6, 3), np.uint16), ValueError),  # 16 bits need PNG/TIFF
        ("x.webp", _noise((6, 6), np.uint16), ValueError),
        ("x.xyz", _noise((6, 6, 3)), ValueError),  # unknown extension
        ("x.png", np.zeros((6, 6, 3), np.float32), TypeError),  # unsupported dtype
    ],
)
def test_failed_encode_leaves_existing_file_untouched(
    tmp_path: Path, name: str, array: np.ndarray, error: type[Exception]
) -> None:
    path = tmp_path / name
    path.write_bytes(b"previous content")
    with pytest.raises(error):
        write_image(path, array)
    assert path.read_bytes() == b"previous content"
    assert _dir_names(tmp_path) == [name]


def test_failed_write_removes_temp_and_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.png"
    write_image(path, _noise((5, 5, 3)))
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(iio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_image(path, _noise((5, 5, 3), seed=9))
    assert path.read_bytes() == before
    assert _dir_names(tmp_path) == ["x.png"]


def test_written_file_permissions_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "x.png", _noise((3, 3)))
    finally:
        os.umask(old)
    assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name", ["with space.png", "día noche ü 猫.png", "ünïcödé name.jpg"])
def test_unusual_file_names(tmp_path: Path, name: str) -> None:
    arr = _blocky_rgb(16, 16, block=8)
    path = tmp_path / "fold er ø" / name
    write_image(path, arr)
    out = read_image(path)
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - arr).mean() < 6.0  # exact for PNG, JPEG noise otherwise
    assert list_images(path.parent) == [path]
    bad = tmp_path / f"broken {name}"
    bad.write_bytes(b"nope")
    _assert_read_error(bad)


# ------------------------------------------------------------------------------------------- list_images


def test_list_images_filters_and_sorts(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.tif", "d.webp", "e.jpeg", ".hidden.png", "notes.txt", "model.pt", "png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()  # a folder with an image-like name is not a file
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "z.png").write_bytes(b"x")
    (tmp_path / "sub" / ".h.png").write_bytes(b"x")

    flat = list_images(tmp_path)
    assert [p.name for p in flat] == ["a.JPG", "b.png", "c.tif", "d.webp", "e.jpeg"]
    assert flat == sorted(flat)

    deep = list_images(str(tmp_path), recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in deep] == [
        "a.JPG",
        "b.png",
        "c.tif",
        "d.webp",
        "e.jpeg",
        "sub/z.png",
    ]


def test_list_images_empty_folder(tmp_path: Path) -> None:
    assert list_images(tmp_path) == []


def test_is_image_file() -> None:
    assert iio.is_image_file("x.PNG") and iio.is_image_file(Path("a/b.tiff"))
    assert not iio.is_image_file("x.gif.txt") and not iio.is_image_file("jpg")
