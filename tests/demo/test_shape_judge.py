"""The shape judge (demo/shape_judge.py) on the task's own images, whose shapes are known."""
from __future__ import annotations

import torch

from demo.shape_judge import judge_shapes
from demo.task import CLASS_COLOURS, CLASSES, draw_objects, make_batch, photo_crops

PER_CLASS = 12


def test_the_judge_names_the_shape_of_the_tasks_objects() -> None:
    labels = torch.arange(len(CLASSES)).repeat(PER_CLASS)
    images = make_batch(labels, torch.Generator().manual_seed(11))
    assert (judge_shapes(images, labels) == labels).float().mean() >= 0.9


def test_the_judge_sees_the_shape_drawn_in_the_colour_asked_not_the_class_of_the_colour() -> None:
    """Every shape drawn in the red disk's red: judged in red, each is its own shape (a red cross is a cross)."""
    generator = torch.Generator().manual_seed(12)
    labels = torch.arange(len(CLASSES)).repeat(PER_CLASS)
    red = CLASS_COLOURS[torch.zeros_like(labels)]
    images = draw_objects(photo_crops(len(labels), generator), labels, generator, colours=red)
    assert (judge_shapes(images, torch.zeros_like(labels)) == labels).float().mean() >= 0.9


def test_a_shapeless_blob_of_the_colour_is_judged_a_compact_shape() -> None:
    """What the judge makes of a soft blob (what the MACO references of colour-keyed units hold):
    a disk, square or diamond, never a ring, a cross or a triangle; so it counts for the disk unit only."""
    generator = torch.Generator().manual_seed(13)
    photos = photo_crops(6, generator)
    grid = torch.arange(64, dtype=torch.float32)
    blob = torch.exp(-((grid[None, :] - 32) ** 2 + (grid[:, None] - 30) ** 2) / (2 * 8.0 ** 2))
    classes = torch.arange(len(CLASSES))
    images = photos * (1 - blob) + CLASS_COLOURS[classes][:, :, None, None] * blob
    compact = {i for i, c in enumerate(CLASSES) if c.shape in ("disk", "square", "diamond")}
    assert set(judge_shapes(images, classes).tolist()) <= compact
