"""What the Python API accepts as an image array or tensor, with errors in the caller's terms (shape, dtype, range).

Arrays: HxW or HxWxC (C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) of uint8 (0..255), uint16 (0..65535) or
float16/32/64 in [0, 1] (or in the `value_range` the caller names). Tensors: CxHxW or NxCxHxW, floating
point, with values in `tensor_range`. NaN and infinity are refused everywhere: they have no pixel value.
"""

from __future__ import annotations

import numpy as np
import torch

ARRAY_DTYPES = ("uint8", "uint16", "float16", "float32", "float64")
ARRAY_SHAPES = "HxW (gray) or HxWxC with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)"
RANGE_SLACK = 1e-4  # of the range's span: rounding in the caller's own scaling is not an error


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _check_range(name: str, lo_seen: float, hi_seen: float, value_range: tuple[float, float], hint: str) -> None:
    lo, hi = value_range
    slack = RANGE_SLACK * (hi - lo)
    if lo_seen < lo - slack or hi_seen > hi + slack:
        raise ValueError(f"{name} values span [{lo_seen:.6g}, {hi_seen:.6g}], outside the expected range [{lo:g}, "
                         f"{hi:g}]; {hint}")


def check_value_range(value_range: tuple[float, float], name: str = "value_range") -> tuple[float, float]:
    """A (low, high) pair of finite numbers with low < high."""
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair of numbers, got {value_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with low < high, got {value_range!r}")
    return lo, hi


def check_array(array: object, value_range: tuple[float, float] | None = None, channels: int | None = None,
                ) -> tuple[float, float] | None:
    """Raise TypeError/ValueError unless `array` is an image array i2i translates; returns the value range of a
    float array ([0, 1] unless `value_range` says otherwise), None for integer arrays. `channels`: the model's
    input channels; an array of that many bands is accepted whatever the count."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(array).__name__}")
    if array.dtype.name not in ARRAY_DTYPES:
        raise TypeError(f"arrays of dtype {array.dtype} are not translated: pass uint8 (0..255), uint16 (0..65535) "
                        "or float (0..1, or say the range with value_range=(low, high)), e.g. array.astype(np.uint8)")
    if array.ndim not in (2, 3):
        raise ValueError(f"an array of shape {_shape(array.shape)} is not one image: expected {ARRAY_SHAPES}"
                         + ("; for several images pass a list of arrays (or an NxCxHxW tensor)" if array.ndim == 4
                            else ""))
    if array.size == 0:
        raise ValueError(f"an empty array (shape {_shape(array.shape)}) is not an image: expected {ARRAY_SHAPES} "
                         "with H, W >= 1")
    fits = channels is not None and array.ndim == 3 and array.shape[2] == channels
    if array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4) and not fits:
        hint = ""
        if array.shape[0] in (1, 2, 3, 4):
            hint = "; this looks like a CxHxW array: pass array.transpose(1, 2, 0)"
        wanted = ARRAY_SHAPES if channels in (None, 1, 3) else f"HxWx{channels} (the model's input channels)"
        raise ValueError(f"an array of shape {_shape(array.shape)} has {array.shape[2]} channels: expected "
                         f"{wanted}{hint}")
    if array.dtype.kind != "f":
        if value_range is not None:
            raise ValueError(f"value_range applies to float arrays; a {array.dtype} array's range is fixed")
        return None
    bounds = (0.0, 1.0) if value_range is None else check_value_range(value_range)
    if not np.isfinite(array).all():
        raise ValueError(f"the array holds NaN or infinite values ({int((~np.isfinite(array)).sum())} of "
                         f"{array.size}): they have no pixel value")
    _check_range("the array's", float(array.min()), float(array.max()), bounds,
                 "float arrays are read as [0, 1]: pass value_range=(low, high) to give yours (e.g. (0, 255)), "
                 "or scale the array")
    return bounds


def check_tensor(tensor: torch.Tensor, channels: int, tensor_range: tuple[float, float]) -> tuple[float, float]:
    """Raise TypeError/ValueError unless `tensor` is CxHxW or NxCxHxW, floating point, with `channels` channels,
    finite and within `tensor_range`; returns the range."""
    bounds = check_value_range(tensor_range, "tensor_range")
    tensor = tensor.detach()  # only its values are read (reading a scalar of a requires_grad tensor warns)
    if not tensor.is_floating_point():
        raise TypeError(f"tensors of dtype {tensor.dtype} are not translated: pass a floating-point tensor with "
                        f"values in tensor_range={tensor_range} (e.g. t.float() / 255 with tensor_range=(0, 1))")
    shape = tuple(tensor.shape)
    if tensor.ndim not in (3, 4):
        raise ValueError(f"a tensor of shape {_shape(shape)} is not CxHxW or NxCxHxW")
    if tensor.numel() == 0:
        raise ValueError(f"an empty tensor (shape {_shape(shape)}) is not an image: H, W and N must be >= 1")
    if shape[-3] != channels:
        hint = ""
        if shape[-1] == channels:
            hint = "; this looks like HxWxC: pass t.permute(2, 0, 1) (or t.permute(0, 3, 1, 2) for a batch)"
        raise ValueError(f"a tensor of shape {_shape(shape)} has {shape[-3]} channels in dimension {tensor.ndim - 3}; "
                         f"the generator takes {channels} (CxHxW or NxCxHxW){hint}")
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        raise ValueError(f"the tensor holds NaN or infinite values ({int((~finite).sum())} of {tensor.numel()}): "
                         "they have no pixel value")
    _check_range("the tensor's", float(tensor.min()), float(tensor.max()), bounds,
                 "pass tensor_range=(low, high) to give yours ((-1, 1) is the default, (0, 1) is common)")
    return bounds
