"""The demo's synthetic task: six coloured shapes a person can name, composed onto scikit-image's photos.

Each class is one shape in one colour (a red disk, a blue square, a green triangle, a yellow ring, a
magenta cross, a cyan diamond), drawn at a random place and size (radius 9-15 px of a 64 px image,
colour jittered) onto a random crop of one of scikit-image's photos (stimuli.pool's list). The
networks are trained on scenes drawn once (demo/networks.py), their objects' opacity and edge
softness varied; the study's pool is drawn from the same generator with crisp, opaque objects
(``write_pool``): every pool image holds one class object, so an occluder on the object and one off
it change the unit's activation very differently.

Why no texture class: MACO keeps a natural image's magnitude spectrum and optimises only the phase,
so it cannot put a periodic texture's energy into one frequency; the demo's earlier checkerboard
class failed the quality gate on every network in every MACO setting tried (benchmarks/RESULTS.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maco.small_networks import INPUT_SIZE


@dataclass(frozen=True)
class TaskClass:
    name: str  # what a person calls it; also the pool's sub-folder
    shape: str
    colour: tuple[float, float, float]  # RGB in [0, 1]


CLASSES = (
    TaskClass("red disk", "disk", (0.9, 0.1, 0.1)),
    TaskClass("blue square", "square", (0.1, 0.25, 0.95)),
    TaskClass("green triangle", "triangle", (0.1, 0.75, 0.15)),
    TaskClass("yellow ring", "ring", (0.95, 0.85, 0.1)),
    TaskClass("magenta cross", "cross", (0.9, 0.1, 0.85)),
    TaskClass("cyan diamond", "diamond", (0.1, 0.85, 0.9)),
)
CLASS_COLOURS = torch.tensor([c.colour for c in CLASSES])
RADIUS_PX = (9.0, 15.0)  # the object's half-size, of a 64 px image
COLOUR_JITTER = 0.08
OBJECTS_PER_SCENE = (0.2, 0.5, 0.3)  # training scenes' chance of 0, 1, 2 objects (make_scenes)
# training scenes only (make_scenes): objects 40-100% opaque, their edge a ramp 1-4 px wide
TRAINING_OPACITY = (0.4, 1.0)
TRAINING_EDGE_PX = (1.0, 4.0)
BACKGROUND_SIDE = 96  # photos are resized to this shorter side, then cropped to 64 px at random
POOL_DIR = "pool"  # in the demo folder; study_demo.toml's pool.source
# the demo's pool per class: each network's top query.top_k (4) photos of the class may differ, so up to
# 3 x 4 are excluded from the natural references, which need references.per_trial (9) more
POOL_PER_CLASS = 21
SPECTRUM_FILE = "spectrum.npy"  # in the demo folder; study_demo.toml's references.spectrum, measured on the pool
SPECTRUM_SIZE = 128  # the demo study's references.maco.size (MACO resizes a spectrum to any other)
POOL_SEED = 1  # the training bank draws from seed 0 (demo/networks.py): the pool holds other images
TASK_DESCRIPTION = (f"a synthetic task: {len(CLASSES)} classes ({', '.join(c.name for c in CLASSES)}) drawn "
                    "onto random crops of scikit-image's photos")


@lru_cache(maxsize=1)
def backgrounds() -> torch.Tensor:
    """(P, 3, 96, W) scikit-image's photos (stimuli.pool's list), the shorter side resized to 96 px,
    centre-cropped square."""
    from stimuli.pool import SKIMAGE_POOL, list_pool

    pool = list_pool(SKIMAGE_POOL)
    photos = []
    for index in range(len(pool.files)):
        with Image.open(pool.path(index)) as image:
            rgb = image.convert("RGB")
        scale = BACKGROUND_SIDE / min(rgb.size)
        rgb = rgb.resize((max(BACKGROUND_SIDE, round(rgb.width * scale)),
                          max(BACKGROUND_SIDE, round(rgb.height * scale))), Image.Resampling.BILINEAR)
        left, top = (rgb.width - BACKGROUND_SIDE) // 2, (rgb.height - BACKGROUND_SIDE) // 2
        rgb = rgb.crop((left, top, left + BACKGROUND_SIDE, top + BACKGROUND_SIDE))
        photos.append(torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(photos)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def signed_distance(shape: str, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Roughly the distance to the shape's edge in units of the radius; negative inside."""
    if shape == "disk":
        return torch.sqrt(dx ** 2 + dy ** 2) - 1
    if shape == "square":
        return torch.maximum(dx.abs(), dy.abs()) - 0.85
    if shape == "diamond":
        return (dx.abs() + dy.abs()) / 1.2 - 1
    if shape == "triangle":  # pointing up: apex at dy = -1, base at dy = 0.75
        return torch.maximum(dy - 0.75, dx.abs() - (dy + 1) * 0.62)
    if shape == "ring":
        return (torch.sqrt(dx ** 2 + dy ** 2) - 0.72).abs() - 0.28
    if shape == "cross":
        return torch.minimum(torch.maximum(dx.abs() - 0.3, dy.abs() - 1), torch.maximum(dy.abs() - 0.3, dx.abs() - 1))
    raise ValueError(f"unknown shape {shape!r}")


def photo_crops(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, 64, 64) random crops of scikit-image's photos, half of them mirrored."""
    size, photos = INPUT_SIZE, backgrounds()
    which = torch.randint(len(photos), (n,), generator=generator)
    offsets = torch.randint(BACKGROUND_SIDE - size + 1, (n, 2), generator=generator)
    images = torch.stack([photos[w, :, y:y + size, x:x + size] for w, (y, x) in zip(which.tolist(), offsets.tolist())])
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def draw_objects(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                 opacity: tuple[float, float] = (1.0, 1.0), edge_px: tuple[float, float] = (1.0, 1.0),
                 colours: torch.Tensor | None = None) -> torch.Tensor:
    """``images`` with one object of class ``labels[i]`` drawn at a random place and size in image i
    (none where the label is -1), its opacity and the width of its edge's ramp drawn from the ranges,
    in its class's colour or ``colours[i]`` (an (n, 3) RGB in [0, 1]), jittered."""
    n, size = len(labels), images.shape[-1]
    alpha_max = _uniform(n, *opacity, generator)
    edge = _uniform(n, *edge_px, generator)
    radius = _uniform(n, *RADIUS_PX, generator)
    cx = _uniform(n, 0, 1, generator) * (size - 2 * radius) + radius
    cy = _uniform(n, 0, 1, generator) * (size - 2 * radius) + radius
    jitter = (torch.rand(n, 3, generator=generator) * 2 - 1) * COLOUR_JITTER
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dx = (grid[None, None, :] - cx[:, None, None]) / radius[:, None, None]
    dy = (grid[None, :, None] - cy[:, None, None]) / radius[:, None, None]
    images = images.clone()
    for index, task_class in enumerate(CLASSES):
        chosen = labels == index
        if not chosen.any():
            continue
        distance = signed_distance(task_class.shape, dx[chosen], dy[chosen])
        ramp = (0.5 - distance * radius[chosen, None, None] / edge[chosen, None, None]).clamp(0, 1)
        alpha = (ramp * alpha_max[chosen, None, None])[:, None]
        base = torch.tensor(task_class.colour)[None] if colours is None else colours[chosen]
        colour = (base + jitter[chosen]).clamp(0, 1)[:, :, None, None]
        images[chosen] = images[chosen] * (1 - alpha) + colour * alpha
    return images


def make_batch(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, 64, 64) images in [0, 1], one object of class ``labels[i]`` in image i (maco.toy's BatchMaker)."""
    return draw_objects(photo_crops(len(labels), generator), labels, generator)


def make_scenes(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 64, 64) training images with 0, 1 or 2 objects (``OBJECTS_PER_SCENE``) and their (n, classes)
    0/1 targets: a network trained on them learns each class as a detector of its own.

    Objects are drawn faint and soft as well as crisp (``TRAINING_OPACITY``, ``TRAINING_EDGE_PX``):
    trained on crisp ones only, the detectors answered only to flat, saturated, sharp-edged shapes,
    which MACO's low-contrast images (fixed natural magnitude) never reach, so half of its
    references left their unit's logit below another class's (docs/demo.md)."""
    images = photo_crops(n, generator)
    targets = torch.zeros(n, len(CLASSES))
    counts = torch.multinomial(torch.tensor(OBJECTS_PER_SCENE), n, replacement=True, generator=generator)
    for k in range(len(OBJECTS_PER_SCENE) - 1):
        labels = torch.where(counts > k, torch.randint(len(CLASSES), (n,), generator=generator), -1)
        images = draw_objects(images, labels, generator, TRAINING_OPACITY, TRAINING_EDGE_PX)
        drawn = labels >= 0
        targets[torch.nonzero(drawn).flatten(), labels[drawn]] = 1
    return images, targets


def pool_is_current(folder: Path, per_class: int) -> bool:
    """The folder holds ``write_pool``'s layout at ``per_class`` images per class."""
    return all(len(list((folder / c.name.replace(" ", "_")).glob("*.png"))) == per_class for c in CLASSES)


def write_pool(folder: Path, per_class: int, seed: int) -> list[Path]:
    """``per_class`` images of every class, one sub-folder per class (the pool's layout), as 64 px PNGs."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASSES)).repeat_interleave(per_class)
    images = make_batch(labels, generator)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    paths = []
    for number, (label, array) in enumerate(zip(labels.tolist(), pixels)):
        path = folder / CLASSES[label].name.replace(" ", "_") / f"{number % per_class:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths
