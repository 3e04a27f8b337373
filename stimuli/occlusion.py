"""Stage 2: occlusion query pairs.

A square occluder (``occluder_fraction`` of the side: 90 px at 224) filled
with the mean colour of the region it covers slides over the base image on a
grid (``stride`` px, from the top-left corner; the last row/column may stop
short of the border when the stride does not divide). The unit's activation
is evaluated at every position in large no-grad batches built by masking,
without copying the image per position in Python. The argmax and argmin
positions form the pair, the argmax image being the correct answer.

The fill colour is rounded to a multiple of 1/255, so the stored PNGs are
exactly the images whose activations are recorded.

``relative_difference = (max - min) / |base|``: how much the occluder
position matters, relative to the unit's response to the unoccluded image;
practice trials are the spare pairs where it is largest.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .models import StudyModel


def occluder_side(input_size: int, fraction: float) -> int:
    return max(1, round(input_size * fraction))


def fill_colours(image: torch.Tensor, side: int, stride: int) -> torch.Tensor:
    """(3, ny, nx): the mean colour under the occluder at every grid position, in 1/255 steps."""
    means = F.avg_pool2d(image[None], side, stride)[0]
    return torch.round(means * 255) / 255


def occlude(image: torch.Tensor, y: int, x: int, side: int, colour: torch.Tensor) -> torch.Tensor:
    out = image.clone()
    out[:, y:y + side, x:x + side] = colour[:, None, None]
    return out


@dataclass(frozen=True)
class QueryResult:
    activation_base: float
    activation_max: float
    activation_min: float
    max_position: tuple[int, int]  # (y, x) of the occluder's top-left corner
    min_position: tuple[int, int]
    side: int
    max_image: torch.Tensor  # (3, S, S) in [0, 1]
    min_image: torch.Tensor

    @property
    def relative_difference(self) -> float:
        return (self.activation_max - self.activation_min) / max(abs(self.activation_base), 1e-12)


def occlusion_map(model: StudyModel, image: torch.Tensor, unit: int, side: int, stride: int,
                  batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ny, nx) activations of `unit` with the occluder at each grid position, and the
    (3, ny, nx) fill colours they were computed with."""
    image = image.to(model.device, model.dtype)
    colours = fill_colours(image, side, stride)
    ny, nx = colours.shape[1:]
    flat_colours = colours.flatten(1).T  # (P, 3)
    coordinates = torch.arange(image.shape[-1], device=image.device)
    positions = torch.arange(ny * nx, device=image.device)
    activations = []
    for start in range(0, ny * nx, batch_size):
        p = positions[start:start + batch_size]
        ys, xs = (p // nx) * stride, (p % nx) * stride
        rows = (coordinates >= ys[:, None]) & (coordinates < ys[:, None] + side)  # (B, H)
        cols = (coordinates >= xs[:, None]) & (coordinates < xs[:, None] + side)  # (B, W)
        mask = rows[:, None, :, None] & cols[:, None, None, :]
        batch = torch.where(mask, flat_colours[p][:, :, None, None], image[None])
        activations.append(model.logits(batch)[:, unit])
    return torch.cat(activations).reshape(ny, nx), colours


def query_pair(model: StudyModel, image: torch.Tensor, unit: int, fraction: float, stride: int,
               batch_size: int) -> QueryResult:
    side = occluder_side(image.shape[-1], fraction)
    activations, colours = occlusion_map(model, image, unit, side, stride, batch_size)
    activations, colours = activations.cpu(), colours.cpu().to(image.dtype)
    nx = activations.shape[1]
    flat = activations.flatten()
    best, worst = int(flat.argmax()), int(flat.argmin())  # first occurrence on ties
    max_position = (best // nx * stride, best % nx * stride)
    min_position = (worst // nx * stride, worst % nx * stride)
    base = float(model.logits(image[None])[0, unit])
    return QueryResult(
        activation_base=base, activation_max=float(flat[best]), activation_min=float(flat[worst]),
        max_position=max_position, min_position=min_position, side=side,
        max_image=occlude(image, *max_position, side, colours[:, best // nx, best % nx]),
        min_image=occlude(image, *min_position, side, colours[:, worst // nx, worst % nx]))
