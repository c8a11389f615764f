"""Translator: rebuild a trained generator from its checkpoint alone and translate images of any size."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from i2i.checkpoint.weights import (
    CheckpointError,
    file_sha256,
    load_into,
    load_weights,
    read_metadata,
    resolve_checkpoint,
)
from i2i.config import SIZE_MODES, RunConfig, value_ranges
from i2i.data import DataSpec
from i2i.data.checks import check_array, check_tensor
from i2i.data.io import convert_depth, from_unit, pil_to_array, read_image, stack_parts, to_float
from i2i.data.labels import class_ids, one_hot
from i2i.data.tensors import to_image, to_tensor
from i2i.models import MODELS, run_config_from_dict
from i2i.models.ema import EMA_SUFFIX
from i2i.nets import GeneratorConfig
from i2i.nets.fast import gemm_convolutions
from i2i.nets.layers import per_image_norm
from i2i.runtime.devices import DTYPES, autocast, pick_device
from i2i.translation import folders, speed, video, video_encode
from i2i.translation.made_by import MadeBy
from i2i.translation.sides import SIDES, half
from i2i.translation.tree import DirSummary
from i2i.translation.video import VideoOptions
from i2i.translation.video_encode import VideoSummary

T = TypeVar("T")

AUTO_TILE_PIXELS = 1536 * 1536  # above this many (padded) pixels an image is translated in tiles
DEFAULT_TILE = 512


def load_generator(path: str | Path, direction: str | None = None, ema: bool = True,
                   ) -> tuple[nn.Module, GeneratorConfig, RunConfig, str]:
    """Rebuild a generator from a run directory, checkpoint folder or weights file; no architecture flags.

    Returns the network (with its trained weights, in train mode as built), its architecture config,
    the run config stored with the weights, and the direction it translates. A checkpoint that keeps an
    EMA of the generator's weights (G_ema.safetensors, from --ema-decay) gives those, unless `ema=False`.
    """
    return _load(path, direction, ema)[:4]


def run_directions(path: str | Path) -> list[str]:
    """The directions a run directory, checkpoint folder or weights file translates (a CycleGAN run: both)."""
    resolved, _cfg, model, network = _model(path)
    available = model.generators()
    if resolved.is_file():
        return [d for d, name in available.items() if name == network]
    return list(available)


def _model(path: str | Path) -> tuple[Path, RunConfig, Any, str]:
    """The resolved checkpoint, its run config, the model built on the meta device, and the first file's network."""
    resolved = resolve_checkpoint(path)
    files = [resolved] if resolved.is_file() else sorted(resolved.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no weights files in {resolved}")
    config, network = read_metadata(files[0])
    network = network.removesuffix(EMA_SUFFIX)  # a single G_ema.safetensors holds G's averaged weights
    try:
        cfg = run_config_from_dict(config)
        with torch.device("meta"):  # no memory and no random init: the weights are loaded below
            model = MODELS[cfg.model](cfg.model_config)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{files[0]} holds a run config this version of i2i cannot read ({err})") from err
    return resolved, cfg, model, network


def _load(path: str | Path, direction: str | None, ema: bool = True,
          ) -> tuple[nn.Module, GeneratorConfig, RunConfig, str, DataSpec, Path]:
    resolved, cfg, model, network = _model(path)
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
    weights_file = resolved
    if resolved.is_dir():
        averaged = resolved / f"{name}{EMA_SUFFIX}.safetensors"
        weights_file = averaged if ema and averaged.is_file() else resolved / f"{name}.safetensors"
    load_into(net, load_weights(weights_file), weights_file, assign=True)
    return net, model.generator_config(name), cfg, direction, model.data_spec(), weights_file


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
    value_range: tuple[float, float] | None = None  # float arrays: the range their values are in


def shaped_like(out: np.ndarray, array: np.ndarray) -> np.ndarray:
    """An HxWx1 output of an HxW input comes back HxW (the same shape as the input)."""
    return out[:, :, 0] if array.ndim == 2 and out.ndim == 3 and out.shape[2] == 1 else out


class Translator:
    """Translate images with a trained generator: `Translator.from_pretrained(run_dir)(image)`.

    Any size: by default an image is reflect-padded to the generator's size multiple and the output
    cropped back (`size_mode="resize"` resizes to the training crop and back instead). Images above
    AUTO_TILE_PIXELS, or every image when `tile` is set, are translated in overlapping tiles blended
    with a raised-cosine window, so memory stays bounded. BatchNorm uses each image's own statistics
    (see nets.layers.PerImageBatchNorm), so outputs do not depend on batch mates; dropout is off unless
    `keep_dropout=True` (the paper's stochastic outputs). `precision="auto"` and `batch_size=None` are timed on
    this machine (translation/speed.py: the fastest whose output is within 3 grey levels of fp32's, cached);
    pass "fp32" for exact outputs. `batch_size` applies to lists and folders.
    `side="A"`/`"B"` translates only the left/right half of each input (side-by-side A|B files).
    """

    def __init__(self, generator: nn.Module, gen_cfg: GeneratorConfig, cfg: RunConfig, direction: str,
                 device: torch.device, precision: str = "auto", keep_dropout: bool = False, size_mode: str = "pad",
                 tile: int | None = None, tile_overlap: int = 64, data_spec: DataSpec | None = None,
                 batch_size: int | None = None, side: str | None = None) -> None:
        if size_mode not in SIZE_MODES:
            raise ValueError(f"size_mode must be one of {', '.join(SIZE_MODES)}, got {size_mode!r}")
        if side not in (None, *SIDES):
            raise ValueError(f"side must be one of {', '.join(SIDES)} or None, got {side!r}")
        self.side = side  # "A"/"B": translate only that half of side-by-side A|B inputs (i2i.translation.sides)
        self.cfg, self.gen_cfg, self.direction, self.device = cfg, gen_cfg, direction, device
        self.data_spec = data_spec  # what the model trained on (evaluation picks paired or unpaired scores by it)
        if precision not in ("auto", *DTYPES):
            raise ValueError(f"unknown precision {precision!r}; choose from auto, {', '.join(DTYPES)}")
        self.net = per_image_norm(gemm_convolutions(generator)).to(device, torch.float32).eval()
        # precision and batch size (for lists and folders): timed here when auto (translation/speed.py)
        self.speed = speed.choose(self.net, device, gen_cfg.in_channels, cfg.data.crop_size, precision, batch_size)
        self.precision, self.batch_size = self.speed.precision, self.speed.batch_size
        self.dtype = DTYPES[self.precision]
        self.weights_dtype = speed.weights_dtype(self.precision)
        self.net = self.net.to(self.weights_dtype)
        if keep_dropout:
            for m in self.net.modules():
                if isinstance(m, nn.Dropout):
                    m.train()
        self.in_channels, self.out_channels = gen_cfg.in_channels, gen_cfg.out_channels
        # what the run's data were: each side's value ranges, stacked input folders, label maps (config.DataConfig)
        data, source_side, target_side = cfg.data, direction[0], direction[-1]
        ranges = {"A": value_ranges(data.a_range), "B": value_ranges(data.b_range)}
        self.in_ranges, self.out_ranges = ranges[source_side], ranges[target_side]
        self.inputs = tuple(data.inputs.split(",")) if source_side == "A" else ("B",)
        self.label_nc = data.label_nc if data_spec is None or data_spec.kind == "paired" else 0
        self.palette = None if data.palette is None else np.array(data.palette, dtype=np.uint8)
        self.multiple = generator.size_multiple
        self.size_mode = size_mode
        self.tile = None if tile is None else max(self.multiple, math.ceil(tile / self.multiple) * self.multiple)
        self.tile_overlap = tile_overlap
        self.source: tuple[Path, Path] | None = None  # (the checkpoint as given, its weights file): from_pretrained
        self._made_by: MadeBy | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, direction: str | None = None, device: str = "auto",
                        precision: str = "auto", ema: bool = True, **options: Any) -> Translator:
        """Load from a run directory (latest checkpoint), a checkpoint folder or one weights file; a checkpoint's
        EMA weights are used when it has them, unless `ema=False`."""
        net, gen_cfg, cfg, direction, spec, weights_file = _load(path, direction, ema)
        translator = cls(net, gen_cfg, cfg, direction, pick_device(device), precision, data_spec=spec, **options)
        translator.source = (Path(path), weights_file)
        return translator

    def made_by(self) -> MadeBy | None:
        """The checkpoint and a fingerprint of the weights (their file's sha256), recorded in the output folders
        of translate_dir; None for a Translator built from a network rather than a checkpoint."""
        if self.source is None:
            return None
        if self._made_by is None:
            given, weights = self.source
            self._made_by = MadeBy(checkpoint=str(given.resolve()), weights=str(weights.resolve()),
                                   sha256=file_sha256(weights), direction=self.direction)
        return self._made_by

    # -- tensors ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.weights_dtype, non_blocking=True)
        with autocast(self.device, self.dtype if self.weights_dtype == torch.float32 else torch.float32):
            return self.net(x).float()

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
    def prepare(self, array: np.ndarray | tuple[np.ndarray, ...], value_range: tuple[float, float] | None = None,
                ) -> tuple[torch.Tensor, ImageMeta]:
        """HxW[xC] array -> 1xCxHxW input tensor, and what restores the format.

        uint8/uint16/float arrays: float ones hold values in `value_range` (default: the run's value range of
        the input side, else [0, 1]); anything else raises (see i2i.data.checks). A model of label maps takes
        class ids (HxW) or colours (HxWx3, mapped to the run's palette) and gives 8-bit images. A tuple is the
        parts of a stacked input (the run's --inputs, in order), each in its own dtype's range.
        """
        if isinstance(array, tuple):
            x = stack_parts([p[:, :, None] if p.ndim == 2 else p for p in array], self.in_ranges)
            return to_tensor(to_float(x, self.in_channels, [(0.0, 1.0)]))[None], ImageMeta(array[0].dtype,
                                                                                          x.shape[2], None)
        if self.label_nc:
            ids = class_ids(array, self.label_nc, self.palette)
            return to_tensor(one_hot(ids, self.label_nc))[None], ImageMeta(np.dtype(np.uint8), 1, None)
        ranges = self.in_ranges if value_range is None else None
        bounds = self._check(array, value_range)
        array = half(array, self.side)
        if array.ndim == 2:
            array = array[:, :, None]
        channels = array.shape[2]
        keeps_alpha = channels == self.in_channels + 1 and self.in_channels in (1, 3)
        alpha = array[:, :, -1:] if keeps_alpha else None
        if ranges is not None:
            x = to_float(array, self.in_channels, ranges)
        elif bounds is not None:
            lo, hi = bounds
            x = np.clip((array.astype(np.float32) - lo) / (hi - lo), 0, 1)
            x = to_float((x * 65535).round().astype(np.uint16), self.in_channels)
        else:
            x = to_float(array, self.in_channels)
        return to_tensor(x)[None], ImageMeta(array.dtype, channels, alpha, bounds)

    def finish(self, out: torch.Tensor, meta: ImageMeta) -> np.ndarray:
        """CxHxW output in [-1, 1] -> array with the input's dtype and, where the model keeps channels, its
        channel layout (gray stays gray, alpha is carried over); in the run's value range of the output side
        when it has one."""
        if self.in_channels == self.out_channels and self.out_channels in (1, 3):
            gray = meta.channels in (1, 2)
            if gray and out.shape[0] == 3:
                out = (torch.tensor([0.299, 0.587, 0.114])[:, None, None] * out).sum(0, keepdim=True)
            elif not gray and out.shape[0] == 1:
                out = out.expand(3, -1, -1)
        if self.out_ranges is not None:
            unit = ((out.clamp(-1, 1).double() + 1) / 2).permute(1, 2, 0).numpy()
            result = from_unit(unit, meta.dtype, self.out_ranges)
        elif meta.dtype.kind == "f":
            lo, hi = meta.value_range or (0.0, 1.0)
            unit = ((out.clamp(-1, 1).double() + 1) / 2).permute(1, 2, 0).numpy()
            result = (unit * (hi - lo) + lo).astype(meta.dtype)
        else:
            result = to_image(out, np.uint16 if meta.dtype == np.uint16 else np.uint8)
        if meta.alpha is not None and self.in_channels == self.out_channels:
            alpha = meta.alpha
            if alpha.dtype != result.dtype:
                alpha = convert_depth(alpha, result.dtype)
            result = np.concatenate([result, alpha], axis=2)
        return result

    def _check(self, array: np.ndarray, value_range: tuple[float, float] | None) -> tuple[float, float] | None:
        """check_array with the run's input value ranges standing in for a float array's default [0, 1]."""
        if value_range is None and self.in_ranges is not None and getattr(array, "dtype", None) is not None \
                and array.dtype.kind == "f":
            value_range = (min(r[0] for r in self.in_ranges), max(r[1] for r in self.in_ranges))
        return check_array(array, value_range, channels=self.in_channels)

    def read(self, path: str | Path) -> np.ndarray:
        """An input file as this model reads it (a label map's palette indices kept)."""
        return read_image(path, indices=bool(self.label_nc))

    def translate_stream(self, items: Iterable[tuple[np.ndarray, T]], batch_size: int | None = None,
                         value_range: tuple[float, float] | None = None) -> Iterator[tuple[np.ndarray, T]]:
        """Translate (array, tag) pairs lazily and in order, yielding (output, tag).

        Same-size neighbours are batched (outputs do not depend on it); images that are tiled go alone.
        """
        prepared = ((*self.prepare(array, value_range), tag) for array, tag in items)
        alone = lambda item: self.needs_tiling(*item[0].shape[-2:])  # noqa: E731
        size = batch_size or self.batch_size
        for group in batched(prepared, key=lambda item: item[0].shape, size=size, alone=alone):
            outs = self.translate_tensor(torch.cat([tensor for tensor, _, _ in group]))
            for out, (_, meta, tag) in zip(outs, group, strict=True):
                yield self.finish(out, meta), tag

    def translate_arrays(self, arrays: list[np.ndarray], batch_size: int | None = None,
                         value_range: tuple[float, float] | None = None) -> list[np.ndarray]:
        """Translate arrays; same-size neighbours are batched together (outputs do not depend on it)."""
        if not self.label_nc:
            for array in arrays:  # every array is checked before any is translated
                self._check(array, value_range)
        return [out for out, _ in self.translate_stream(((a, None) for a in arrays), batch_size, value_range)]

    def __call__(self, x: Any, tensor_range: tuple[float, float] = (-1.0, 1.0),
                 value_range: tuple[float, float] | None = None) -> Any:
        """Translate one image or a list of them, returning the same kind.

        Accepts a file path (-> numpy array), a PIL image (-> PIL image), a numpy array (-> the same dtype
        and shape) HxW or HxWxC (C = 1, 2, 3 or 4: gray, gray + alpha, RGB, RGBA; or the model's own input
        channel count, any N) of uint8, uint16 or float with values in [0, 1] (or in the run's --a-range/
        --b-range, or in `value_range`, e.g. (0, 255), given back in the same range; a label-map model takes
        class ids HxW or colours HxWx3), or a
        floating-point torch tensor CxHxW or NxCxHxW with values in `tensor_range` ([-1, 1] by default; pass
        (0, 1) for [0, 1] tensors) (-> a tensor in the same range, dtype and device). Anything else, values
        outside the range, and NaN or infinity raise TypeError/ValueError saying what was given and what
        is accepted (see i2i.data.checks).
        """
        if isinstance(x, list):
            if x and all(isinstance(i, np.ndarray | str | Path) for i in x):
                arrays = [self.read(i) if isinstance(i, str | Path) else i for i in x]
                outs = self.translate_arrays(arrays, value_range=value_range)
                return [shaped_like(out, a) for out, a in zip(outs, arrays, strict=True)]
            return [self(i, tensor_range, value_range) for i in x]
        if isinstance(x, torch.Tensor):
            lo, hi = check_tensor(x, self.in_channels, tensor_range)
            x = half(x, self.side)
            batched = x if x.ndim == 4 else x[None]
            out = self.translate_tensor((batched.float() - lo) / (hi - lo) * 2 - 1)
            out = ((out + 1) / 2 * (hi - lo) + lo).to(x.device, x.dtype)
            return out if x.ndim == 4 else out[0]
        if isinstance(x, Image.Image):
            out = self.translate_arrays([pil_to_array(x)])[0]
            return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
        if isinstance(x, str | Path):
            x = self.read(x)
        if isinstance(x, np.ndarray):
            return shaped_like(self.translate_arrays([x], value_range=value_range)[0], x)
        raise TypeError(f"cannot translate a {type(x).__name__}: pass a path, PIL image, numpy array or tensor")

    def translate_file(self, src: str | Path, dst: str | Path, overwrite: bool = False,
                       strict: bool = False, video: VideoOptions | None = None) -> DirSummary:
        """Translate one image or video file into the file `dst` (its extension picks the format; see
        i2i.translation.folders)."""
        return folders.translate_file(self.translate_stream, src, dst, overwrite=overwrite, strict=strict,
                                      video=video, indices=bool(self.label_nc))

    def translate_video(self, src: str | Path, dst: str | Path, *, codec: str | None = None, crf: int | None = None,
                        bitrate: int | str | None = None, overwrite: bool = False, progress: bool = True,
                        ) -> VideoSummary:
        """Translate a video file into `dst`, keeping its size, timing, rotation and audio (see i2i.translation.video);
        `bitrate` in bits/s or spelled as on the command line ("4M", "800k")."""
        if self.in_channels not in (1, 3) or self.out_channels not in (1, 3) or self.label_nc or len(self.inputs) > 1:
            raise ValueError(f"videos are RGB frames; this model translates {self.in_channels} -> "
                             f"{self.out_channels} channels" + (" of label maps" if self.label_nc else "")
                             + (f" stacked from {', '.join(self.inputs)}" if len(self.inputs) > 1 else ""))
        return video_encode.translate_video(src, dst, self.translate_arrays, batch_size=self.batch_size, codec=codec,
                                     crf=crf, bitrate=bitrate, overwrite=overwrite, progress=progress)

    def frames(self, src: str | Path) -> Iterator[np.ndarray]:
        """A video's translated frames, upright HxWx3 uint8 RGB, one by one (decoding runs ahead in a thread)."""
        return video.frames(src, self.translate_arrays, batch_size=self.batch_size)

    def translate_dir(self, src: str | Path, dst: str | Path, *, fmt: str = "same", overwrite: bool = False,
                      strict: bool = False, batch_size: int | None = None, allow_inside_input: bool = False,
                      io_threads: int = 2, progress: bool = True, shard: tuple[int, int] | None = None,
                      video: VideoOptions | None = None) -> DirSummary:
        """Translate a file or a whole tree of images and videos into `dst`, mirroring relative paths and names
        (see i2i.translation.folders); `shard=(rank, world)`: only this process's share of the files; `video`:
        how videos are encoded. The checkpoint is recorded in `dst`: one that another checkpoint made is refused
        (ValueError) unless `overwrite` (see i2i.translation.made_by)."""
        def translate(items: Iterable[tuple[np.ndarray, Any]]) -> Iterator[tuple[np.ndarray, Any]]:
            return self.translate_stream(items, batch_size)

        if fmt == "same" and self.out_channels > 4:  # no image format holds them: TIFF, as the README says
            fmt = "tif"
        if len(self.inputs) > 1:  # the run stacked several folders into its input: SRC holds the same folders
            return folders.translate_stacked(translate, src, dst, self.inputs, fmt=fmt, overwrite=overwrite,
                                             strict=strict, progress=progress)
        return folders.translate_tree(translate, src, dst, fmt=fmt, overwrite=overwrite, strict=strict,
                                      allow_inside_input=allow_inside_input, io_threads=io_threads,
                                      read_ahead=2 * (batch_size or self.batch_size), progress=progress, shard=shard,
                                      video=video, made_by=self.made_by(), indices=bool(self.label_nc))


def batched(items: Iterable[T], key: Callable[[T], Hashable], size: int,
            alone: Callable[[T], bool] = lambda _: False) -> Iterator[list[T]]:
    """Consecutive items with equal `key`, at most `size` to a list; an item with `alone(item)` is its own list."""
    group: list[T] = []
    for item in items:
        single = alone(item)
        if group and (single or key(item) != key(group[0]) or len(group) >= size):
            yield group
            group = []
        group.append(item)
        if single:
            yield group
            group = []
    if group:
        yield group
