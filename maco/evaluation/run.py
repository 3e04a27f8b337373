"""Scoring: every variant's visualizations of every network, by one protocol.

Each visualization is scored as the image a viewer gets (``Variant.scored_image``),
quantised to 8 bits as in its PNG, then resized to each model's input
(``fit_center``); FID sees it resized to ``FID_RESIZE`` and centre-cropped to
``FID_CROP``, exactly like the natural images.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from maco.evaluation.metrics import (
    FrechetDistance,
    deep_knn_distance,
    logits,
    penultimate_features,
    top1_hits,
)
from maco.evaluation.settings import FID_CROP, FID_RESIZE, PLAUSIBILITY_K
from maco.evaluation.variants import Variant, generate
from maco.images import center_crop, fit_center, from_pil, to_pil
from maco.models import PRESETS, Model
from maco.optimize import Visualization
from maco.spectra import Spectrum


@dataclass
class Evaluation:
    rows: list[dict]  # one per network, variant, unit and seed
    summary: list[dict]  # one per network and variant
    visualizations: dict[str, dict[str, list[Visualization]]]  # network -> variant -> visualizations


def model_view(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    return torch.stack([from_pil(fit_center(image, size)) for image in images])


def fid_view(images: Sequence[Image.Image]) -> torch.Tensor:
    return torch.stack([from_pil(center_crop(fit_center(image, FID_RESIZE), FID_CROP)) for image in images])


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def score_variant(
    network: Model,
    variant: Variant,
    visualizations: Sequence[Visualization],
    natural_features: dict[int, torch.Tensor],
    fid: FrechetDistance | None,
    transfer: dict[str, Model],
    plausibility_k: int = PLAUSIBILITY_K,
) -> tuple[list[dict], dict]:
    """Rows for each visualization, and the variant's summary (means, FID, accuracies in %)."""
    pictures = [to_pil(variant.scored_image(viz)) for viz in visualizations]
    units = torch.tensor([viz.unit for viz in visualizations])
    view = model_view(pictures, network.input_size)
    features = penultimate_features(network, view)
    outputs = logits(network, view)
    hits = {name: top1_hits(model, model_view(pictures, model.input_size), units) for name, model in transfer.items()}
    rows = []
    for i, viz in enumerate(visualizations):
        row = {
            "network": network.name, "variant": variant.name, "unit": viz.unit, "seed": viz.seed,
            "plausibility": float(deep_knn_distance(features[i:i + 1], natural_features[viz.unit], plausibility_k)[0]),
            "logit": float(outputs[i, viz.unit]),
            **{f"top1_{name}": bool(hit[i]) for name, hit in hits.items()},
        }
        row["transferability"] = _mean([float(hit[i]) for hit in hits.values()])
        rows.append(row)
    summary = {
        "network": network.name, "variant": variant.name, "images": len(rows),
        "plausibility": _mean(r["plausibility"] for r in rows),
        "fid": fid(fid_view(pictures)) if fid is not None else math.nan,
        "logit": _mean(r["logit"] for r in rows),
        "transferability": 100 * _mean(float(h.float().mean()) for h in hits.values()),
        **{f"top1_{name}": 100 * float(hit.float().mean()) for name, hit in hits.items()},
    }
    return rows, summary


def _same_classifier(first: Model, second: Model) -> bool:
    """Transferability counts only the *other* classifiers: a network never scores its own visualizations."""
    return (PRESETS.get(first.name, first.name), first.weights) == (PRESETS.get(second.name, second.name), second.weights)


def evaluate(
    networks: Sequence[Model],
    units: Sequence[int],
    natural: dict[int, list[Image.Image]],
    variants: Sequence[Variant],
    fid_features: nn.Module | None,
    transfer: dict[str, Model],
    seeds: Sequence[int] = (0,),
    method_options: dict | None = None,
    spectrum: Spectrum | None = None,
    progress: bool = True,
    plausibility_k: int = PLAUSIBILITY_K,
) -> Evaluation:
    """Generate every variant for every network and score it against the natural images of each unit's class.

    ``fid_features`` None: no FID (NaN), as no ``transfer`` classifier means no transferability.
    """
    fid = FrechetDistance(fid_features) if fid_features is not None else None
    for unit in units if fid is not None else ():  # one class at a time: every class's 299 px crops may not fit
        fid.add_natural(fid_view(natural[unit]))
    rows, summary, generated = [], [], {}
    for network in networks:
        visualizations = generate(network, units, variants, seeds, method_options, spectrum, progress=progress)
        generated[network.name] = visualizations
        natural_features = {
            unit: penultimate_features(network, model_view(natural[unit], network.input_size)) for unit in units
        }
        others = {column: model for column, model in transfer.items() if not _same_classifier(model, network)}
        for variant in tqdm(variants, desc=f"scoring {network.name}", unit="variant", disable=not progress):
            variant_rows, variant_summary = score_variant(
                network, variant, visualizations[variant.name], natural_features, fid, others, plausibility_k)
            rows += variant_rows
            summary.append(variant_summary)
    return Evaluation(rows, summary, generated)
