"""Stage 3: reference visualizations, through maco.optimize.

One run optimises many units at once (``references.units_per_run``) with one
seed; reference j of every unit uses seed ``first_seed + j``. MACO runs once
per seed and serves two conditions: `maco` shows the images, `maco_mask`
the same images rendered with their transparency maps
(`maco.transparency.masked_image`). `none` has no references.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import StimuliError, StudyConfig
from .models import StudyModel


def from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


def resolve_spectrum(config: StudyConfig) -> Any:
    """MACO's magnitude spectrum: the configured file or "analytic", else the published one.

    Never the analytic one unless the config says so: a study's stimuli are not
    built on an approximation because a machine was offline.
    """
    from maco.spectra import SpectrumError, resolve_spectrum as maco_resolve

    try:
        return maco_resolve(config.references.maco.size, config.references.spectrum, fallback=False)
    except SpectrumError as error:
        raise StimuliError(f"references.spectrum: {error}") from None


def visualize(model: StudyModel, config: StudyConfig, method: str, units: list[int], seed: int,
              spectrum: Any = None) -> list[Any]:
    """One optimisation run: a list of maco Visualizations, one per unit, in order."""
    from maco import optimize

    settings = getattr(config.references, method)
    kwargs: dict[str, Any] = dict(units=units, steps=settings.steps, size=settings.size,
                                  seed=seed, progress=False)
    if method == "maco":
        kwargs.update(crops=settings.crops, spectrum=spectrum)
    return getattr(optimize, method)(model.model, **kwargs)


def masked(visualization: Any) -> torch.Tensor:
    from maco.transparency import masked_image

    return masked_image(visualization.image, visualization.transparency)
