"""Stage 3: reference visualizations, through maco.optimize.

One run optimises many units at once (``references.units_per_run``) with one
seed; reference j of every unit uses seed ``first_seed + j``. MACO runs once
per seed and serves every condition declaring it with the same settings: the paper's `maco` shows
the images, `maco_mask` (``mask = true``) the same images rendered with their transparency maps
(`maco.transparency.masked_image`). Any method of `maco.methods`' registry runs the same way;
`natural` references are pool photos (``natural.py``), `none` has none.
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


def visualize(model: StudyModel, config: StudyConfig, run: str, units: list[int], seed: int,
              spectrum: Any = None) -> list[Any]:
    """One run of a registered method: a list of maco.methods.References, one per unit, in order."""
    from maco.methods import check_settings, get_method

    method = get_method(config.reference_runs[run].method)
    settings = check_settings(method, config.run_settings(run))
    references = method.render(model.model, units, settings, seed, spectrum=spectrum)
    if len(references) != len(units):
        raise StimuliError(f"method {method.name!r} returned {len(references)} references for {len(units)} units")
    return references


def masked(reference: Any) -> torch.Tensor:
    from maco.transparency import masked_image

    return masked_image(reference.image, reference.mask)
