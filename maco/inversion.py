"""Feature inversion with MACO (the paper's Figure 6a): an image whose layer activations match a reference's.

The objective is ``feature_inversion``: the cosine similarity between the
layer's activations, position by position, and the reference image's. It
compares spatial maps, so MACO's crops are taken near the whole image
(``INVERSION_CROP_SIZE``: side of mean 0.9 and std 0.05 of the image) instead of the
quarter-size crops of feature visualization, whose activations could not
line up with the reference's map.
"""
from __future__ import annotations

import torch

from maco.models import Model
from maco.objectives import feature_inversion, reference_activations
from maco.optimize import Visualization, maco

INVERSION_CROP_SIZE = (0.9, 0.05)  # mean and std of the crop side, as a fraction of the image side


def invert(model: Model, layer: str, images: torch.Tensor, **maco_options) -> list[Visualization]:
    """One MACO inversion per (3, S, S) image in [0, 1] at the model's input size S, all optimised together."""
    objectives = [feature_inversion(layer, reference_activations(model, layer, image)) for image in images]
    for number, objective in enumerate(objectives):
        objective.name = f"inversion of image {number} at {layer}"
    return maco(model, objectives=objectives, **{"crop_size": INVERSION_CROP_SIZE, **maco_options})


def feature_distance(model: Model, layer: str, image: torch.Tensor, target: torch.Tensor) -> float:
    """1 - cosine similarity of the layer's activations for ``image`` (resized to the input) and ``target``."""
    resized = torch.nn.functional.interpolate(image[None], size=model.input_size, mode="area")[0]
    found = reference_activations(model, layer, resized).flatten()
    wanted = reference_activations(model, layer, target).flatten()
    return 1.0 - float(torch.nn.functional.cosine_similarity(found, wanted, dim=0))
