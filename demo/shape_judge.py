"""A shape judge: does a unit's reference image show its class's shape, or only its colour?

The demo's classes differ in shape and in colour (demo/task.py), so a picture can show the colour
without the shape. The judge finds where the image holds the class's colour (its chroma: the pixel's
colour minus its grey, projected on the class colour's, so a faint, low-contrast MACO image counts
as well as a saturated photo), then matches that map against the six shapes' templates (the task's
own ``signed_distance``: inside +, a margin around it -, at several sizes and every place,
normalised cross-correlation) and names the shape that matches best. No training: it judges a
reference the same way before and after a change to the networks. Its accuracy on the pool's
photos is its check (``scripts/demo_shape_judge.py``). A shapeless blob of the colour matches the
compact shapes (disk, square, diamond) best, so a disk unit's blob counts as its shape: read the
other units' scores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from maco.small_networks import INPUT_SIZE

from .task import CLASS_COLOURS, CLASSES, signed_distance

RADII_PX = (6.0, 8.0, 9.5, 11.0, 12.5, 14.0, 16.0, 19.0)  # of a 64 px image: the task draws 9-15 px; MACO's objects vary
TEMPLATE_SPAN = 1.4  # the template's half-width in radii: the shape and the margin around it


def templates(radius: float) -> torch.Tensor:
    """(shapes, 1, K, K) zero-mean, unit-norm templates: +1 inside the shape, -1 around it."""
    half = int(np.ceil(TEMPLATE_SPAN * radius))
    grid = (torch.arange(-half, half + 1, dtype=torch.float32)) / radius
    dx, dy = grid[None, :], grid[:, None]
    kernels = torch.stack([(signed_distance(c.shape, dx, dy) < 0).float() * 2 - 1 for c in CLASSES])
    kernels = kernels - kernels.mean((1, 2), keepdim=True)
    return (kernels / kernels.flatten(1).norm(dim=1)[:, None, None]).unsqueeze(1)


def colour_maps(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W): how much each pixel of image i holds class ``classes[i]``'s colour (chroma along
    the class colour's, clipped at 0, scaled to a maximum of 1)."""
    chroma = images - images.mean(1, keepdim=True)
    target = CLASS_COLOURS[classes] - CLASS_COLOURS[classes].mean(1, keepdim=True)
    target = target / target.norm(dim=1, keepdim=True)
    along = (chroma * target[:, :, None, None]).sum(1, keepdim=True).clamp(min=0)
    return along / along.flatten(1).amax(1).clamp(min=1e-6)[:, None, None, None]


def judge_shapes(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The class index whose shape each (N, 3, 64, 64) image in [0, 1] shows in class ``classes[i]``'s colour:
    the best normalised cross-correlation of its colour map with any template, over sizes and places."""
    maps = colour_maps(images, classes)
    best = torch.full((len(images), len(CLASSES)), -1.0)
    for radius in RADII_PX:
        kernels = templates(radius)
        size = kernels.shape[-1]
        padded = F.pad(maps, (size // 2,) * 4)
        correlation = F.conv2d(padded, kernels)  # templates are zero-mean: the window's mean drops out
        window = torch.ones(1, 1, size, size)
        total, squares = F.conv2d(padded, window), F.conv2d(padded ** 2, window)
        spread = (squares - total ** 2 / size ** 2).clamp(min=1e-6).sqrt()
        best = torch.maximum(best, (correlation / spread).flatten(2).amax(2))
    return best.argmax(1)


def load_images(paths: list[Path]) -> torch.Tensor:
    """(N, 3, 64, 64) in [0, 1]: the files resized to the networks' input, as the networks see them."""
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(rgb, dtype=np.float32) / 255)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def shape_scores(bundle: Path, conditions: tuple[str, ...] = ("maco", "olah")) -> list[dict]:
    """Per unit and condition: how many of the unit's references show its class's shape in its colour."""
    from stimuli.manifest import image_path, load_manifest

    manifest = load_manifest(bundle)
    names = [c.name for c in CLASSES]
    rows = []
    for unit in manifest.units:
        own = names.index(unit.label)
        for condition in conditions:
            ids = manifest.reference_images(unit.key, condition)
            if not ids:
                continue
            seen = judge_shapes(load_images([image_path(bundle, i) for i in ids]), torch.full((len(ids),), own)).tolist()
            rows.append({"network": unit.network, "unit": unit.label, "condition": condition, "references": len(ids),
                         "shape_shown": seen.count(own), "judged": [CLASSES[s].shape for s in seen]})
    return rows
