"""Video files: probe and decode (PyAV, imported on first use), encoding options,
frames streamed through bounded queues."""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
CODECS = ("libx264", "libvpx-vp9")  # encoders in PyAV's wheels: H.264 plays everywhere, VP9 is what .webm holds
INSTALL_HINT = "pip install 'i2i[video]'"

TranslateBatch = Callable[[list[np.ndarray]], list[np.ndarray]]

_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
# ISO base media major brands that are still images or audio, not video (HEIF/AVIF photos, iTunes audio).
_NOT_VIDEO_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
                     b"M4A ", b"M4B ", b"M4P "}
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}  # old .mov files start without ftyp
_H264_EQUIVALENT = {"hevc": 1.6, "vp9": 1.6, "av1": 2.0, "mpeg4": 0.7, "mjpeg": 0.3}  # bits worth this many H.264 bits
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}  # AVColorSpace -> swscale matrix (5 is BT.601)
_BT601, _BT709 = 5, 1
_MPEG_RANGE, _JPEG_RANGE = 1, 2
_END = object()


@dataclass(frozen=True)
class VideoOptions:
    """How translated videos are encoded: `codec` (CODECS; None: by container), `crf` or `bitrate` (bits/s;
    None: `default_crf` of each input)."""

    codec: str | None = None
    crf: int | None = None
    bitrate: int | None = None


def parse_bitrate(text: str) -> int:
    """'4M', '800k' or '2500000' -> bits per second."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise ValueError(f"a bit rate is a number of bits/s, optionally with k or M (e.g. 4M), got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"a bit rate must be a positive, finite number, got {text!r}")
    return int(value)


class VideoUnavailable(ImportError):
    """PyAV, which i2i uses for video, is not installed."""


class VideoReadError(OSError):
    """A video could not be decoded; the message names the path and the frame where it broke."""

    def __init__(self, path: str | os.PathLike, frame: int, reason: str) -> None:
        self.path, self.frame, self.reason = Path(path), frame, reason
        super().__init__(f"cannot read video {path} at frame {frame}: {reason}")


def _av() -> Any:
    try:
        import av
    except ImportError as err:
        raise VideoUnavailable(f"translating videos needs PyAV: {INSTALL_HINT}") from err
    return av


def is_video(path: str | os.PathLike) -> bool:
    """True when the file starts like an MP4/MOV, Matroska/WebM or AVI container, whatever its extension.

    Reads 12 bytes, so it is cheap to ask of every file of a folder walk; HEIF/AVIF photos and M4A audio,
    which share the MP4 container, are not videos.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if head[4:8] == b"ftyp":
        return len(head) == 12 and head[8:12] not in _NOT_VIDEO_BRANDS
    return (head[4:8] in _QUICKTIME_ATOMS or head[:4] == b"\x1a\x45\xdf\xa3"  # EBML: Matroska and WebM
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI "))


# -- reading ----------------------------------------------------------------------------------------
@dataclass
class VideoInfo:
    """What the encoder needs to reproduce an input video (its first video stream)."""

    width: int  # as stored, before rotation
    height: int
    rotation: int  # degrees a player turns the stored frames counter-clockwise: 0, 90, 180 or 270
    rate: Fraction  # average frame rate
    time_base: Fraction
    frames: int | None  # what the container header says, if anything
    duration: float | None  # seconds of video, if the container says
    codec: str
    bit_rate: int | None  # video bits/s (the whole file's when the container gives no video figure)
    colorspace: int  # AVColorSpace, AVColorRange, AVColorPrimaries, AVColorTransferCharacteristic tags
    color_range: int
    color_primaries: int
    color_trc: int

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as shown."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    @property
    def bits_per_pixel(self) -> float | None:
        return self.bit_rate / (self.width * self.height * float(self.rate)) if self.bit_rate else None

    @property
    def matrix(self) -> int:
        """The swscale YUV<->RGB matrix: the tagged one, else what players assume (BT.709 from 720 lines up)."""
        return _SWS_MATRIX.get(self.colorspace, _BT709 if min(self.width, self.height) >= 720 else _BT601)

    @property
    def full_range(self) -> bool:
        return self.color_range == _JPEG_RANGE


def _open_input(path: Path) -> Any:
    av = _av()
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoReadError(path, 0, _reason(err)) from err
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, 0, "the file holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame threads too: decoding stays a small share of the model's time
    return container


def _reason(err: BaseException) -> str:
    return str(getattr(err, "strerror", None) or err)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, rotation, frame rate, frame count, duration, codec, bit rate and colour tags of a video.

    Decodes the first frame (the rotation rides on decoded frames), so a file that cannot even start is
    reported here with VideoReadError.
    """
    path = Path(path)
    av = _av()
    with _open_input(path) as container:
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as err:
            raise VideoReadError(path, 0, _reason(err)) from err
        if first is None:
            raise VideoReadError(path, 0, "no frame could be decoded")
        tags = {k.upper(): v for k, v in stream.metadata.items()}
        frames = stream.frames or int(tags.get("NUMBER_OF_FRAMES", "0") or 0) or None  # Matroska keeps these as tags
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", tags.get("DURATION", ""))
            duration = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3]) if match else None
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(30)
        color_range = first.color_range or (_JPEG_RANGE if first.format.name.startswith("yuvj") else _MPEG_RANGE)
        return VideoInfo(
            width=first.width, height=first.height, rotation=round(first.rotation / 90) * 90 % 360,
            rate=Fraction(rate), time_base=Fraction(stream.time_base), frames=frames, duration=duration,
            codec=ctx.name, bit_rate=ctx.bit_rate or container.bit_rate or None, colorspace=first.colorspace,
            color_range=color_range, color_primaries=first.color_primaries, color_trc=first.color_trc)


@dataclass
class _Frame:
    """One decoded frame on its way through: upright RGB pixels (input, then output) and its timing."""

    array: np.ndarray
    pts: int | None
    duration: int


def _decode(container: Any, path: Path, info: VideoInfo, audio: bool) -> Iterator[Any]:
    """Yield the video's frames as _Frame (upright RGB) and, with `audio`, its audio packets, in file order.

    Raises VideoReadError with the frame index where decoding failed or where a truncated file ends.
    """
    av = _av()
    video = container.streams.video[0]
    streams = [video, *container.streams.audio] if audio else [video]
    turns = info.rotation // 90
    index, first_pts, end = 0, None, None
    try:
        for packet in container.demux(streams):
            if packet.stream.type != "video":
                if packet.dts is not None:  # the demuxer's empty end-of-stream packets carry nothing to copy
                    yield packet
                continue
            for frame in packet.decode():
                array = frame.to_ndarray(format="rgb24", src_colorspace=info.matrix,
                                         src_color_range=_JPEG_RANGE if info.full_range else _MPEG_RANGE)
                duration = frame.duration or 0
                if frame.pts is not None:
                    first_pts = frame.pts if first_pts is None else first_pts
                    end = frame.pts + duration
                yield _Frame(np.ascontiguousarray(np.rot90(array, turns)) if turns else array, frame.pts, duration)
                index += 1
    except av.FFmpegError as err:
        raise VideoReadError(path, index, _reason(err)) from err
    step = 1 / float(info.rate)
    if info.duration and end is not None:
        decoded = float((end - first_pts) * info.time_base)
        if decoded < info.duration - max(2 * step, 0.1):
            raise VideoReadError(path, index, f"the file ends {decoded:.2f} s into its {info.duration:.2f} s "
                                              "(truncated or corrupt)")
    elif info.frames and index < info.frames:
        raise VideoReadError(path, index, f"the file ends after {index} of its {info.frames} frames "
                                          "(truncated or corrupt)")
    if index == 0:
        raise VideoReadError(path, 0, "no frame could be decoded")


def _ahead(items: Generator[Any, None, None], depth: int) -> Generator[Any, None, None]:
    """Run an iterator in a thread at most `depth` items ahead of the consumer; its errors surface here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                slots.put(item, timeout=0.05)
                return True
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as err:
            put(_Failure(err))
        finally:
            items.close()

    thread = threading.Thread(target=work, name="i2i-video-decode", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


@dataclass
class _Failure:
    error: BaseException


def _translated(items: Iterable[Any], translate_batch: TranslateBatch, batch_size: int) -> Iterator[Any]:
    """Pass items through, replacing each _Frame's pixels by its translation (frames go in batches)."""
    batch: list[_Frame] = []

    def run() -> Iterator[_Frame]:
        outputs = translate_batch([f.array for f in batch])
        if len(outputs) != len(batch):
            raise ValueError(f"translate_batch returned {len(outputs)} frames for {len(batch)}")
        for frame, out in zip(batch, outputs, strict=True):
            frame.array = _as_rgb(out, frame.array.shape)
            yield frame
        batch.clear()

    for item in items:
        if isinstance(item, _Frame):
            batch.append(item)
            if len(batch) >= batch_size:
                yield from run()
        else:
            yield item
    if batch:
        yield from run()


def _as_rgb(out: Any, shape: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim == 2:
        out = out[:, :, None]
    if out.ndim == 3 and out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    if out.dtype != np.uint8 or out.shape != shape:
        raise ValueError(f"translate_batch must return HxWx3 uint8 frames of the input's size {shape}, "
                         f"got {out.dtype} {out.shape}")
    return out


def frames(src: str | os.PathLike, translate_batch: TranslateBatch | None = None, *,
           batch_size: int = 8) -> Iterator[np.ndarray]:
    """Yield a video's frames as upright HxWx3 uint8 RGB arrays, translated by `translate_batch` if given.

    Decoding runs in a thread a couple of batches ahead; stopping early stops it.
    """
    src = Path(src)
    info = probe(src)
    with _open_input(src) as container:
        decoded = _ahead(_decode(container, src, info, audio=False), 2 * batch_size)
        try:
            items = decoded if translate_batch is None else _translated(decoded, translate_batch, batch_size)
            for item in items:
                yield item.array
        finally:
            decoded.close()
