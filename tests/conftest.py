"""Shared fixtures (helpers that are plain functions live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_pairs


@pytest.fixture
def paired_root(tmp_path: Path) -> Path:
    """Six 32x32 side-by-side pairs under tmp/pairs/train."""
    return write_pairs(tmp_path / "pairs")
