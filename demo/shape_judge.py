"""A colour-blind shape judge: does a unit's reference image show its class's shape?

The demo's classes differ in shape and in colour (demo/task.py), so a picture can show the colour
without the shape. The judge is a small network trained as the demo's networks are, on scenes whose
objects all take random colours (``make_scenes(own_colour=0)``): colour tells it nothing about the
class, so its answer is the shape. A reference (resized to the network's 64 px) is judged to show
the shape of the class whose logit is the judge's highest. ``scripts/demo_shape_judge.py`` scores a
bundle's references with it (benchmarks/RESULTS.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maco.small_networks import INPUT_SIZE

from .networks import Recipe, new_model, train_detectors
from .task import CLASS_COLOURS, CLASSES, draw_objects, make_scenes, photo_crops

JUDGE = Recipe("small_resnet", 600, 3e-3, seed=7)
JUDGE_IMAGES = 2400
JUDGE_SEED = 7  # its scenes: neither the demo's training bank (0) nor its pool (1)


@dataclass
class Judge:
    model: object  # maco.models.Model
    accuracy: float  # held-out: single objects, each in one of the classes' colours at random

    def shapes(self, images: torch.Tensor) -> torch.Tensor:
        """The class index whose shape each (N, 3, 64, 64) image in [0, 1] shows."""
        with torch.no_grad():
            return self.model(images).argmax(1)


def train_judge(held_out_per_class: int = 50) -> Judge:
    """The judge, trained in about 20 s on 2 cores; its accuracy is on fresh objects in random class colours."""
    generator = torch.Generator().manual_seed(JUDGE_SEED)
    model = new_model(JUDGE)
    train_detectors(model, make_scenes(JUDGE_IMAGES, generator, own_colour=0.0), JUDGE)
    labels = torch.arange(len(CLASSES)).repeat(held_out_per_class)
    images = draw_objects(photo_crops(len(labels), generator), labels, generator,
                          colours=CLASS_COLOURS[torch.randint(len(CLASSES), (len(labels),), generator=generator)])
    judge = Judge(model, 0.0)
    judge.accuracy = (judge.shapes(images) == labels).float().mean().item()
    return judge


def load_images(paths: list[Path]) -> torch.Tensor:
    """(N, 3, 64, 64) in [0, 1]: the files resized to the networks' input, as the networks see them."""
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(rgb, dtype=np.float32) / 255)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def shape_scores(bundle: Path, judge: Judge, conditions: tuple[str, ...] = ("maco", "olah")) -> list[dict]:
    """Per network, unit and condition: how many of the unit's references the judge sees as its class's shape."""
    from stimuli.manifest import image_path, load_manifest

    manifest = load_manifest(bundle)
    names = [c.name for c in CLASSES]
    rows = []
    for unit in manifest.units:
        for condition in conditions:
            ids = manifest.reference_images(unit.key, condition)
            if not ids:
                continue
            seen = judge.shapes(load_images([image_path(bundle, i) for i in ids])).tolist()
            rows.append({"network": unit.network, "unit": unit.label, "condition": condition, "references": len(ids),
                         "shape_shown": sum(names[s] == unit.label for s in seen),
                         "judged": [names[s] for s in seen]})
    return rows
