"""What every application run records and reads: its settings (run.json) and its input images."""
from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from PIL import UnidentifiedImageError

from maco.device import runtime_provenance
from maco.images import load_rgb
from maco.models import Model
from maco.spectra import Spectrum


def run_settings(command: str, model: Model, spectrum: Spectrum, **settings) -> dict:
    """The run.json fields shared by the MACO applications (the gallery shows them)."""
    return {
        "command": command,
        "model": model.name,
        "weights": model.weights,
        "random_weights": model.random_weights,
        "spectrum": spectrum.source,
        "device": str(model.device),
        "runtime": runtime_provenance(model.device, model.compute_dtype),
        **settings,
    }


def write_json(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2))


def load_images(files: list[Path], size: int) -> torch.Tensor:
    """(N, 3, size, size) images, centre-cropped; an unreadable file is one line naming it."""
    images = []
    for file in files:
        try:
            images.append(load_rgb(file, size))
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise click.ClickException(f"cannot read image {file}: {error}") from None
    return torch.stack(images)
