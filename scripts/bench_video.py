"""Benchmark video translation against the same frames translated as a folder of PNGs.

Builds a synthetic clip with PyAV (a slow pan and zoom over a photo bundled with scikit-image, with an
AAC track), an untrained unet_256 Pix2Pix run, and times with the same Translator, alternating
`--repeats` times: (a) `translate_video` (decode, translate, H.264 encode, audio copy) and (b)
`Translator.translate_dir` on the clip's frames written as PNGs (PNG read, translate, PNG write).
Prints frames/s for both (best and median of the repeats) and the process CPU seconds per frame, which
other processes on a shared machine do not inflate, and the ratios (target: video >= 0.9 x folder).

    python scripts/bench_video.py --seconds 10 --precision bf16 --out bench_video.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from skimage import data

from i2i.checkpoint.weights import save_checkpoint
from i2i.config import DataConfig, RunConfig, TrainConfig
from i2i.data.io import write_image
from i2i.models import Pix2Pix, Pix2PixConfig
from i2i.translation.translator import Translator
from i2i.translation.video import frames, probe
from i2i.translation.video_encode import translate_video


def make_clip(path: Path, seconds: float, width: int, height: int, fps: int) -> int:
    """A dash-cam-like clip: a pan and zoom over a photo, with a sine on the audio track. Returns frames."""
    photo = Image.fromarray(data.coffee()).resize((width * 3 // 2, height * 3 // 2), Image.BICUBIC)
    n = round(seconds * fps)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        for i in range(n):
            t = i / max(n - 1, 1)
            zoom = 1.0 + 0.2 * t
            w, h = round(width * 1.3 / zoom), round(height * 1.3 / zoom)
            left, top = round(t * (photo.width - w)), round((photo.height - h) / 2)
            view = photo.crop((left, top, left + w, top + h)).resize((width, height), Image.BILINEAR)
            frame = av.VideoFrame.from_ndarray(np.asarray(view), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = round(48000 * n / fps)
        wave = (0.2 * np.sin(2 * np.pi * 330 * np.arange(samples) / 48000)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = np.ascontiguousarray(np.stack([wave[start : start + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return n


def make_run(runs: Path) -> Path:
    torch.manual_seed(0)
    model = Pix2Pix(Pix2PixConfig())  # unet_256, untrained: the speed does not depend on the weights
    cfg = RunConfig("pix2pix", model.cfg, DataConfig(), TrainConfig(name="bench", runs_dir=str(runs)))
    save_checkpoint(cfg.run_dir, 0, model.networks(), {}, cfg.to_dict())
    return cfg.run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--repeats", type=int, default=2, help="alternate video and folder this many times")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = tmp / "drive.mp4"
        n = make_clip(clip, args.seconds, args.width, args.height, args.fps)
        pngs = tmp / "frames"
        pngs.mkdir()
        for i, frame in enumerate(frames(clip)):
            write_image(pngs / f"{i:05d}.png", frame)
        translator = Translator.from_pretrained(make_run(tmp / "runs"), precision=args.precision)
        info = probe(clip)
        print(f"{n} frames {args.width}x{args.height} at {args.fps} fps ({info.bit_rate / 1e6:.1f} Mb/s), unet_256 "
              f"{translator.dtype}, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
        translator.translate_arrays([next(frames(clip))])  # warm-up: kernels for this size, allocator

        runs: dict[str, list[tuple[float, float]]] = {"video": [], "folder": []}  # (wall s, cpu s) per repeat
        for repeat in range(args.repeats):
            with measure(runs["video"]):
                summary = translate_video(clip, tmp / f"night{repeat}.mp4", translator.translate_arrays,
                                          batch_size=args.batch_size, progress=False)
            with measure(runs["folder"]):
                folder = translator.translate_dir(pngs, tmp / f"night_pngs{repeat}", fmt="png",
                                                  batch_size=args.batch_size, progress=False)
            assert summary.frames == folder.translated == n, (summary.frames, folder.translated, n)
            print(f"repeat {repeat + 1}: video {n / runs['video'][-1][0]:.3f} frames/s, "
                  f"folder {n / runs['folder'][-1][0]:.3f} frames/s", flush=True)

    result = {"frames": n, "size": [args.width, args.height], "fps": args.fps, "batch_size": args.batch_size,
              "precision": str(translator.dtype), "crf": summary.crf, "flicker": summary.flicker}
    labels = {"video": f"video  (decode, translate, H.264 crf {summary.crf}, audio {summary.audio})",
              "folder": "folder (PNG read, translate, PNG write)"}
    for name, times in runs.items():
        walls = [w for w, _ in times]
        best, median = n / min(walls), n / statistics.median(walls)
        cpu = statistics.median(c for _, c in times) / n
        result[name] = {"best_frames_per_s": best, "median_frames_per_s": median, "cpu_s_per_frame": cpu,
                        "wall_s": walls}
        print(f"{labels[name]:58s} best {best:6.3f} frames/s, median {median:6.3f}, CPU {cpu:5.2f} s/frame")
    ratio = result["video"]["best_frames_per_s"] / result["folder"]["best_frames_per_s"]
    cpu_ratio = result["folder"]["cpu_s_per_frame"] / result["video"]["cpu_s_per_frame"]
    result.update(ratio_best=ratio, ratio_cpu=cpu_ratio)
    print(f"video / folder throughput: {ratio:.3f} by best wall time, {cpu_ratio:.3f} by CPU time (target >= 0.9)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


@contextlib.contextmanager
def measure(into: list[tuple[float, float]]) -> Iterator[None]:
    """Append (wall seconds, this process's CPU seconds) of the block to `into`."""
    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    wall, used = time.perf_counter(), cpu()
    yield
    into.append((time.perf_counter() - wall, cpu() - used))


if __name__ == "__main__":
    main()
