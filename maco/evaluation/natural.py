"""The natural images of each class: an ImageFolder tree or a CSV of ``path,class``.

A class is named by its output index (``207``) or, for ImageNet's 1000
classes, its WordNet id (``n02099601``, the folder names of ImageNet's
train/val trees). Folders and rows of classes not evaluated are ignored.
Every problem is an ``EvaluationError`` whose message names it in one line.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from timm.data import ImageNetInfo

from maco.images import image_files

IMAGENET_CLASSES = 1000


class EvaluationError(ValueError):
    """Input the benchmark cannot use; the message says what and where."""


@cache
def _imagenet_wnids() -> tuple[str, ...]:
    info = ImageNetInfo()
    return tuple(info.index_to_label_name(i) for i in range(IMAGENET_CLASSES))


def class_names(unit: int) -> list[str]:
    """The names a folder or CSV row may give ``unit``: its index, and its WordNet id for ImageNet."""
    return [str(unit)] + ([_imagenet_wnids()[unit]] if 0 <= unit < IMAGENET_CLASSES else [])


def _unit_of(name: str) -> int | None:
    name = name.strip()
    if name.isdigit():
        return int(name)
    return _imagenet_wnids().index(name) if name in _imagenet_wnids() else None


def _from_folder(root: Path, units: Sequence[int]) -> dict[int, list[Path]]:
    folders = {name: root / name for name in (p.name for p in root.iterdir() if p.is_dir())}
    found = {}
    for unit in units:
        names = class_names(unit)
        folder = next((folders[n] for n in names if n in folders), None)
        if folder is None:
            tried = " or ".join(f"'{n}'" for n in names)
            raise EvaluationError(f"unknown class {unit}: {root} has no class folder {tried}")
        files = image_files(folder)
        if not files:
            raise EvaluationError(f"class folder {folder} has no images")
        found[unit] = files
    return found


def _from_csv(table: Path, units: Sequence[int]) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {unit: [] for unit in units}
    with table.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or (line == 1 and [c.strip().lower() for c in row] == ["path", "class"]):
                continue
            if len(row) != 2:
                raise EvaluationError(f"{table} line {line}: expected 'path,class', got {len(row)} fields")
            path, name = row
            unit = _unit_of(name)
            if unit is None:
                raise EvaluationError(
                    f"{table} line {line}: unknown class {name.strip()!r} (an output index or an ImageNet WordNet id)")
            if unit in found:
                found[unit].append(table.parent / path.strip())
    missing = [unit for unit, paths in found.items() if not paths]
    if missing:
        raise EvaluationError(f"unknown class {missing[0]}: {table} has no image of it")
    return found


def find_natural_images(source: Path, units: Sequence[int]) -> dict[int, list[Path]]:
    """The image files of every unit's class, from a class-folder tree or a ``path,class`` CSV."""
    if not source.exists():
        raise EvaluationError(f"natural images: {source} does not exist")
    if source.is_dir():
        return _from_folder(source, units)
    if source.suffix.lower() == ".csv":
        return _from_csv(source, units)
    raise EvaluationError(f"natural images: {source} is neither a folder of class folders nor a .csv file")


def open_rgb(path: Path) -> Image.Image:
    """The image at ``path`` in RGB, fully read; an unreadable file is an ``EvaluationError``."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as error:
        reason = str(error).split("\n")[0] or type(error).__name__
        raise EvaluationError(f"cannot read image {path}: {reason}") from None
