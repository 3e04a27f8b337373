"""Stage 1: the natural-image pool and every unit's top-k images.

One streaming pass per network: images are decoded (optionally by DataLoader
workers), preprocessed the model's own way (shorter side resized to
``input_size / crop_pct`` with the model's interpolation, centre crop to
``input_size``), evaluated in
batches without gradients; a chunk's activations (units x chunk size numbers)
stay on the device until the chunk ends, then only its top-k per unit is
kept. Ties are broken by file order, which
makes the result independent of batching and of how the pool is split into
chunks: the top-k of a union is the top-k of the chunks' top-k.

Unreadable files (bad bytes, truncated, not an image) are skipped and
counted; files whose names do not look like images are not part of the pool.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from maco.images import IMAGE_SUFFIXES  # one list of the image files a folder may hold
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from .config import SKIMAGE_POOL, StimuliError
from .models import RESAMPLING, Preprocessing, StudyModel

# scikit-image's bundled natural photographs (no synthetic patterns, no masks)
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
    "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg",
    "rocket.jpg", "text.png",
)


@dataclass(frozen=True)
class Pool:
    root: Path
    files: tuple[str, ...]  # paths relative to root, sorted: the pool's fixed order

    def path(self, index: int) -> Path:
        return self.root / self.files[index]


def list_pool(source: str) -> Pool:
    """The pool's files: a folder (flat, or one sub-folder per class) or the bundled photos."""
    if source == SKIMAGE_POOL:
        import skimage.data

        root = Path(skimage.data.data_dir)
        files = tuple(name for name in SKIMAGE_PHOTOS if (root / name).is_file())
    else:
        root = Path(source)
        found = []
        for folder, subfolders, names in os.walk(root):
            subfolders.sort()
            depth = len(Path(folder).relative_to(root).parts)
            if depth >= 1:
                subfolders.clear()  # flat, or one level of class folders
            found.extend(os.path.relpath(os.path.join(folder, n), root) for n in names
                         if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith("."))
        files = tuple(sorted(found))
    if not files:
        raise StimuliError(f"pool.source: no images in {root}")
    return Pool(root, files)


def load_image(path: Path, preprocessing: Preprocessing) -> torch.Tensor:
    """The model's own preprocessing, stopping before normalisation: (3, S, S) in [0, 1].

    Values stay multiples of 1/255, so the PNG of the result is exactly this tensor.
    """
    input_size = preprocessing.input_size
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        short = round(input_size / preprocessing.crop_pct)
        scale = short / min(width, height)
        resized = image.resize((max(short, round(width * scale)), max(short, round(height * scale))),
                               getattr(Image.Resampling, RESAMPLING[preprocessing.interpolation]))
    left = (resized.width - input_size) // 2
    top = (resized.height - input_size) // 2
    cropped = resized.crop((left, top, left + input_size, top + input_size))
    array = np.asarray(cropped, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)


class _PoolImages(Dataset):
    def __init__(self, pool: Pool, indices: range, preprocessing: Preprocessing):
        self.pool, self.indices, self.preprocessing = pool, indices, preprocessing

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor | None]:
        index = self.indices[position]
        try:
            return index, load_image(self.pool.path(index), self.preprocessing)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            return index, None  # counted as unreadable by the caller


def _collate(items: list[tuple[int, torch.Tensor | None]]):
    readable = [(i, x) for i, x in items if x is not None]
    unreadable = [i for i, x in items if x is None]
    if not readable:
        return torch.empty(0, dtype=torch.long), None, unreadable
    indices, images = zip(*readable)
    return torch.tensor(indices), torch.stack(images), unreadable


def merge_topk(values: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row (unit), the k largest values; ties go to the smaller index. Shapes (U, N)."""
    order = np.lexsort((indices, -values), axis=-1)[:, :k]
    return np.take_along_axis(values, order, -1), np.take_along_axis(indices, order, -1)


@dataclass
class TopK:
    values: np.ndarray  # (U, <=k) float64, descending
    indices: np.ndarray  # (U, <=k) int64 pool indices
    unreadable: list[int]

    @classmethod
    def merged(cls, parts: list["TopK"], k: int) -> "TopK":
        values, indices = merge_topk(np.concatenate([p.values for p in parts], 1),
                                     np.concatenate([p.indices for p in parts], 1), k)
        return cls(values, indices, sorted(i for p in parts for i in p.unreadable))


def pool_topk(model: StudyModel, units: list[int], pool: Pool, indices: range, k: int,
              batch_size: int, workers: int = 0, progress=None) -> TopK:
    """Stream `pool` images `indices` through `model`, keeping each unit's top-k."""
    loader = DataLoader(_PoolImages(pool, indices, model.preprocessing),
                        batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                        pin_memory=model.device.type == "cuda")
    unit_index = torch.tensor(units, device=model.device)
    # activations stay on the device until the end: a copy to the host per batch would wait for
    # that batch's forward pass, and the next batch's upload could not overlap it
    activations, ids, unreadable_files = [], [], []
    for batch_indices, images, unreadable in loader:
        unreadable_files.extend(unreadable)
        if images is not None:
            activations.append(model.logits(images)[:, unit_index])
            ids.append(batch_indices)
        if progress is not None:
            progress.update(len(batch_indices) + len(unreadable))
    if not activations:
        return TopK(np.empty((len(units), 0)), np.empty((len(units), 0), dtype=np.int64), unreadable_files)
    values = torch.cat(activations).double().cpu().numpy().T
    values, indices = merge_topk(values, np.broadcast_to(torch.cat(ids).numpy(), values.shape), k)
    return TopK(values, indices, unreadable_files)
