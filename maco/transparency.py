"""Rendering MACO's transparency map (the accumulated |dL/dx|) with its image."""
from __future__ import annotations

import torch

ALPHA_PERCENTILE = 80.0  # as in the MACO authors' plots: clip the map at its 80th percentile


def alpha_map(transparency: torch.Tensor, percentile: float = ALPHA_PERCENTILE) -> torch.Tensor:
    """(H, W) opacity in [0, 1]: the map clipped at ``percentile`` and divided by that value.

    When more than the rest of the map is zero (a short run whose crops never
    reached most pixels), the ceiling is the maximum instead: what no
    gradient reached stays transparent.
    """
    values = transparency.flatten().float()
    ceiling = torch.quantile(values, percentile / 100.0)
    if ceiling <= 0:
        ceiling = values.max()
    if ceiling <= 0:
        return torch.ones_like(transparency)
    return (transparency.clamp(max=ceiling) / ceiling).clamp(0, 1)


def masked_image(
    image: torch.Tensor,
    transparency: torch.Tensor,
    percentile: float = ALPHA_PERCENTILE,
    background: float = 1.0,
) -> torch.Tensor:
    """The image seen through its transparency map, composited over a uniform ``background``."""
    alpha = alpha_map(transparency, percentile).to(image)
    return image * alpha + background * (1 - alpha)
