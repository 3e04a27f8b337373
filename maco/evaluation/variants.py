"""The visualizations the benchmark compares: Table 1's methods and Table 3's ablation.

A variant is a method, its options, and which image is scored: MACO's image
seen through its transparency map (``masked``: as the study's participants
see it in the mask condition), or the plain image. "MACO without
transparency" is therefore the same optimisation as MACO, scored on its
plain image; it is generated once and scored twice.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from maco.evaluation.settings import UNITS_PER_RUN
from maco.models import Model
from maco.optimize import METHODS, Visualization
from maco.spectra import Spectrum
from maco.transparency import masked_image


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # its row in the markdown tables
    method: str  # a method of the registry (maco.methods): maco.optimize's, or an installed plugin's
    options: dict = field(default_factory=dict)  # keyword arguments of the method
    masked: bool = False  # score the image seen through its transparency map

    def scored_image(self, viz: Visualization) -> torch.Tensor:
        return masked_image(viz.image, viz.transparency) if self.masked else viz.image

    @property
    def generation(self) -> tuple:
        """Variants with the same generation share their visualizations."""
        return self.method, tuple(sorted(self.options.items()))


VARIANTS = {variant.name: variant for variant in [
    Variant("maco", "MACO", "maco", masked=True),
    Variant("olah", "Fourier (Olah et al.)", "olah"),
    Variant("pixel", "Pixel", "pixel"),
    Variant("maco-no-transparency", "MACO - transparency", "maco"),
    Variant("maco-no-crops", "MACO - crops", "maco", {"crops": 0}, masked=True),
    Variant("maco-no-noise", "MACO - noise", "maco", {"noise": 0.0}, masked=True),
    Variant("maco-no-magnitude", "MACO - magnitude constraint", "maco", {"magnitude_constraint": False}, masked=True),
]}
TABLE1 = ("maco", "olah", "pixel")
ABLATION = ("maco", "maco-no-transparency", "maco-no-crops", "maco-no-noise", "maco-no-magnitude")


def plugin_variant(method: str) -> Variant:
    """An installed plugin's method as a variant, scored on its plain image (docs/methods.md)."""
    return Variant(method, method, method)


def _run(method: str, model: Model, units: list[int], seed: int, progress: bool, options: dict) -> list:
    if method in METHODS:
        return METHODS[method](model, units, seed=seed, progress=progress, **options)
    from maco.methods import get_method, run_method

    defaults = get_method(method).defaults  # the shared options (steps, size) it has
    return run_method(method, model, units, {k: v for k, v in options.items() if k in defaults}, seed)


def generate(
    model: Model,
    units: Sequence[int],
    variants: Sequence[Variant],
    seeds: Sequence[int],
    method_options: dict | None = None,
    spectrum: Spectrum | None = None,
    units_per_run: int = UNITS_PER_RUN,
    progress: bool = True,
) -> dict[str, list[Visualization]]:
    """Every variant's visualizations of ``units`` (seed-major order), each generation run once.

    ``method_options`` (e.g. ``steps``, ``size``) go to every method; the
    spectrum to MACO only. Units are optimised ``units_per_run`` at a time.
    """
    runs: dict[tuple, list[Visualization]] = {}
    result = {}
    for variant in variants:
        if variant.generation not in runs:
            options = {**(method_options or {}), **variant.options}
            if variant.method == "maco" and spectrum is not None:
                options["spectrum"] = spectrum
            runs[variant.generation] = [
                viz
                for seed in seeds
                for first in range(0, len(units), units_per_run)
                for viz in _run(variant.method, model, list(units[first:first + units_per_run]), seed, progress,
                                options)
            ]
        result[variant.name] = runs[variant.generation]
    return result
