"""The model registry: the name a user picks (`i2i train NAME`, config files) -> the model class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

MODELS: dict[str, type] = {}
M = TypeVar("M", bound=type)


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make the model class known as `name` (its CLI command, its configs' "model" field)."""
    def register(cls: M) -> M:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"a model named {name!r} is already registered ({MODELS[name].__name__})")
        MODELS[name] = cls
        cls.name = name
        return cls
    return register
