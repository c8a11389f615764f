"""Shared fixtures (helpers that are plain functions live in helpers.py).

Tests run on the CPU, also on a machine with a GPU, so that their numbers do not depend on the machine;
tests marked `gpu` run on CUDA and are skipped, with the reason, where there is none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from helpers import write_pairs

HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """device="auto" means the CPU in unmarked tests, in this process and in the processes they start."""
    if HAS_CUDA and "gpu" not in request.keywords:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def _fixed_speed_rules(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Speed choices by the fixed rules (tests/test_autotune.py measures), and no cache outside the test's
    folders: timing settings on every tiny test run would only slow the suite and make it depend on load."""
    monkeypatch.setenv("I2I_AUTOTUNE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg_cache"))


@pytest.fixture
def paired_root(tmp_path: Path) -> Path:
    """Six 32x32 side-by-side pairs under tmp/pairs/train."""
    return write_pairs(tmp_path / "pairs")


@pytest.fixture
def messages(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """What i2i logged so far in the test (INFO and up), one message per line, as the `i2i` command prints them
    (the library prints nothing itself: it logs)."""
    caplog.set_level(logging.INFO, logger="i2i")
    return lambda: "\n".join(record.getMessage() for record in caplog.records)
