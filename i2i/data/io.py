"""Image files in and out: read any common image into a numpy array, write atomically."""

from __future__ import annotations

import errno
import io
import logging
import os
import secrets
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
ARRAY_EXTENSIONS = (".npy", ".npz")  # HxW or HxWxC arrays of any band count (numpy's own format, never pickles)
READ_EXTENSIONS = IMAGE_EXTENSIONS + ARRAY_EXTENSIONS
# Formats whose files may hold several frames: such files are refused, never reduced to their first frame.
# (MPO, a JPEG with a second picture such as a depth map, is read as its primary picture like any JPEG.)
MULTI_FRAME_FORMATS = ("GIF", "PNG", "TIFF", "WEBP")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


log = logging.getLogger(__name__)


class ImageReadError(OSError):
    """An image file could not be decoded; the message names the path and the reason."""


def printable(text: object) -> str:
    """`text` safe to print: bytes of non-UTF-8 file names (kept by Python as surrogates) as \\x escapes instead of
    an encoding error."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has an image (or array) extension we can read."""
    return str(path).lower().endswith(READ_EXTENSIONS)


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in `folder`, sorted by path (hidden files skipped)."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern)
        if p.is_file() and is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_image(path: str | os.PathLike, warn: Callable[[str], None] | None = None, indices: bool = False,
               ) -> np.ndarray:
    """Decode an image or array file to an HxWxC array, EXIF orientation applied.

    Grayscale, palette, RGBA, CMYK and 16-bit files are all accepted, as uint8 or uint16; palette and CMYK
    images are converted to RGB(A). Float images with 1, 3 or 4 channels (32-bit TIFF) are read as values in
    [0, 1] and returned as 16-bit; values outside [0, 1] are clipped and `warn` is called with a message
    naming the file (default: a Python warning). Multi-band TIFFs (several bands that are not RGB(A)) and
    .npy/.npz arrays keep every band and their dtype: uint8/uint16 as they are, other numbers as float32
    (their value range is the dataset's --a-range/--b-range). `indices`: a palette image gives its palette
    indices (HxWx1, for label maps) instead of colours. Raises ImageReadError naming the path when the file
    cannot be decoded: not a regular
    file (a FIFO is never opened), not an image, truncated, too large, or an animated/multi-page image
    (several frames are refused rather than silently reduced to the first).
    """
    path = Path(path)
    clipped: list[str] = []
    try:
        kind = _not_regular(os.stat(path).st_mode)  # a socket cannot even be opened: say what it is
        if kind is None:
            # O_NONBLOCK: a FIFO put there since the stat opens at once instead of waiting for a writer
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
            with os.fdopen(fd, "rb") as f:
                kind = _not_regular(os.fstat(f.fileno()).st_mode)
                if kind is None and path.suffix.lower() in ARRAY_EXTENSIONS:
                    array = _decode_array(f, path.suffix.lower())
                elif kind is None:
                    array = _decode(f, clipped, indices)  # streamed: a huge or sparse file is never read whole first
        if kind is not None:
            raise ImageReadError(f"cannot read image {path}: not a regular file ({kind})")
    except ImageReadError:
        raise
    except UnidentifiedImageError as err:
        raise ImageReadError(f"cannot read image {path}: not a recognised image format") from err
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err
    except MultiFrameError as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err
    except Exception as err:  # a crafted file can make a decoder raise anything; it is still one bad input
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__
        raise ImageReadError(f"cannot read image {path}: {reason}") from err
    if clipped:
        message = f"{path}: float values in [{clipped[0]}] clipped to [0, 1] (float images are read as [0, 1])"
        if warn is None:
            warnings.warn(message, stacklevel=2)
        else:
            warn(message)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from an image file's header, or None when it is not a readable regular image file.

    Never opens a FIFO or device and never decodes pixels: for peeking at inputs before the real read."""
    try:
        if _not_regular(os.stat(path).st_mode) is not None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
            with os.fdopen(fd, "rb") as f:
                if _not_regular(os.fstat(f.fileno()).st_mode) is not None:
                    return None
                with Image.open(f) as img:
                    return img.size
    except Exception:  # any failure here is reported by the real read
        return None


class MultiFrameError(ValueError):
    """An animated or multi-page image (refused: i2i translates single pictures)."""


def _not_regular(mode: int) -> str | None:
    """What a file of st_mode `mode` is when it is not a regular file (FIFO, socket, device, folder)."""
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def _decode(f: BinaryIO, clipped: list[str], indices: bool = False) -> np.ndarray:
    head = f.read(32)
    f.seek(0)

    def everything() -> bytes:
        f.seek(0)
        return f.read()

    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        bands = _multiband_tiff(f)
        if bands is not None:
            return bands
        f.seek(0)
    try:
        img = Image.open(f)
    except UnidentifiedImageError:
        if head[:4] in (b"II*\0", b"MM\0*"):  # float RGB TIFFs: PIL cannot open them, OpenCV can
            return _unit_float_to_uint16(_decode_unchanged(everything()), clipped)
        raise
    with img:
        frames = getattr(img, "n_frames", 1)
        if img.format in MULTI_FRAME_FORMATS and frames > 1:
            raise MultiFrameError(f"it holds {frames} frames (an animated or multi-page {img.format}); i2i "
                                  "translates single pictures: extract the frames first")
        img.load()
        deep = _deep_color(head, everything, img.format) if img.mode in ("RGB", "RGBA") else None
        if deep is not None:  # PIL reduces 16-bit RGB(A) PNG/TIFF to 8 bits; OpenCV keeps all 16
            return _apply_orientation(deep, _orientation(img))
        if img.mode == "F":
            return _unit_float_to_uint16(np.asarray(_exif_transposed(img)), clipped)
        if indices and img.mode == "P":
            return np.asarray(_exif_transposed(img))
        return pil_to_array(_exif_transposed(img))


def _multiband_tiff(f: BinaryIO) -> np.ndarray | None:
    """The bands of a TIFF that is not a plain gray/RGB(A) picture (several gray bands, more than 4 samples, or
    numbers other than 8/16-bit unsigned), read with tifffile; None for the TIFFs PIL and OpenCV read."""
    import tifffile

    with tifffile.TiffFile(f, name="image.tif") as tif:
        series = tif.series
        if len(tif.pages) > 1 and (len(series) != 1 or len(series[0].shape) > 3):
            raise MultiFrameError(f"it holds {len(tif.pages)} frames (a multi-page TIFF); i2i translates single "
                                  "pictures: one file per picture, bands as samples (HxWxC)")
        page = tif.pages[0]
        samples, dtype = page.samplesperpixel, np.dtype(page.dtype)
        photometric = int(page.photometric)
        plain = (photometric in (0, 1) and samples == 1) or (photometric == 2 and samples in (3, 4)) or \
            photometric not in (0, 1, 2)  # palette, CMYK, YCbCr...: PIL converts them
        if plain and (dtype in (np.uint8, np.uint16) or (dtype.kind == "f" and samples in (1, 3, 4))):
            return None
        array = series[0].asarray() if len(tif.pages) > 1 else page.asarray()
    if array.ndim == 3 and page.planarconfig == 2 and array.shape[0] == samples:  # bands stored plane by plane
        array = np.moveaxis(array, 0, -1)
    return _as_bands(array)


def _decode_array(f: BinaryIO, ext: str) -> np.ndarray:
    """An .npy array, or the one array of an .npz file, as HxW[xC] (never unpickles: object arrays are refused)."""
    if ext == ".npz":
        with np.load(f, allow_pickle=False) as archive:
            names = list(archive.files)
            if len(names) != 1:
                raise ValueError(f"an .npz file for i2i holds one array; this one holds {len(names)}: "
                                 f"{', '.join(names[:5]) or 'none'}")
            array = archive[names[0]]
    else:
        array = np.load(f, allow_pickle=False)
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(f"an array of shape {array.shape} is not an HxW or HxWxC image")
    return _as_bands(array)


def _as_bands(array: np.ndarray) -> np.ndarray:
    """uint8/uint16 as they are, bool as uint8, any other number as float32 (NaN and infinity refused)."""
    if array.dtype in (np.uint8, np.uint16):
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"arrays of dtype {array.dtype} hold no pixel values")
    out = array.astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"it holds NaN or infinite values ({int((~np.isfinite(out)).sum())} of {out.size})")
    return out


def _unit_float_to_uint16(array: np.ndarray, clipped: list[str]) -> np.ndarray:
    """Integer arrays as they are; float arrays in [0, 1] as uint16 (NaN as 0), noting the range when clipped."""
    if array.dtype.kind != "f":
        return array
    finite = np.isfinite(array)
    values = array[finite]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not finite.all() or lo < 0.0 or hi > 1.0:
        clipped.append(f"{lo:.4g}, {hi:.4g}" + ("" if finite.all() else "; NaN/inf as 0/1"))
    finite = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(finite, 0.0, 1.0) * 65535).round().astype(np.uint16)


def _deep_color(head: bytes, everything: Callable[[], bytes], fmt: str | None) -> np.ndarray | None:
    """The pixels of a 16-bit-per-channel colour PNG/TIFF decoded by OpenCV, None for any other file
    (PNG: the IHDR bit depth tells; TIFF: OpenCV's decoding does)."""
    if fmt == "PNG" and head[:8] == _PNG_SIGNATURE and len(head) > 24 and head[24] == 16:
        return _decode_unchanged(everything())
    if fmt == "TIFF":
        array = _decode_unchanged(everything())
        return array if array.dtype == np.uint16 else None
    return None


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF: treat as unrotated rather than failing the image
        return 1


def _exif_transposed(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF (bad tag types): keep the pixels as stored
        return img


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxW[xC] array, as ImageOps.exif_transpose does."""
    ops = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return ops[orientation](array) if orientation in ops else array


def _decode_unchanged(data: bytes) -> np.ndarray:
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError("corrupt image data")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    return array


def pil_to_array(img: Image.Image) -> np.ndarray:
    """A decoded PIL image as an HxW[xC] uint8/uint16 array (palette/CMYK converted to RGB[A])."""
    if img.mode in _SIXTEEN_BIT_MODES:
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
    if img.mode == "F":
        return _unit_float_to_uint16(np.asarray(img), [])
    if img.mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode in ("P", "PA"):
        has_alpha = "transparency" in img.info or img.mode == "PA"
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    return np.asarray(img.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, ...


def to_float(array: np.ndarray, channels: int, ranges: list[tuple[float, float]] | None = None,
             source: object = "the image") -> np.ndarray:
    """Convert an HxWxC array to float32 in [0, 1] with exactly `channels` channels.

    `ranges`: the raw values each band maps to [0, 1], one (lo, hi) for every band or one per band; by default
    the dtype's (uint8 0..255, uint16 0..65535, float 0..1). Values outside are clipped, with a warning naming
    `source`. A picture with another channel count is adapted where that is unambiguous: alpha is dropped, RGB
    to gray uses ITU-R 601 luma (as PIL's "L"), gray to RGB repeats the channel; any other mismatch raises
    ImageReadError naming `source` and both counts.
    """
    bands = array.shape[2]
    adaptable = channels in (1, 3) and bands in (1, 2, 3, 4)
    if bands != channels and not adaptable:
        raise ImageReadError(f"{source} has {bands} channel(s); the model takes {channels}")
    x = _unit(array, ranges, source)
    if bands != channels:
        if bands in (2, 4):  # drop alpha
            x = x[:, :, :-1]
        if channels == 1 and x.shape[2] == 3:
            x = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
        elif channels == 3 and x.shape[2] == 1:
            x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x)


def _unit(array: np.ndarray, ranges: list[tuple[float, float]] | None, source: object) -> np.ndarray:
    """`array` scaled band by band from its value range to [0, 1] (see to_float)."""
    bands = array.shape[2]
    if ranges is None:
        if array.dtype in (np.uint8, np.uint16):  # always within range: no check needed
            return array.astype(np.float32) / (65535.0 if array.dtype == np.uint16 else 255.0)
        ranges = [(0.0, 1.0)]
    if len(ranges) not in (1, bands):
        raise ImageReadError(f"{source} has {bands} band(s) but {len(ranges)} value ranges were given (give one "
                             "LO:HI for every band, or one per band)")
    lo = np.array([r[0] for r in ranges], dtype=np.float32)
    span = np.array([r[1] - r[0] for r in ranges], dtype=np.float32)
    x = (array.astype(np.float32) - lo) / span
    low, high = float(x.min()), float(x.max())
    if low < -1e-4 or high > 1 + 1e-4:
        raw_lo, raw_hi = float(array.min()), float(array.max())
        log.warning("%s: values [%.6g, %.6g] lie outside the value range %s and are clipped (set --a-range/"
                    "--b-range)", printable(source), raw_lo, raw_hi,
                    ",".join(f"{a:g}:{b:g}" for a, b in ranges))
    return np.clip(x, 0.0, 1.0)


def stack_parts(parts: list[np.ndarray], ranges: list[tuple[float, float]] | None = None,
                source: object = "the image") -> np.ndarray:
    """Several arrays of one picture (RGB, a depth band...) as one HxWxN float32 array in [0, 1], in order: each
    part scaled by its own dtype's range, or by `ranges` (one for every band, or one per band of the stack)."""
    bands = [p.shape[2] for p in parts]
    if ranges is not None and len(ranges) == sum(bands):
        edges = np.cumsum([0, *bands])
        per_part = [ranges[edges[i] : edges[i + 1]] for i in range(len(parts))]
    else:
        per_part = [ranges] * len(parts)
    return np.concatenate([_unit(p, r, source) for p, r in zip(parts, per_part, strict=True)], axis=2)


def preview(array: np.ndarray) -> np.ndarray:
    """Something to look at: a 1- to 4-band uint8/uint16 array as it is; any other array's first three bands
    (or its first) as uint8, stretched from its own min..max."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] <= 4 and array.dtype in (np.uint8, np.uint16):
        return array
    x = array[:, :, :3] if array.shape[2] >= 3 else array[:, :, :1]
    x = x.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    return np.round((x - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)


def from_unit(x: np.ndarray, dtype: np.dtype, ranges: list[tuple[float, float]] | None = None) -> np.ndarray:
    """The inverse of to_float's scaling: HxWxC floats in [0, 1] -> `dtype` values in `ranges` (default: the
    dtype's), rounded for integer dtypes."""
    dtype = np.dtype(dtype)
    if ranges is None:
        ranges = [(0.0, 65535.0 if dtype == np.uint16 else 255.0 if dtype == np.uint8 else 1.0)]
    lo = np.array([r[0] for r in ranges], dtype=np.float64)
    span = np.array([r[1] - r[0] for r in ranges], dtype=np.float64)
    values = np.clip(x, 0.0, 1.0).astype(np.float64) * span + lo
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def write_image(path: str | os.PathLike, array: np.ndarray, quality: int = 95) -> None:
    """Write an HxW or HxWxC array atomically: a temp file in the same folder, then rename.

    The format follows the extension; 16-bit arrays need PNG or TIFF. TIFF and .npy also take any band count
    and float32 (what `read_image` gives back for multi-band files). A reader never sees a
    half-written file, and a crash leaves any earlier file at `path` untouched.
    """
    path = Path(path)
    make_parent(path)
    ext = path.suffix.lower()
    if ext in (".npy", ".tif", ".tiff") and (ext == ".npy" or _needs_tifffile(array)):
        atomic_write_bytes(path, _array_bytes(array, ext))
        return
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint16:
        if array.ndim == 3 and array.shape[2] not in (3, 4):
            raise ValueError(f"16-bit images need 1, 3 or 4 channels, got {array.shape[2]} for {path}")
        if ext not in (".png", ".tif", ".tiff"):
            raise ValueError(f"16-bit images need a .png or .tif path, got {path}")
        bgr = array
        if array.ndim == 3:
            code = cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
            bgr = cv2.cvtColor(array, code)
        ok, buf = cv2.imencode(ext, bgr)
        if not ok:
            raise OSError(f"cannot encode {path}")
        payload = buf.tobytes()
    elif array.dtype == np.uint8:
        img = Image.fromarray(array)
        out = io.BytesIO()
        fmt = Image.registered_extensions().get(ext)
        if fmt is None:
            raise ValueError(f"unknown image extension for {path}")
        if fmt == "JPEG":
            img = img.convert("RGB") if img.mode not in ("L", "RGB") else img
            img.save(out, format=fmt, quality=quality)
        elif fmt == "PNG":
            # zlib level 1: on photos within ~3 % of level 6's size, and ~4x faster to write (measured on
            # facades photos: 22 vs 91 ms each), which matters when encoding shares the cores with the model
            img.save(out, format=fmt, compress_level=1)
        else:
            img.save(out, format=fmt)
        payload = out.getvalue()
    else:
        raise TypeError(f"write_image needs uint8 or uint16, got {array.dtype}")
    atomic_write_bytes(path, payload)


def _needs_tifffile(array: np.ndarray) -> bool:
    """Arrays the ordinary image writers cannot hold: a band count other than 1, 3, 4, or numbers other than
    uint8/uint16."""
    bands = 1 if array.ndim == 2 else array.shape[2]
    return bands not in (1, 3, 4) or array.dtype not in (np.uint8, np.uint16)


def _array_bytes(array: np.ndarray, ext: str) -> bytes:
    out = io.BytesIO()
    if ext == ".npy":
        np.save(out, np.ascontiguousarray(array), allow_pickle=False)
    else:
        import tifffile

        tifffile.imwrite(out, np.ascontiguousarray(array), photometric="minisblack",
                         planarconfig="contig" if array.ndim == 3 else None, compression="zlib")
    return out.getvalue()


def make_parent(path: Path) -> None:
    """Create the folder that will hold `path` (at any depth: no recursion); a clear NotADirectoryError when
    a file is in the way."""
    missing = []
    folder = path.parent
    while not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            what = "a file" if folder.exists() else "a dangling symbolic link"
            raise NotADirectoryError(errno.ENOTDIR, f"cannot create the folder for {path}: {folder} is {what}, "
                                     "not a folder")
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # made meanwhile by another writer
            if not folder.is_dir():
                raise


def temp_name(path: Path) -> Path:
    """A hidden, unique temporary name beside `path` that fits wherever `path`'s own name fits.

    The name keeps as much of the original as the folder's name limit leaves room for (in bytes: a
    240-character name can already be at the limit), so a leftover file still says what it was.
    """
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    tag = f".{secrets.token_hex(4)}.tmp"
    room = max(limit - 1 - len(tag), 0)
    stem = os.fsdecode(os.fsencode(path.name)[:room]) if room else ""
    while len(os.fsencode(f".{stem}{tag}")) > limit:  # a multi-byte character cut in half: drop it
        stem = stem[:-1]
    return path.with_name(f".{stem}{tag}")


def umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, which would race
    with threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # not Linux: the only way left to read it
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permissions a new file gets here (0o666 less the umask): what every file i2i writes gets."""
    return 0o666 & ~umask()


def atomic_write_bytes(path: str | os.PathLike, payload: bytes, durable: bool = False) -> None:
    """Write bytes to `path` via a temp file in the same folder and os.replace (usual permissions). `durable`:
    the file is fsynced before the rename and the folder after it, so a power cut leaves the old or the new."""
    path = Path(path)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to the disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def convert_depth(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A uint8 array as uint16 (x 257, so 255 -> 65535) or a uint16 array as uint8 (rounded)."""
    if dtype == np.uint16:
        return array.astype(np.uint16) * 257
    return (array.astype(np.float32) / 257).round().astype(np.uint8)
