"""i2i: image-to-image translation (Pix2Pix, CycleGAN) — installable, fast, safe.

Importing the package is cheap and changes nothing in the process: the public names below are
imported on first use (PEP 562), so `import i2i` neither imports torch nor touches the garbage
collector, thread pools or torch flags.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from i2i.version import __version__

if TYPE_CHECKING:
    from i2i.nets import build_discriminator, build_generator
    from i2i.training.trainer import train
    from i2i.translation.translator import Translator, load_generator

_LAZY = {
    "Translator": "i2i.translation.translator",
    "load_generator": "i2i.translation.translator",
    "build_discriminator": "i2i.nets",
    "build_generator": "i2i.nets",
    "train": "i2i.training.trainer",
}

__all__ = ["Translator", "__version__", "build_discriminator", "build_generator", "load_generator", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'i2i' has no attribute {name!r}")
