"""Tensor <-> image helpers. Image tensors are float (3, H, W) in [0, 1]."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def image_files(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursive, by suffix), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_rgb(path: str | Path, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image as RGB in [0, 1]; with ``size``, resize the shorter side and centre-crop."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None:
            image = fit_center(image, size)
        return from_pil(image)


def from_pil(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float in [0, 1]."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def fit_center(image: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """Resize (antialiased) so the image covers ``size``, then crop its centre."""
    height, width = (size, size) if isinstance(size, int) else size
    scale = max(height / image.height, width / image.width)
    resized = image.resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))),
        Image.Resampling.BICUBIC,
    )
    return center_crop(resized, (height, width))


def center_crop(image: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """The central ``size`` pixels (an int for a square, or (height, width)), without resampling."""
    height, width = (size, size) if isinstance(size, int) else size
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> RGB PIL image; (H, W) -> greyscale."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if array.ndim == 3:
        array = array.permute(1, 2, 0)
    return Image.fromarray(array.numpy())



STRETCH_PERCENTILES = (1.0, 99.0)  # as the MACO authors' plots (Horama's plot_maco)


def stretch_contrast(image: torch.Tensor, percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> torch.Tensor:
    """Clip at the low and high percentiles (all channels together, so hues keep) and stretch to [0, 1]."""
    low, high = np.percentile(image.detach().float().cpu().numpy(), percentiles)
    if high <= low:  # a flat image has nothing to stretch
        return image
    return ((image - float(low)) / float(high - low)).clamp(0, 1)
