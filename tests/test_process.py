"""Tests for i2i.runtime.process: the collector is paused during imports, restored after, and garbage is never
frozen."""

from __future__ import annotations

import gc
import weakref

import pytest

from i2i.runtime.process import long_lived


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def _unfreeze():
    yield
    gc.unfreeze()


def test_collector_is_off_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with long_lived():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with long_lived():
            pass
        assert not gc.isenabled()  # a caller who had it off keeps it off
    finally:
        gc.enable()


def test_existing_garbage_is_collected_not_frozen() -> None:
    garbage = _Node()
    ref = weakref.ref(garbage)
    del garbage
    with long_lived():
        kept = _Node()
    assert ref() is None
    assert gc.get_freeze_count() > 0 and kept.me is kept


def test_restores_the_collector_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), long_lived():
        raise RuntimeError("boom")
    assert gc.isenabled()
