"""How a visualization is written to disk: PNGs with their provenance in the PNG text chunks.

One home for every command that saves visualizations (visualize, concepts, invert).
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL.PngImagePlugin import PngInfo

from maco.images import stretch_contrast, to_pil
from maco.optimize import Visualization
from maco.transparency import alpha_map, masked_image


def save_png(image: torch.Tensor, path: Path, metadata: dict[str, str]) -> str:
    """Write a (3 or 1, H, W) image in [0, 1] as PNG with ``metadata`` as text chunks; returns the file name."""
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, value)
    to_pil(image).save(path, format="PNG", pnginfo=info)
    return path.name


def write_visualization(viz: Visualization, out: Path, stem: str, metadata: dict[str, str],
                        stretch: bool = False) -> dict[str, str]:
    """``<stem>.png``, and for MACO ``<stem>_transparency.png`` and ``<stem>_masked.png``: role -> file name.

    ``stretch`` applies the percentile contrast stretch to the image (and so to the masked image).
    """
    image = stretch_contrast(viz.image) if stretch else viz.image
    files = {"image": save_png(image, out / f"{stem}.png", metadata)}
    if viz.transparency is not None:
        files["transparency"] = save_png(alpha_map(viz.transparency), out / f"{stem}_transparency.png", metadata)
        files["masked"] = save_png(masked_image(image, viz.transparency), out / f"{stem}_masked.png", metadata)
    return files
