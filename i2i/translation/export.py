"""Export a trained generator to ONNX or TorchScript with dynamic batch, height and width."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from i2i.config import EXPORT_FORMATS
from i2i.nets.layers import per_image_norm
from i2i.translation.translator import load_generator


class PaddedGenerator(nn.Module):
    """The generator with its size rule built in: reflect-pad to the multiple, run, crop back.

    Input and output are NCHW in [-1, 1]. Unlike the Translator (which falls back to replicate
    padding), the exported graph always reflects, so each side must exceed the padding it needs.
    """

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net, self.multiple = net, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        pad_h = (self.multiple - h % self.multiple) % self.multiple
        pad_w = (self.multiple - w % self.multiple) % self.multiple
        return self.net(F.pad(x, (0, pad_w, 0, pad_h), mode="reflect"))[:, :, :h, :w]


def example_size(multiple: int) -> tuple[int, int]:
    """A height and width to trace with: unequal, not multiples, and larger than the padding they need
    (reflect padding cannot exceed the input, so a 96x80 example fails unet_256's multiple of 256)."""
    return multiple + 32, multiple + 16


def exportable(path: str | Path, direction: str | None = None, ema: bool = True) -> tuple[PaddedGenerator, dict, int]:
    """The padded, per-image-normalised generator of a checkpoint, its run config and input channels."""
    net, gen_cfg, cfg, direction = load_generator(path, direction, ema)
    model = PaddedGenerator(per_image_norm(net).eval(), net.size_multiple).eval()
    meta = {"i2i_config": cfg.to_dict(), "direction": direction, "input_range": "[-1, 1]", "layout": "NCHW"}
    return model, meta, gen_cfg.in_channels


def export(path: str | Path, out: str | Path, fmt: str = "onnx", direction: str | None = None, ema: bool = True,
           ) -> Path:
    """Write the generator of checkpoint `path` to `out` as ONNX (needs i2i[export]) or TorchScript."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    model, meta, channels = exportable(path, direction, ema)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, channels, *example_size(model.multiple)) * 2 - 1
    if fmt == "torchscript":
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the size check traces as a constant
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still loadable
            traced = torch.jit.trace(model, example)
            torch.jit.save(traced, str(out), _extra_files={"i2i.json": json.dumps(meta)})
        return out
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError as err:
        raise RuntimeError("ONNX export needs the export extra: pip install 'i2i[export]'") from err
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    with torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes={"x": dims},
                                    input_names=["image"], output_names=["translated"], verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"i2i": json.dumps(meta)})
    onnx.save(proto, str(out))
    return out
