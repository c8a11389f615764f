"""History buffer of generated images (Shrivastava et al. 2017), as CycleGAN uses for its discriminators."""

from __future__ import annotations

import random

import torch


class ImagePool:
    """Keeps up to `size` past fakes. Each queried image is returned as is while the pool fills up;
    after that, with probability 1/2 it is swapped for a random stored image (which it replaces).

    `size == 0` turns the pool off (queries return their input). The pool draws from its own RNG so
    its choices are reproducible and checkpointable (`state_dict`).
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images.detach()  # like every other answer: D's update must not reach back into G's graph
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.random() < 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        stored = torch.cat(self.images).cpu() if self.images else torch.empty(0)
        return {"images": stored, "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        stored = state["images"]
        self.images = [img.unsqueeze(0).to(device) for img in stored] if stored.numel() else []
        self.rng.setstate(_as_rng_state(state["rng"]))


def _as_rng_state(state: tuple | list) -> tuple:
    """random.Random states must be nested tuples; a round trip through a checkpoint may give lists."""
    version, internal, gauss = state
    return version, tuple(internal), gauss
