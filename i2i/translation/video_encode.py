"""Video files: encode translated frames (H.264 yuv420p or VP9, audio and rotation kept)
and translate a whole video atomically."""

from __future__ import annotations

import contextlib
import math
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from i2i.translation.video import (
    _END,
    _FORMATS,
    _H264_EQUIVALENT,
    _JPEG_RANGE,
    _MPEG_RANGE,
    CODECS,
    VIDEO_EXTENSIONS,
    TranslateBatch,
    VideoInfo,
    _ahead,
    _av,
    _decode,
    _Frame,
    _open_input,
    _translated,
    parse_bitrate,
    probe,
)


def default_crf(info: VideoInfo, codec: str = "libx264") -> int:
    """A CRF that keeps roughly the input's quality, from its bits per pixel.

    x264's default CRF 23 spends about 0.1 bit per pixel on natural video, and each 6 CRF steps halve or
    double the bits: so CRF = 23 - 6 log2(bpp / 0.1), with the input's bpp scaled to H.264 terms (HEVC
    and VP9 bits count 1.6x, AV1 2x), clamped to 18 (visually lossless, no point in more) .. 28. Unknown
    bit rate: 23. VP9's scale sits about 8 steps higher (its 31 is x264's 23).
    """
    bpp = info.bits_per_pixel
    crf = 23 if not bpp else round(23 - 6 * math.log2(bpp * _H264_EQUIVALENT.get(info.codec, 1.0) / 0.1))
    crf = min(max(crf, 18), 28)
    return crf + 8 if codec == "libvpx-vp9" else crf


class _Change:
    """Mean absolute change between consecutive frames, in 0..255 levels."""

    def __init__(self) -> None:
        self.previous: np.ndarray | None = None
        self.total, self.count = 0.0, 0

    def add(self, array: np.ndarray) -> None:
        if self.previous is not None and self.previous.shape == array.shape:
            self.total += cv2.norm(array, self.previous, cv2.NORM_L1) / array.size
            self.count += 1
        self.previous = array

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


class _Encoder:
    """The output container: encodes translated frames and copies (or re-encodes) the input's audio.

    Runs in the writer thread: the model's thread only hands it frames through a bounded queue.
    """

    def __init__(self, path: Path, fmt: str, source: Any, info: VideoInfo, codec: str, crf: int | None,
                 bitrate: int | None) -> None:
        av = _av()
        self.container = av.open(str(path), "w", format=fmt)
        try:
            self.video = self._video_stream(info, codec, crf, bitrate)
            self.audio = {s.index: self._audio_stream(s) for s in source.streams.audio}  # index -> (stream, copy?)
        except BaseException:
            self.container.close()
            raise
        self.info, self.change, self.last_pts = info, _Change(), None
        self.durations: dict[int, int] = {}  # pts -> the input frame's duration, for the encoder's packets
        self.step = max(1, round(1 / (float(info.rate) * self.time_base)))  # one frame in time-base units

    def _video_stream(self, info: VideoInfo, codec: str, crf: int | None, bitrate: int | None) -> Any:
        stream = self.container.add_stream(codec, rate=info.rate)
        # AVI has no timestamps, only a frame rate (1 / time base): its frames sit evenly at the average rate.
        avi = self.container.format.name == "avi"
        self.time_base = 1 / info.rate.limit_denominator(1001) if avi else info.time_base
        # Keep the rotation as metadata where PyAV can write it (18+); else store the frames upright.
        self.turns = info.rotation // 90 if _writes_rotation(stream) else 0
        width, height = (info.width, info.height) if self.turns or not info.rotation else info.upright_size
        # 4:2:0 H.264 needs even sizes: an odd one gets one more row/column, a copy of the last.
        self.pad = (height % 2, width % 2) if codec == "libx264" else (0, 0)
        stream.width, stream.height, stream.pix_fmt = width + self.pad[1], height + self.pad[0], "yuv420p"
        ctx = stream.codec_context
        ctx.time_base = self.time_base
        ctx.colorspace, ctx.color_range = info.colorspace, info.color_range
        ctx.color_primaries, ctx.color_trc = info.color_primaries, info.color_trc
        if bitrate:
            ctx.bit_rate = bitrate
        else:
            stream.options = {"crf": str(crf)}
        if codec == "libvpx-vp9":
            ctx.bit_rate = bitrate or 0  # 0: constant quality (the CRF alone)
            stream.options = {**stream.options, "row-mt": "1", "cpu-used": "4"}
        if self.turns:
            stream.set_display_rotation(info.rotation)
        return stream

    def _audio_stream(self, source: Any) -> tuple[Any, bool]:
        """Copy the packets where the container takes the codec, else re-encode (AAC, or Opus for WebM)."""
        if source.codec_context.name in self.container.supported_codecs:
            return self.container.add_stream_from_template(source), True
        codec = next(c for c in ("aac", "libopus", "libmp3lame") if c in self.container.supported_codecs)
        stream = self.container.add_stream(codec, rate=48000 if codec == "libopus" else source.rate)
        stream.layout = source.layout
        return stream, False

    @property
    def audio_mode(self) -> str:
        if not self.audio:
            return "none"
        return "copied" if all(copy for _, copy in self.audio.values()) else "re-encoded"

    def write(self, item: Any) -> None:
        if isinstance(item, _Frame):
            self._write_frame(item)
            return
        stream, copy = self.audio[item.stream.index]
        if copy:
            item.stream = stream
            self.container.mux(item)
        else:
            for frame in item.decode():
                self.container.mux(stream.encode(frame))

    def _write_frame(self, frame: _Frame) -> None:
        self.change.add(frame.array)
        array = np.rot90(frame.array, -self.turns) if self.turns else frame.array
        if any(self.pad):
            array = np.pad(array, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        av = _av()
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24").reformat(
            format="yuv420p", dst_colorspace=self.info.matrix,
            dst_color_range=_JPEG_RANGE if self.info.full_range else _MPEG_RANGE)
        pts = None if frame.pts is None else self._rescale(frame.pts)
        if pts is None:
            pts = 0 if self.last_pts is None else self.last_pts + self.step
        if self.last_pts is not None and pts <= self.last_pts:  # broken timestamps: keep them increasing
            pts = self.last_pts + 1
        out.pts, out.time_base, self.last_pts = pts, self.time_base, pts
        if frame.duration:
            self.durations[pts] = max(1, self._rescale(frame.duration))
        self._mux_video(self.video.encode(out))

    def _rescale(self, ticks: int) -> int:
        return ticks if self.time_base == self.info.time_base else round(ticks * self.info.time_base / self.time_base)

    def _mux_video(self, packets: list[Any]) -> None:
        # The encoder gives every packet one nominal frame's duration; the input's own keeps the last frame's
        # length, hence the file's duration, exact.
        for packet in packets:
            duration = self.durations.pop(packet.pts, None)
            if duration:
                packet.duration = duration
        self.container.mux(packets)

    def finish(self) -> None:
        self._mux_video(self.video.encode(None))
        for stream, copy in self.audio.values():
            if not copy:
                self.container.mux(stream.encode(None))
        self.container.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()


def _writes_rotation(stream: Any) -> bool:
    return hasattr(stream, "set_display_rotation")


class _Writer:
    """Feed items to a function in a thread through a bounded queue; its first error surfaces in put/finish."""

    def __init__(self, fn: Callable[[Any], None], depth: int) -> None:
        self.fn, self.slots, self.stop, self.error = fn, queue.Queue(maxsize=depth), threading.Event(), None
        self.thread = threading.Thread(target=self._work, name="i2i-video-encode", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                item = self.slots.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is _END:
                return
            try:
                self.fn(item)
            except BaseException as err:
                self.error = err
                return

    def put(self, item: Any) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if not self.thread.is_alive():
                raise RuntimeError("the video writer thread stopped")
            with contextlib.suppress(queue.Full):
                self.slots.put(item, timeout=0.05)
                return

    def finish(self) -> None:
        self.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.stop.set()
        self.thread.join()


@dataclass
class VideoSummary:
    """One translated (or skipped) video: counts, speed, and how stable the output is over time."""

    src: Path
    dst: Path
    skipped: bool = False  # the output was already there
    frames: int = 0
    seconds: float = 0.0
    codec: str = ""
    crf: int | None = None
    bitrate: int | None = None
    audio: str = "none"  # "copied", "re-encoded" or "none"
    input_change: float = 0.0  # mean |difference| between consecutive frames, 0..255 levels
    output_change: float = 0.0
    padded: bool = False  # an odd size got one more row/column for 4:2:0 H.264

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def flicker(self) -> float:
        """Output change over input change, each plus one level: 1.0 is as stable as the input.

        The added level keeps a still input (change 0) defined: a still output then scores 1.0, and one
        that shimmers by 3 levels per frame scores 4.0.
        """
        return (self.output_change + 1) / (self.input_change + 1)

    def line(self) -> str:
        if self.skipped:
            return f"{self.dst}: already there, skipped"
        quality = f"crf {self.crf}" if self.crf is not None else f"{self.bitrate / 1000:g} kb/s"
        return (f"{self.dst}: {self.frames} frames in {self.seconds:.1f} s ({self.frames_per_s:.2f} frames/s), "
                f"{self.codec} {quality}, audio {self.audio}, flicker {self.flicker:.2f}")


def partial_name(dst: Path) -> Path:
    """A hidden temp name beside `dst`, unique to this write (two translations of one clip into one output never
    share a file: each renames its own complete video into place), short enough wherever `dst` fits."""
    stem = os.fsdecode(os.fsencode(dst.name)[:200])
    return dst.with_name(f".{stem}.{secrets.token_hex(6)}.partial")


def translate_video(src: str | os.PathLike, dst: str | os.PathLike, translate_batch: TranslateBatch, *,
                    batch_size: int = 8, codec: str | None = None, crf: int | None = None,
                    bitrate: int | str | None = None, overwrite: bool = False, progress: bool = True) -> VideoSummary:
    """Translate a video file into `dst` (its extension picks the container), frame by frame.

    `translate_batch` maps a list of upright HxWx3 uint8 RGB frames to their translations (same sizes),
    e.g. `Translator.translate_arrays`. Decoding and encoding run in threads beside it, with at most two
    batches queued on each side, so memory stays bounded for long and 4K videos. `codec` defaults to
    libx264 (libvpx-vp9 for .webm), `crf` to `default_crf` of the input; `bitrate` (bits/s) replaces the
    CRF. The output is written to a hidden `.NAME.RANDOM.partial` beside `dst` and renamed at the end, so `dst`
    is either absent or complete; an existing `dst` is skipped unless `overwrite`. Raises VideoReadError
    (path and frame) for a corrupt or truncated input; the partial output is then removed.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"input video {src} does not exist")
    if dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(src, dst)):
        raise ValueError(f"refusing to overwrite the input {src}")
    if dst.is_dir():
        raise ValueError(f"cannot write video {dst}: it is a folder; give the output file's name")
    fmt = _FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write video {dst}: the extension must be one of {', '.join(VIDEO_EXTENSIONS)}")
    codec = codec or ("libvpx-vp9" if fmt == "webm" else "libx264")
    if codec not in CODECS:
        raise ValueError(f"video codec must be one of {', '.join(CODECS)}, got {codec!r}")
    if fmt == "webm" and codec != "libvpx-vp9":
        raise ValueError(f"{dst}: .webm holds VP9, not {codec}; use libvpx-vp9 or another extension")
    if isinstance(bitrate, str):  # the CLI's spelling: 4M, 800k
        bitrate = parse_bitrate(bitrate)
    if crf is not None and bitrate is not None:
        raise ValueError("give a CRF or a bit rate, not both")
    top = 63 if codec == "libvpx-vp9" else 51
    if crf is not None and not 0 <= crf <= top:
        raise ValueError(f"crf for {codec} must be in 0..{top}, got {crf}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    summary = VideoSummary(src, dst, codec=codec)
    if dst.exists() and not overwrite:
        summary.skipped = True
        return summary

    started = time.perf_counter()
    info = probe(src)
    summary.crf = None if bitrate else (default_crf(info, codec) if crf is None else crf)
    summary.bitrate = bitrate
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_name(dst)
    changes = _Change()
    total = info.frames or (round(info.duration * float(info.rate)) if info.duration else None)
    with _open_input(src) as container:
        try:
            encoder = _Encoder(partial, fmt, container, info, codec, summary.crf, bitrate)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        writer = _Writer(encoder.write, 2 * batch_size)
        decoded = _ahead(_watch(_decode(container, src, info, audio=True), changes), 2 * batch_size)
        bar = tqdm(total=total, disable=not progress, unit="frame", dynamic_ncols=True, desc=src.name)
        try:
            for item in _translated(decoded, translate_batch, batch_size):
                writer.put(item)
                if isinstance(item, _Frame):
                    summary.frames += 1
                    bar.update(1)
            writer.finish()
            encoder.finish()
            os.replace(partial, dst)
        except BaseException:
            decoded.close()
            writer.abort()
            encoder.close()
            partial.unlink(missing_ok=True)
            raise
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - started
    summary.audio, summary.padded = encoder.audio_mode, any(encoder.pad)
    summary.input_change, summary.output_change = changes.mean, encoder.change.mean
    return summary


def _watch(items: Iterator[Any], changes: _Change) -> Iterator[Any]:
    """Pass items through, measuring the change between consecutive input frames (in the decoding thread)."""
    for item in items:
        if isinstance(item, _Frame):
            changes.add(item.array)
        yield item
