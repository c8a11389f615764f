"""Translator: rebuild a trained generator from its checkpoint alone and translate images of any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from i2i.checkpoint import load_weights, read_metadata, resolve_checkpoint
from i2i.config import RunConfig
from i2i.data.io import read_image, to_float
from i2i.data.transforms import to_image, to_tensor
from i2i.models import MODELS
from i2i.nets import GeneratorConfig
from i2i.trainer import DTYPES, pick_device


class PerImageBatchNorm(nn.Module):
    """BatchNorm that normalises each image by its own statistics, with the trained affine parameters.

    This is what the reference pix2pix computes at test time (train-mode BatchNorm at batch size 1),
    made independent of the batch: an image's output never depends on its batch mates.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def per_image_norm(net: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in `net` (in place) by PerImageBatchNorm."""
    for name, child in net.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(net, name, PerImageBatchNorm(child))
        else:
            per_image_norm(child)
    return net


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
            raise ValueError(f"{path} translates {' and '.join(available)}: pick one with direction=")
        direction = next(iter(available))
    if direction not in available:
        raise ValueError(f"{path} translates {', '.join(available)} only, not {direction}")
    name = available[direction]
    net = model.networks()[name]
    net.load_state_dict(load_weights(resolved if resolved.is_file() else resolved / f"{name}.safetensors"))
    return net, model.generator_config(name), cfg, direction


def reflect_pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W (reflect, or replicate where the image is too small to reflect) up to a multiple."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


class Translator:
    """Translate images with a trained generator: `Translator.from_pretrained(run_dir)(image)`.

    Images of any size are padded (reflect) to the generator's size multiple and cropped back.
    BatchNorm uses each image's own statistics (see PerImageBatchNorm); dropout is off unless
    `keep_dropout=True` (the paper's stochastic outputs).
    """

    def __init__(self, generator: nn.Module, gen_cfg: GeneratorConfig, cfg: RunConfig, direction: str,
                 device: torch.device, precision: str = "fp32", keep_dropout: bool = False) -> None:
        self.cfg, self.direction, self.device = cfg, direction, device
        self.dtype = DTYPES[precision]
        self.net = per_image_norm(generator).to(device).eval()
        if keep_dropout:
            for m in self.net.modules():
                if isinstance(m, nn.Dropout):
                    m.train()
        self.in_channels, self.out_channels = gen_cfg.in_channels, gen_cfg.out_channels
        self.multiple = getattr(generator, "size_multiple", 1)

    @classmethod
    def from_pretrained(cls, path: str | Path, direction: str | None = None, device: str = "auto",
                        precision: str = "fp32", keep_dropout: bool = False) -> Translator:
        net, gen_cfg, cfg, direction = load_generator(path, direction)
        return cls(net, gen_cfg, cfg, direction, pick_device(device), precision, keep_dropout)

    @torch.no_grad()
    def translate_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW in [-1, 1] -> NCHW in [-1, 1], same size."""
        x = x.to(self.device, torch.float32)
        padded, (h, w) = reflect_pad_to(x, self.multiple)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            out = self.net(padded)
        return out[..., :h, :w].float()

    def __call__(self, image: np.ndarray | str | Path) -> np.ndarray:
        """An image file or HxWxC uint8/uint16 array -> the translated uint8 array of the same size."""
        array = read_image(image) if isinstance(image, str | Path) else image
        if array.ndim == 2:
            array = array[:, :, None]
        x = to_tensor(to_float(array, self.in_channels))[None]
        return to_image(self.translate_tensor(x)[0].cpu())
