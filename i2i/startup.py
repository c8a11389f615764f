"""Start-up cost: keep Python's cyclic garbage collector off torch's large, permanent module graphs."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived() -> Iterator[None]:
    """Run a block that creates permanent objects (imports) with the cyclic GC off, then freeze them.

    Importing torch, and torch._dynamo (which the first torch.optim optimizer imports), creates
    about a million objects that live as long as the process. Meanwhile the collector walks the
    growing heap again and again (six full collections, 0.55 s of a Pix2Pix run's start-up,
    measured), and every later collection would walk it once more. gc.freeze() moves what exists
    now to the permanent generation, which collections skip.
    """
    enabled = gc.isenabled()
    gc.collect()  # what is garbage already must not be frozen with the rest
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def import_dynamo() -> None:
    """Import torch._dynamo as long-lived objects: the first torch.optim optimizer imports it anyway."""
    if "torch._dynamo" not in sys.modules:
        with long_lived():
            import torch._dynamo  # noqa: F401
