"""End to end on real photographs (../shared/data/tiny_demo), skipped with a reason when they are absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from helpers import same_weights, shared_dataset, tiny_config
from i2i.data.io import list_images, read_image
from i2i.training.trainer import train
from i2i.translation.translator import Translator


def test_facades_train_checkpoint_resume_translate(tmp_path: Path) -> None:
    facades = shared_dataset("tiny_demo", "facades")
    runs = tmp_path / "runs"

    def cfg(max_steps: int, name: str = "facades"):
        c = tiny_config(facades, runs, name=name, max_steps=max_steps, save_every=3)
        c.model_config.direction = "BtoA"  # label map (right half) -> photo (left half)
        return c

    straight = train(cfg(6, name="straight"), progress=False)
    train(cfg(3), progress=False)
    resumed = train(cfg(6), resume=True, progress=False)
    assert resumed.steps == 6 and resumed.skipped == 0
    assert same_weights(straight.checkpoint, resumed.checkpoint)
    steps = [json.loads(line)["step"] for line in (runs / "facades" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]

    translator = Translator.from_pretrained(runs / "facades")
    assert translator.direction == "BtoA"
    val = list_images(facades / "val")[0]
    labels = read_image(val)[:, 256:]  # the right half
    photo = translator(labels)
    assert photo.shape == labels.shape and photo.dtype == np.uint8
