"""Translator: rebuild a trained generator from its checkpoint alone and translate images of any size."""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from i2i.checkpoint import load_weights, read_metadata, resolve_checkpoint
from i2i.config import FORMATS, SIZE_MODES, RunConfig
from i2i.data.io import ImageReadError, list_images, pil_to_array, read_image, to_float, write_image
from i2i.data.tensors import to_image, to_tensor
from i2i.devices import DTYPES, autocast, pick_device, resolve_precision, tune_cpu_allocator
from i2i.models import MODELS
from i2i.nets import GeneratorConfig
from i2i.nets.layers import per_image_norm

AUTO_TILE_PIXELS = 1536 * 1536  # above this many (padded) pixels an image is translated in tiles
DEFAULT_TILE = 512


def load_generator(path: str | Path, direction: str | None = None) -> tuple[nn.Module, GeneratorConfig, RunConfig, str]:
    """Rebuild a generator from a run directory, checkpoint folder or weights file; no architecture flags.

    Returns the network (with its trained weights, in train mode as built), its architecture config,
    the run config stored with the weights, and the direction it translates.
    """
    resolved = resolve_checkpoint(path)
    files = [resolved] if resolved.is_file() else sorted(resolved.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no weights files in {resolved}")
    config, network = read_metadata(files[0])
    cfg = RunConfig.from_dict(config)
    with torch.device("meta"):  # no memory and no random init: the weights are loaded below
        model = MODELS[cfg.model](cfg.model_config)
    available = model.generators()  # direction -> network name
    if resolved.is_file():
        by_network = {name: d for d, name in available.items()}
        if network not in by_network:
            raise ValueError(f"{resolved} holds network {network!r}, not a generator "
                             f"({', '.join(f'{n} for {d}' for d, n in available.items())})")
        if direction not in (None, by_network[network]):
            raise ValueError(f"{resolved} translates {by_network[network]}, not {direction}")
        direction = by_network[network]
    elif direction is None:
        if len(available) > 1:
            raise ValueError(f"{path} translates {' and '.join(available)}: pick one (--direction, direction=)")
        direction = next(iter(available))
    if direction not in available:
        raise ValueError(f"{path} translates {', '.join(available)} only, not {direction}")
    name = available[direction]
    net = model.networks()[name]
    net.load_state_dict(load_weights(resolved if resolved.is_file() else resolved / f"{name}.safetensors"), assign=True)
    return net, model.generator_config(name), cfg, direction


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad H and W at the bottom/right up to a multiple: reflect, or replicate where the image is too small."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def blend_window(size: int, overlap: int) -> torch.Tensor:
    """1-D weights for blending overlapping tiles: a raised-cosine ramp over `overlap` at both ends."""
    w = torch.ones(size)
    if overlap > 0:
        ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, overlap + 2)[1:-1])
        w[:overlap], w[-overlap:] = ramp, ramp.flip(0)
    return w


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets covering [0, length) with at least `overlap` between neighbours."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@dataclass
class ImageMeta:
    """What a translated array needs to come back in its input's format."""

    dtype: np.dtype
    channels: int
    alpha: np.ndarray | None


@dataclass
class DirSummary:
    """Counts of one `translate_dir` run."""

    translated: int = 0
    skipped: int = 0  # output already there (resumed run) or identical to the input path
    failed: list[str] = field(default_factory=list)  # "path: reason"
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.translated / self.seconds if self.seconds else 0.0
        return (f"translated {self.translated}, skipped {self.skipped} (already done), failed {len(self.failed)} "
                f"in {self.seconds:.1f} s ({rate:.2f} images/s)")


class Translator:
    """Translate images with a trained generator: `Translator.from_pretrained(run_dir)(image)`.

    Any size: by default an image is reflect-padded to the generator's size multiple and the output
    cropped back (`size_mode="resize"` resizes to the training crop and back instead). Images above
    AUTO_TILE_PIXELS, or every image when `tile` is set, are translated in overlapping tiles blended
    with a raised-cosine window, so memory stays bounded. BatchNorm uses each image's own statistics
    (see PerImageBatchNorm), so outputs do not depend on batch mates; dropout is off unless
    `keep_dropout=True` (the paper's stochastic outputs).
    """

    def __init__(self, generator: nn.Module, gen_cfg: GeneratorConfig, cfg: RunConfig, direction: str,
                 device: torch.device, precision: str = "fp32", keep_dropout: bool = False, size_mode: str = "pad",
                 tile: int | None = None, tile_overlap: int = 64) -> None:
        if size_mode not in SIZE_MODES:
            raise ValueError(f"size_mode must be one of {', '.join(SIZE_MODES)}, got {size_mode!r}")
        self.cfg, self.gen_cfg, self.direction, self.device = cfg, gen_cfg, direction, device
        if device.type == "cpu":
            tune_cpu_allocator()
        self.dtype = DTYPES[resolve_precision(precision, device)]
        self.net = per_image_norm(generator).to(device).eval()
        if keep_dropout:
            for m in self.net.modules():
                if isinstance(m, nn.Dropout):
                    m.train()
        self.in_channels, self.out_channels = gen_cfg.in_channels, gen_cfg.out_channels
        self.multiple = generator.size_multiple
        self.size_mode = size_mode
        self.tile = None if tile is None else max(self.multiple, math.ceil(tile / self.multiple) * self.multiple)
        self.tile_overlap = tile_overlap

    @classmethod
    def from_pretrained(cls, path: str | Path, direction: str | None = None, device: str = "auto",
                        precision: str = "fp32", **options: Any) -> Translator:
        """Load from a run directory (latest checkpoint), a checkpoint folder or one weights file."""
        net, gen_cfg, cfg, direction = load_generator(path, direction)
        return cls(net, gen_cfg, cfg, direction, pick_device(device), precision, **options)

    # -- tensors ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            return self.net(x.to(self.device, non_blocking=True)).float()

    def needs_tiling(self, height: int, width: int) -> bool:
        if self.size_mode == "resize":
            return False
        padded = math.ceil(height / self.multiple) * math.ceil(width / self.multiple) * self.multiple**2
        return self.tile is not None or padded > AUTO_TILE_PIXELS

    @torch.no_grad()
    def translate_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW in [-1, 1] -> NCHW in [-1, 1] of the same size (on the CPU)."""
        h, w = x.shape[-2:]
        if self.size_mode == "resize":
            size = (self.cfg.data.crop_size,) * 2
            small = F.interpolate(x.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
            out = self._run(small).cpu()
            return F.interpolate(out, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
        if self.needs_tiling(h, w):
            return torch.cat([self._tiled(img[None]) for img in x])
        return self._run(pad_to_multiple(x.float(), self.multiple))[..., :h, :w].cpu()

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        tile = self.tile or DEFAULT_TILE
        overlap = min(self.tile_overlap, tile // 2)
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x.float(), self.multiple)
        if padded.shape[-2] < tile or padded.shape[-1] < tile:  # smaller than one tile: one pass
            return self._run(padded)[..., :h, :w].cpu()
        H, W = padded.shape[-2:]
        out = torch.zeros(1, self.out_channels, H, W)
        weight = torch.zeros(1, 1, H, W)
        window = blend_window(tile, overlap)
        window2d = (window[:, None] * window[None, :])[None, None]
        for top in tile_starts(H, tile, overlap):
            for left in tile_starts(W, tile, overlap):
                piece = self._run(padded[..., top : top + tile, left : left + tile]).cpu()
                out[..., top : top + tile, left : left + tile] += piece * window2d
                weight[..., top : top + tile, left : left + tile] += window2d
        return (out / weight.clamp_min(1e-8))[..., :h, :w]

    # -- arrays ----------------------------------------------------------------------------------
    def prepare(self, array: np.ndarray) -> tuple[torch.Tensor, ImageMeta]:
        """HxW[xC] uint8/uint16/float array -> 1xCxHxW input tensor, and what restores the format."""
        if array.ndim == 2:
            array = array[:, :, None]
        channels = array.shape[2]
        alpha = array[:, :, -1:] if channels in (2, 4) else None
        if array.dtype.kind == "f":
            x = np.clip(array.astype(np.float32), 0, 1)
            x = to_float((x * 65535).round().astype(np.uint16), self.in_channels)
        else:
            x = to_float(array, self.in_channels)
        return to_tensor(x)[None], ImageMeta(array.dtype, channels, alpha)

    def finish(self, out: torch.Tensor, meta: ImageMeta) -> np.ndarray:
        """CxHxW output in [-1, 1] -> array with the input's dtype and, where the model keeps channels, its
        channel layout (gray stays gray, alpha is carried over)."""
        if self.in_channels == self.out_channels:
            gray = meta.channels in (1, 2)
            if gray and out.shape[0] == 3:
                out = (torch.tensor([0.299, 0.587, 0.114])[:, None, None] * out).sum(0, keepdim=True)
            elif not gray and out.shape[0] == 1:
                out = out.expand(3, -1, -1)
        if meta.dtype.kind == "f":
            result = ((out.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy().astype(meta.dtype)
        else:
            result = to_image(out, np.uint16 if meta.dtype == np.uint16 else np.uint8)
        if meta.alpha is not None and self.in_channels == self.out_channels:
            alpha = meta.alpha
            if alpha.dtype != result.dtype:
                alpha = _convert_depth(alpha, result.dtype)
            result = np.concatenate([result, alpha], axis=2)
        return result

    def translate_arrays(self, arrays: list[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Translate arrays; same-size neighbours are batched together (outputs do not depend on it)."""
        results: list[np.ndarray] = []
        batch: list[tuple[torch.Tensor, ImageMeta]] = []

        def flush() -> None:
            outs = self.translate_tensor(torch.cat([t for t, _ in batch]))
            results.extend(self.finish(o, meta) for o, (_, meta) in zip(outs, batch, strict=True))
            batch.clear()

        for array in arrays:
            tensor, meta = self.prepare(array)
            if batch and (tensor.shape != batch[0][0].shape or len(batch) >= batch_size):
                flush()
            batch.append((tensor, meta))
        if batch:
            flush()
        return results

    def __call__(self, x: Any, tensor_range: tuple[float, float] = (-1.0, 1.0)) -> Any:
        """Translate one image or a list of them, returning the same kind.

        Accepts a file path (-> numpy array), a PIL image (-> PIL image), a numpy array HxW[xC] of
        uint8, uint16 or float in [0, 1] (-> the same dtype), or a torch tensor CxHxW or NxCxHxW with
        values in `tensor_range` ([-1, 1] by default; pass (0, 1) for [0, 1] tensors) (-> a tensor in
        the same range, on the input's device).
        """
        if isinstance(x, list):
            if x and all(isinstance(i, np.ndarray | str | Path) for i in x):
                return self.translate_arrays([read_image(i) if isinstance(i, str | Path) else i for i in x])
            return [self(i, tensor_range) for i in x]
        if isinstance(x, torch.Tensor):
            lo, hi = tensor_range
            batched = x if x.ndim == 4 else x[None]
            out = self.translate_tensor((batched.float() - lo) / (hi - lo) * 2 - 1)
            out = ((out + 1) / 2 * (hi - lo) + lo).to(x.device, x.dtype)
            return out if x.ndim == 4 else out[0]
        if isinstance(x, Image.Image):
            out = self.translate_arrays([pil_to_array(x)])[0]
            return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
        if isinstance(x, str | Path):
            x = read_image(x)
        if isinstance(x, np.ndarray):
            out = self.translate_arrays([x])[0]
            return out[:, :, 0] if x.ndim == 2 else out
        raise TypeError(f"cannot translate a {type(x).__name__}: pass a path, PIL image, numpy array or tensor")

    def translate_file(self, src: str | Path, dst: str | Path, overwrite: bool = False) -> DirSummary:
        """Translate one image file into the file `dst` (its extension picks the format)."""
        src, dst = Path(src), Path(dst)
        summary, started = DirSummary(), time.perf_counter()
        if dst.resolve() == src.resolve():
            raise ValueError(f"refusing to overwrite the input {src}")
        if dst.exists() and not overwrite:
            summary.skipped = 1
        else:
            _write_output(dst, self.translate_arrays([read_image(src)])[0])
            summary.translated = 1
        summary.seconds = time.perf_counter() - started
        return summary

    # -- folders ---------------------------------------------------------------------------------
    def translate_dir(self, src: str | Path, dst: str | Path, *, fmt: str = "same", overwrite: bool = False,
                      strict: bool = False, batch_size: int = 4, allow_inside_input: bool = False,
                      io_threads: int = 2, progress: bool = True) -> DirSummary:
        """Translate a file or a whole tree into `dst`, mirroring relative paths and names.

        Existing outputs are skipped unless `overwrite` (so a killed run resumes), every output is
        written atomically, inputs are never overwritten, and `dst` inside `src` is refused unless
        `allow_inside_input`. Unreadable files are reported and skipped (or raise with `strict`).
        """
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        src, dst = Path(src).resolve(), Path(dst).resolve()
        if not src.exists():
            raise FileNotFoundError(f"input {src} does not exist")
        if src.is_dir() and dst.is_relative_to(src) and not allow_inside_input:
            raise ValueError(f"output {dst} is inside the input folder {src}; choose another output folder "
                             "(or allow it: allow_inside_input=True, --allow-output-inside-input)")
        files = [src] if src.is_file() else [p for p in list_images(src, recursive=True) if not p.is_relative_to(dst)]
        base = src.parent if src.is_file() else src
        summary = DirSummary()
        jobs = []
        for f in files:
            out = output_path(f, base, dst, fmt)
            if out.resolve() == f.resolve() or (out.exists() and not overwrite):
                summary.skipped += 1
            else:
                jobs.append((f, out))
        started = time.perf_counter()
        bar = tqdm(total=len(jobs), disable=not progress, unit="img", dynamic_ncols=True)
        writes: list[tuple[Path, Future]] = []
        batch: list[tuple[torch.Tensor, ImageMeta, Path]] = []

        def fail(path: Path, reason: str) -> None:
            summary.failed.append(f"{path}: {reason}")
            tqdm.write(f"error: {reason}", file=sys.stderr)
            if strict:
                raise ImageReadError(reason)

        with ThreadPoolExecutor(max_workers=max(1, io_threads)) as pool:
            def flush() -> None:
                outs = self.translate_tensor(torch.cat([t for t, _, _ in batch]))
                for out, (_, meta, path) in zip(outs, batch, strict=True):
                    writes.append((path, pool.submit(_write_output, path, self.finish(out, meta))))
                bar.update(len(batch))
                bar.set_postfix_str(f"{bar.n / max(time.perf_counter() - started, 1e-9):.2f} img/s")
                batch.clear()

            for (source, out_path), future in prefetch(pool, lambda job: read_image(job[0]), jobs, 2 * batch_size):
                try:
                    array = future.result()
                except ImageReadError as err:
                    fail(source, str(err))
                    bar.update(1)
                    continue
                tensor, meta = self.prepare(array)
                alone = self.needs_tiling(*tensor.shape[-2:])
                if batch and (alone or tensor.shape != batch[0][0].shape or len(batch) >= batch_size):
                    flush()
                batch.append((tensor, meta, out_path))
                if alone:
                    flush()
            if batch:
                flush()
            for path, future in writes:
                try:
                    future.result()
                    summary.translated += 1
                except (OSError, ValueError) as err:
                    fail(path, f"cannot write {path}: {err}")
        bar.close()
        summary.seconds = time.perf_counter() - started
        return summary


def _convert_depth(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint16:
        return array.astype(np.uint16) * 257
    return (array.astype(np.float32) / 257).round().astype(np.uint8)


def _write_output(path: Path, array: np.ndarray) -> None:
    if array.dtype == np.uint16 and path.suffix.lower() not in (".png", ".tif", ".tiff"):
        array = _convert_depth(array, np.uint8)
    if path.suffix.lower() in (".jpg", ".jpeg") and array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[:, :, :-1]  # JPEG has no alpha
    write_image(path, array)


def output_path(source: Path, base: Path, dst: Path, fmt: str) -> Path:
    """Where the translation of `source` goes: the same relative path under `dst`, extension by `fmt`."""
    rel = source.relative_to(base)
    return dst / (rel if fmt == "same" else rel.with_suffix(f".{fmt}"))


def prefetch(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, depth: int) -> Iterator[tuple[Any, Future]]:
    """Yield (item, future of fn(item)) in order, keeping at most `depth` jobs in flight."""
    pending: deque = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= depth:
            yield pending.popleft()
    while pending:
        yield pending.popleft()
