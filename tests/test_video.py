"""Video translation: size, timing, rotation, audio, colour kept; resume, atomic output, bad input, bounded memory."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_config
from i2i.translation import video, video_encode
from i2i.translation.video import VideoReadError, VideoUnavailable, frames, is_video, probe
from i2i.translation.video_encode import default_crf, translate_video

av = pytest.importorskip("av")

SIZE = (40, 48)  # height, width: non-square, not a multiple of the generators' 64


def picture(i: int, height: int, width: int) -> np.ndarray:
    """Frame i: a colour ramp that changes over time, a bar that moves and a marker in the top-left corner
    (so rotations and frame order both show)."""
    y, x = np.mgrid[:height, :width]
    img = np.stack([(x * 255 // width + 6 * i) % 256, y * 255 // height, np.full_like(x, 120)], axis=2)
    img[:, (3 * i) % (width - 6) : (3 * i) % (width - 6) + 6, 1] = 250
    img[:8, :8] = (250, 20, 20)
    return img.astype(np.uint8)


def make_video(path: Path, n: int = 30, size: tuple[int, int] = SIZE, fps: int = 30, audio: bool = True,
               codec: str = "libx264", rotation: int = 0, vfr: bool = False, full_range_bt709: bool = False,
               faststart: bool = False, still: bool = False) -> Path:
    """A small test video: n frames of `picture`, AAC sine audio as long as the video."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        time_base = Fraction(1, 1000) if vfr else Fraction(1, fps)
        stream.codec_context.time_base = time_base
        if full_range_bt709:
            ctx = stream.codec_context
            ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = 1, 2, 1, 1
        if rotation:
            stream.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=44100)
            sound.layout = "stereo"
        pts = 0
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(picture(0 if still else i, *size), format="rgb24")
            if full_range_bt709:
                frame = frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=2)
            frame.pts, frame.time_base = pts, time_base
            pts += (33 if i % 3 else 71) if vfr else 1
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            samples = round(44100 * float(pts * time_base))
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = np.ascontiguousarray(np.stack([wave[start : start + 1024]] * 2))
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 44100, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """All frames as stored (no rotation) and their timestamps in seconds."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pairs = [(f.to_ndarray(format="rgb24"), float(f.pts * stream.time_base)) for f in c.decode(stream)]
    return [a for a, _ in pairs], [t for _, t in pairs]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def invert(batch: list[np.ndarray]) -> list[np.ndarray]:
    return [255 - f for f in batch]


def identity(batch: list[np.ndarray]) -> list[np.ndarray]:
    return batch


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "mp4": make_video(folder / "drive.mp4"),
        "vfr": make_video(folder / "vfr.mp4", vfr=True),
        "mkv": make_video(folder / "drive.mkv", n=24),
        "odd": make_video(folder / "odd.webm", size=(39, 47), codec="libvpx-vp9", audio=False, n=12),
        "long": make_video(folder / "long.mp4", n=40, audio=False),
        "still": make_video(folder / "still.mp4", n=12, audio=False, still=True),
        "faststart": make_video(folder / "faststart.mp4", faststart=True),
    }


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phone-style clip: stored 48x40, tagged to be shown turned a quarter counter-clockwise."""
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip(f"PyAV {av.__version__} cannot write rotation metadata (18 can), so no rotated clip to test with")
    return make_video(tmp_path_factory.mktemp("rotated") / "phone.mp4", rotation=90, audio=False)


def test_is_video_looks_at_the_content(clips: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "clip.dat"
    renamed.write_bytes(clips["mp4"].read_bytes())
    png_named_mp4 = tmp_path / "photo.mp4"
    png_named_mp4.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    heic = tmp_path / "photo.heic"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    assert is_video(renamed) and is_video(clips["mkv"]) and is_video(clips["odd"])
    assert not is_video(png_named_mp4) and not is_video(heic) and not is_video(tmp_path / "missing.mp4")


def test_output_keeps_size_timing_frame_count_and_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    src, dst = clips["mp4"], tmp_path / "out" / "night.mp4"
    summary = translate_video(src, dst, invert, batch_size=4, progress=False)
    before, after = probe(src), probe(dst)
    assert (after.width, after.height, after.rate, after.frames) == (48, 40, 30, 30) == (
        before.width, before.height, before.rate, before.frames)
    assert after.duration == pytest.approx(before.duration, abs=1e-3)
    inputs, in_times = decoded(src)
    outputs, out_times = decoded(dst)
    assert out_times == pytest.approx(in_times, abs=1e-4)
    errors = [np.abs(o.astype(int) - (255 - i.astype(int))).mean() for i, o in zip(inputs, outputs, strict=True)]
    assert max(errors) < 4  # every frame is its own inverse, in order (up to compression)
    assert summary.audio == "copied" and audio_packets(dst) == audio_packets(src)
    assert summary.frames == 30 and summary.frames_per_s > 0 and not summary.skipped and summary.codec == "libx264"


def test_variable_frame_rate_timestamps_are_kept(clips: dict[str, Path], tmp_path: Path) -> None:
    src, dst = clips["vfr"], tmp_path / "vfr_out.mp4"
    translate_video(src, dst, invert, progress=False)
    _, in_times = decoded(src)
    _, out_times = decoded(dst)
    assert len(set(np.diff(in_times).round(3))) > 1  # really variable
    assert out_times == pytest.approx(in_times, abs=1e-4)
    assert probe(dst).duration == pytest.approx(probe(src).duration, abs=1e-3)  # the last frame's length too


def test_rotation_the_model_sees_upright_frames_and_the_metadata_stays(rotated: Path, tmp_path: Path) -> None:
    src, dst = rotated, tmp_path / "rotated.mp4"
    seen: list[tuple[int, ...]] = []

    def record(batch: list[np.ndarray]) -> list[np.ndarray]:
        seen.extend(f.shape for f in batch)
        return batch

    translate_video(src, dst, record, progress=False)
    assert set(seen) == {(48, 40, 3)}  # stored 48 wide x 40 high, shown turned a quarter: 40 wide x 48 high
    info = probe(dst)
    assert (info.width, info.height, info.rotation) == (48, 40, 90)
    inputs, _ = decoded(src)
    outputs, _ = decoded(dst)
    # stored as the input, not turned: H.264 noise is ~2.5 (up to 3.2 seen on a loaded machine), a neighbour frame 13
    assert np.abs(outputs[5].astype(int) - inputs[5].astype(int)).mean() < 6
    upright = next(frames(src)).astype(int)
    # PyAV's rotation is counter-clockwise, as np.rot90 turns: the stored top-left marker ends bottom-left
    assert np.abs(upright - np.rot90(inputs[0], 1)).mean() < 1 < np.abs(upright - np.rot90(inputs[0], -1)).mean()
    assert upright[-4, 4].tolist() == pytest.approx([250, 20, 20], abs=12)


def test_without_rotation_metadata_the_frames_are_stored_upright(rotated: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_encode, "_writes_rotation", lambda stream: False)  # PyAV before 18
    dst = tmp_path / "upright.mp4"
    translate_video(rotated, dst, identity, progress=False)
    info = probe(dst)
    assert (info.width, info.height, info.rotation) == (40, 48, 0)
    shown_before, shown_after = next(frames(rotated)), next(frames(dst))
    assert np.abs(shown_after.astype(int) - shown_before.astype(int)).mean() < 3  # players show the same


def test_webm_output_is_vp9_with_the_audio_re_encoded(clips: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "night.webm"
    summary = translate_video(clips["mkv"], dst, invert, progress=False)
    assert summary.codec == "libvpx-vp9" and summary.audio == "re-encoded"
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == "vp9" and c.streams.audio[0].codec_context.name == "opus"
    assert len(decoded(dst)[0]) == 24
    with pytest.raises(ValueError, match="webm holds VP9"):
        translate_video(clips["mkv"], tmp_path / "x.webm", invert, codec="libx264", progress=False)


@pytest.mark.parametrize("suffix", [".mov", ".mkv", ".avi"])
def test_other_containers_keep_frames_rate_and_audio(clips: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    dst = tmp_path / f"night{suffix}"
    summary = translate_video(clips["mp4"], dst, invert, progress=False)
    assert summary.audio == "copied" and audio_packets(dst) == audio_packets(clips["mp4"])
    assert len(decoded(dst)[0]) == 30 and probe(dst).rate == 30 and is_video(dst)


def test_quality_follows_crf_or_bitrate(clips: dict[str, Path], tmp_path: Path) -> None:
    sizes = {}
    for label, options in {"crf 35": {"crf": 35}, "crf 15": {"crf": 15}, "50 kb/s": {"bitrate": 50_000},
                           "2000 kb/s": {"bitrate": 2_000_000}}.items():
        dst = tmp_path / f"{len(sizes)}.mp4"
        assert f"libx264 {label}," in translate_video(clips["long"], dst, invert, progress=False, **options).line()
        sizes[label] = dst.stat().st_size
    assert sizes["crf 35"] < sizes["crf 15"] and sizes["50 kb/s"] < sizes["2000 kb/s"]


def test_odd_sizes_pad_one_row_for_h264_and_stay_exact_in_vp9(clips: dict[str, Path], tmp_path: Path) -> None:
    h264 = translate_video(clips["odd"], tmp_path / "odd.mp4", identity, progress=False)
    vp9 = translate_video(clips["odd"], tmp_path / "odd.webm", identity, progress=False)
    assert h264.padded and not vp9.padded
    assert (probe(tmp_path / "odd.mp4").width, probe(tmp_path / "odd.mp4").height) == (48, 40)
    assert (probe(tmp_path / "odd.webm").width, probe(tmp_path / "odd.webm").height) == (47, 39)


def test_colour_tags_and_full_range_survive_a_round_trip(tmp_path: Path) -> None:
    src = make_video(tmp_path / "tagged.mp4", n=6, audio=False, full_range_bt709=True)
    dst = tmp_path / "tagged_out.mp4"
    translate_video(src, dst, identity, progress=False, crf=10)
    before, after = probe(src), probe(dst)
    assert (after.colorspace, after.color_range, after.color_primaries, after.color_trc) == (1, 2, 1, 1)
    assert (before.colorspace, before.color_range) == (1, 2)
    inputs, _ = decoded(src)
    outputs, _ = decoded(dst)
    assert np.abs(outputs[3].astype(int) - inputs[3].astype(int)).mean() < 2


def test_a_finished_output_is_skipped_and_overwrite_redoes_it(clips: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "done.mp4"
    translate_video(clips["mkv"], dst, invert, progress=False)
    stamp = dst.stat().st_mtime_ns

    def must_not_run(batch: list[np.ndarray]) -> list[np.ndarray]:
        raise AssertionError("a finished video was translated again")

    again = translate_video(clips["mkv"], dst, must_not_run, progress=False)
    assert again.skipped and again.frames == 0 and dst.stat().st_mtime_ns == stamp
    assert translate_video(clips["mkv"], dst, identity, overwrite=True, progress=False).frames == 24


def test_a_failure_midway_leaves_no_output_and_keeps_an_older_one(clips: dict[str, Path], tmp_path: Path) -> None:
    calls = 0

    def breaks(batch: list[np.ndarray]) -> list[np.ndarray]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("model crashed")
        return batch

    folder = tmp_path / "out"
    with pytest.raises(RuntimeError, match="model crashed"):
        translate_video(clips["long"], folder / "clip.mp4", breaks, batch_size=4, progress=False)
    assert list(folder.iterdir()) == []  # neither the final name nor a leftover partial file
    older = folder / "older.mp4"
    older.write_bytes(b"an earlier translation")
    calls = 0
    with pytest.raises(RuntimeError, match="model crashed"):
        translate_video(clips["long"], older, breaks, batch_size=4, overwrite=True, progress=False)
    assert older.read_bytes() == b"an earlier translation" and sorted(folder.iterdir()) == [older]
    assert not [t for t in threading.enumerate() if t.name.startswith("i2i-video")]


@pytest.mark.parametrize("damage", ["truncated_mp4", "truncated_mkv", "garbage"])
def test_corrupt_and_truncated_inputs_name_the_path_and_frame(clips: dict[str, Path], tmp_path: Path,
                                                             damage: str) -> None:
    if damage == "garbage":
        bad, broken_at = tmp_path / "bad.mp4", 0
        bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 20)
    else:
        source = clips["faststart" if damage == "truncated_mp4" else "mkv"]
        data = source.read_bytes()
        bad = tmp_path / f"cut{source.suffix}"
        bad.write_bytes(data[: len(data) * 2 // 3])  # the index survives (faststart), the end of the data does not
        broken_at = None
    dst = tmp_path / "out" / "bad_out.mp4"
    with pytest.raises(VideoReadError) as caught:
        translate_video(bad, dst, identity, progress=False)
    err = caught.value
    assert str(bad) in str(err) and f"at frame {err.frame}" in str(err)
    if broken_at is None:
        assert 5 < err.frame < 28 and "truncated" in str(err)
    else:
        assert err.frame == broken_at
    assert not dst.parent.exists() or not any(dst.parent.iterdir())  # no output, no partial file


@pytest.mark.parametrize("slow", ["model", "encoder"])
def test_memory_stays_bounded_by_the_queues(clips: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, slow: str) -> None:
    counts = {"decoded": 0, "written": 0, "most_alive": 0}
    lock = threading.Lock()
    real_decode, real_write = video._decode, video_encode._Encoder._write_frame

    def note(key: str) -> None:
        with lock:
            counts[key] += 1
            counts["most_alive"] = max(counts["most_alive"], counts["decoded"] - counts["written"])

    def counting_decode(*args, **kwargs):
        for item in real_decode(*args, **kwargs):
            if isinstance(item, video._Frame):
                note("decoded")
            yield item

    def counting_write(self, frame) -> None:
        if slow == "encoder":
            time.sleep(0.01)
        real_write(self, frame)
        note("written")

    def model(batch: list[np.ndarray]) -> list[np.ndarray]:
        if slow == "model":
            time.sleep(0.02)
        return batch

    monkeypatch.setattr(video_encode, "_decode", counting_decode)  # where translate_video calls it
    monkeypatch.setattr(video_encode._Encoder, "_write_frame", counting_write)
    batch = 2
    translate_video(clips["long"], tmp_path / "bounded.mp4", model, batch_size=batch, progress=False)
    assert counts["decoded"] == counts["written"] == 40
    # decode queue (2 batches) + one frame in the decoder's hand + the batch + write queue (2 batches) + one writing
    assert counts["most_alive"] <= 5 * batch + 2 < 40


def test_flicker_is_one_for_a_faithful_translation_and_grows_with_shimmer(clips: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    faithful = translate_video(clips["mp4"], tmp_path / "a.mp4", invert, progress=False)
    assert faithful.flicker == pytest.approx(1.0) and faithful.input_change > 1

    still_in = translate_video(clips["still"], tmp_path / "still_same.mp4", identity, progress=False)
    assert still_in.input_change == 0 and still_in.flicker == 1.0  # defined for a still input

    calls = iter(range(1000))

    def alternating(batch: list[np.ndarray]) -> list[np.ndarray]:
        return [np.clip(f.astype(int) + (10 if next(calls) % 2 else -10), 0, 255).astype(np.uint8) for f in batch]

    flickering = translate_video(clips["still"], tmp_path / "still_flicker.mp4", alternating, progress=False)
    assert flickering.output_change == pytest.approx(20, abs=1) and flickering.flicker == pytest.approx(21, abs=1)


def test_frames_yields_upright_or_translated_frames_and_stops_cleanly(clips: dict[str, Path]) -> None:
    plain = list(frames(clips["mkv"]))
    assert len(plain) == 24 and plain[0].shape == (40, 48, 3) and plain[0].dtype == np.uint8
    translated = list(frames(clips["mkv"], invert, batch_size=5))
    assert len(translated) == 24 and np.array_equal(translated[7], 255 - plain[7])
    for i, _ in enumerate(frames(clips["long"], batch_size=2)):
        if i == 3:
            break
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name.startswith("i2i-video")]


def test_a_real_generator_translates_a_video(clips: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from i2i.nets import build_generator
    from i2i.translation.translator import Translator

    torch.manual_seed(0)
    cfg = tiny_config(tmp_path, tmp_path)  # an untrained unet_64 with 4 base channels
    gen_cfg = cfg.model_config.generator
    translator = Translator(build_generator(gen_cfg), gen_cfg, cfg, "AtoB", torch.device("cpu"))
    summary = translate_video(clips["mkv"], tmp_path / "gan.mp4", translator.translate_arrays, batch_size=4,
                              progress=False)
    assert summary.frames == 24 and probe(tmp_path / "gan.mp4").width == 48


def test_bad_arguments_are_refused(clips: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        translate_video(clips["mp4"], clips["mp4"], identity, overwrite=True)
    with pytest.raises(ValueError, match="it is a folder"):
        translate_video(clips["mp4"], tmp_path, identity)
    with pytest.raises(ValueError, match="extension must be one of"):
        translate_video(clips["mp4"], tmp_path / "out.gif", identity)
    with pytest.raises(ValueError, match="not both"):
        translate_video(clips["mp4"], tmp_path / "out.mp4", identity, crf=20, bitrate=10**6)
    with pytest.raises(ValueError, match=r"crf for libx264 must be in 0\.\.51"):
        translate_video(clips["mp4"], tmp_path / "out.mp4", identity, crf=60)
    with pytest.raises(ValueError, match="codec must be one of"):
        translate_video(clips["mp4"], tmp_path / "out.mp4", identity, codec="mpeg2video")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        translate_video(clips["mp4"], tmp_path / "out.mp4", lambda b: [f[:10] for f in b], progress=False)
    with pytest.raises(FileNotFoundError):
        translate_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", identity)


def test_default_crf_follows_the_input_bits_per_pixel() -> None:
    def info(bpp: float | None, codec: str = "h264") -> video.VideoInfo:
        rate = None if bpp is None else round(bpp * 1280 * 720 * 30)
        return video.VideoInfo(1280, 720, 0, Fraction(30), Fraction(1, 30), None, None, codec, rate, 1, 1, 1, 1)

    assert default_crf(info(0.1)) == 23 and default_crf(info(None)) == 23
    assert default_crf(info(0.05)) == 28 and default_crf(info(0.2)) == 18 and default_crf(info(0.07)) == 26
    assert default_crf(info(0.1 / 1.6, "hevc")) == 23  # HEVC bits are worth more
    assert default_crf(info(0.1), "libvpx-vp9") == 31


def test_missing_pyav_gives_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(VideoUnavailable, match=r"pip install 'i2i\[video\]'"):
        probe(tmp_path / "in.mp4")
    code = "import sys, i2i, i2i.translation.video; assert 'av' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- videos through the Translator, folder walks and the command line ---------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import write_pairs
    from i2i.training.trainer import train

    tmp = tmp_path_factory.mktemp("video_run")
    return train(tiny_config(write_pairs(tmp / "pairs"), tmp / "runs", max_steps=1), progress=False).run_dir


def test_translator_translates_videos_and_yields_frames(clips: dict[str, Path], tiny_run: Path,
                                                        tmp_path: Path) -> None:
    from i2i.translation.translator import Translator

    translator = Translator.from_pretrained(tiny_run, precision="fp32", batch_size=4)
    summary = translator.translate_video(clips["mp4"], tmp_path / "out.mp4", progress=False)
    assert summary.frames == probe(clips["mp4"]).frames and (tmp_path / "out.mp4").is_file()
    got = list(translator.frames(clips["mp4"]))
    assert len(got) == summary.frames and got[0].shape == (*SIZE, 3)
    expected = translator.translate_arrays([next(frames(clips["mp4"]))])[0]
    assert np.array_equal(got[0], expected)  # the same translation as the frame on its own


def test_folders_translate_images_and_videos_and_resume(clips: dict[str, Path], tiny_run: Path,
                                                        tmp_path: Path) -> None:
    from click.testing import CliRunner

    from i2i.cli.commands import main

    tree = tmp_path / "in"
    (tree / "drive").mkdir(parents=True)
    (tree / "drive" / "day.mp4").write_bytes(clips["mp4"].read_bytes())
    (tree / "clip_without_extension").write_bytes(clips["mp4"].read_bytes())  # a video by its content
    (tree / "broken.mp4").write_bytes(clips["mp4"].read_bytes()[:3000])
    from PIL import Image

    Image.fromarray(picture(0, 64, 64)).save(tree / "photo.png")
    args = ["translate", str(tiny_run), str(tree), str(tmp_path / "out"), "--no-progress", "--crf", "30"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output  # the broken video failed, named
    assert "broken.mp4" in result.output and "translated 3," in result.output
    assert "flicker" in result.output
    out = tmp_path / "out"
    assert probe(out / "drive" / "day.mp4").frames == probe(clips["mp4"]).frames
    assert (out / "clip_without_extension.mp4").is_file() and (out / "photo.png").is_file()
    assert not (out / "broken.mp4").exists() and not list(out.rglob("*.partial"))
    again = CliRunner().invoke(main, args)
    assert "translated 0, skipped 3" in again.output


def test_cli_translates_one_video_to_a_file(clips: dict[str, Path], tiny_run: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from i2i.cli.commands import main

    out = tmp_path / "night.webm"
    result = CliRunner().invoke(main, ["translate", str(tiny_run), str(clips["mp4"]), str(out), "--no-progress",
                                       "--bitrate", "300k"])
    assert result.exit_code == 0, result.output
    assert len(decoded(out)[0]) == probe(clips["mp4"]).frames  # WebM headers hold no frame count: decode
    bad = CliRunner().invoke(main, ["translate", str(tiny_run), str(clips["mp4"]), str(out), "--bitrate", "fast",
                                    "--overwrite"])
    assert bad.exit_code == 2 and "bit rate" in bad.output  # a bad value is a usage error
