"""Synthetic classes made of two distinct parts each: a network trained on them has known concepts.

Every class has two parts (a colour and a texture of its own) pasted in two
different quadrants of a noisy grey ground; in training each part is
sometimes left out, so the network must recognise either part alone. Used by
the tests and by ``examples/concepts_parts.py`` (no downloaded weights).
"""
from __future__ import annotations

import torch
from torch import nn

from maco.models import Model
from maco.toy import train_classifier

# per class: two parts, each (RGB colour, texture)
CLASS_PARTS = [
    [((1.0, 0.15, 0.1), "disk"), ((0.1, 0.8, 0.2), "vstripes")],
    [((0.15, 0.3, 1.0), "hstripes"), ((1.0, 0.9, 0.1), "checker")],
    [((0.9, 0.2, 0.9), "checker"), ((0.1, 0.9, 0.9), "disk")],
]
PART_FRACTION = 14 / 48  # part side / image side


def part_pattern(texture: str, side: int) -> torch.Tensor:
    """(side, side) pattern in [0, 1]; stripes and checks have a period of side / 3.5."""
    coords = torch.arange(side, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    period = side / 3.5
    if texture == "disk":
        return (((y - side / 2 + 0.5) ** 2 + (x - side / 2 + 0.5) ** 2) < (side / 2) ** 2).float()
    if texture == "vstripes":
        return (x % period < period / 2).float()
    if texture == "hstripes":
        return (y % period < period / 2).float()
    return ((x // (period / 2) + y // (period / 2)) % 2).float()


def draw(label: int, keep: tuple[bool, bool], generator: torch.Generator, size: int = 48):
    """One (3, size, size) image of class ``label`` and the (x, y) corner of each part (None when left out)."""
    side = round(PART_FRACTION * size)
    image = 0.5 + 0.05 * torch.randn(3, size, size, generator=generator)
    cells = torch.randperm(4, generator=generator)[:2]  # two distinct quadrants: parts never overlap
    corners = []
    for (colour, texture), cell, present in zip(CLASS_PARTS[label], cells.tolist(), keep):
        if not present:
            corners.append(None)
            continue
        jitter = torch.randint(0, size // 2 - side + 1, (2,), generator=generator).tolist()
        x, y = (cell % 2) * (size // 2) + jitter[0], (cell // 2) * (size // 2) + jitter[1]
        mask = part_pattern(texture, side)
        region = image[:, y:y + side, x:x + side]
        image[:, y:y + side, x:x + side] = region * (1 - mask) + torch.tensor(colour).view(3, 1, 1) * mask
        corners.append((x, y))
    return image.clamp(0, 1), corners


def parts_batch(labels: torch.Tensor, generator: torch.Generator, size: int = 48, drop: float = 0.3) -> torch.Tensor:
    """Training images: each part left out with probability ``drop``, never both."""
    images = []
    for label in labels.tolist():
        keep = torch.rand(2, generator=generator) > drop
        if not keep.any():
            keep[torch.randint(2, (1,), generator=generator)] = True
        images.append(draw(label, tuple(keep.tolist()), generator, size)[0])
    return torch.stack(images)


def overlap(box: torch.Tensor, corner, side: float) -> float:
    """Fraction of a part's square covered by an (x1, y1, x2, y2) box; 0 for a missing part."""
    if corner is None:
        return 0.0
    x1, y1, x2, y2 = box.tolist()
    width = max(0.0, min(x2, corner[0] + side) - max(x1, corner[0]))
    height = max(0.0, min(y2, corner[1] + side) - max(y1, corner[1]))
    return width * height / side**2


def parts_cnn_net() -> nn.Sequential:
    """A small CNN for the parts classes; module "4" (the second block) separates the parts, module "6" the classes."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, len(CLASS_PARTS)),
    )


def train_on_parts(net: nn.Module, model: Model, steps: int, batch: int = 48, lr: float = 3e-3) -> float:
    """Train ``net`` (the network inside ``model``) on the parts classes; returns held-out accuracy."""
    return train_classifier(model, lambda labels, generator: parts_batch(labels, generator, model.input_size),
                            len(CLASS_PARTS), steps, batch, lr, held_out_per_class=20)
