"""A class's CRAFT concepts, ranked by importance and visualized with MACO.

``extract_concepts`` runs CRAFT (``maco.craft``) on one class's images;
``concept_objectives`` turns each concept into a ``direction`` objective for
``maco.optimize.maco``. The direction is the concept's dual vector (row k of
pinv(W)^T): the linear read-out of concept k's least-squares coefficient, so
that raising it raises concept k and not the concepts it shares channels with.
NMF concept vectors are non-negative and often close (cosine 0.6-0.98 on the
test network), and a direction on the raw vector then mostly raises whichever
concept dominates the shared channels (docs/applications.md has the numbers).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from maco.craft import (
    BATCH,
    PATCH_FRACTION,
    SOBOL_DESIGNS,
    ConceptBasis,
    fit_concepts,
    layer_activations,
    pooled_features,
    random_patch_boxes,
    relative_error,
    sobol_importance,
)
from maco.models import Model
from maco.objectives import Objective, direction
from maco.transforms import crop_and_resize


@dataclass
class ClassConcepts:
    basis: ConceptBasis
    class_index: int
    boxes: torch.Tensor  # (P, 5) patch boxes (image, x1, y1, x2, y2) in input-size pixels
    coefficients: torch.Tensor  # (P, K) every patch's concept coefficients
    importance: torch.Tensor  # (K,) total Sobol index on the class logit
    reconstruction_error: float  # ||A - U W|| / ||A|| on the patches

    @property
    def ranking(self) -> list[int]:
        """Concept indices, most important first."""
        return torch.argsort(self.importance, descending=True).tolist()

    def top_patches(self, concept: int, count: int) -> torch.Tensor:
        """Indices of the ``count`` patches with the largest coefficient for ``concept``."""
        return torch.argsort(self.coefficients[:, concept], descending=True)[:count]


def extract_concepts(
    model: Model,
    layer: str,
    images: torch.Tensor,
    class_index: int,
    *,
    concepts: int = 10,
    patches_per_image: int = 64,
    patch_fraction: float = PATCH_FRACTION,
    importance_images: int = 16,
    designs: int = SOBOL_DESIGNS,
    seed: int = 0,
) -> ClassConcepts:
    """CRAFT on (N, 3, S, S) images of one class at the model's input size S."""
    generator = torch.Generator().manual_seed(seed)
    boxes = random_patch_boxes(len(images), patches_per_image, images.shape[-1], patch_fraction, generator)
    features = torch.cat([  # a batch of patches at a time: all of them at once would not fit in memory
        pooled_features(layer_activations(model, layer, crop_and_resize(images, boxes[start:start + BATCH],
                                                                        model.input_size)))
        for start in range(0, len(boxes), BATCH)
    ])
    basis, coefficients = fit_concepts(features, layer, concepts, seed)
    importance = sobol_importance(model, basis, images[:importance_images], class_index, designs)
    return ClassConcepts(basis, class_index, boxes, coefficients, importance,
                         relative_error(features, coefficients, basis))


def concept_directions(basis: ConceptBasis) -> torch.Tensor:
    """(K, C) dual vectors: row k maps pooled features to concept k's least-squares coefficient."""
    return torch.linalg.pinv(basis.vectors).T


def concept_objectives(basis: ConceptBasis, concepts: list[int]) -> list[Objective]:
    """One ``direction`` objective per concept, named after it."""
    duals = concept_directions(basis)
    objectives = []
    for k in concepts:
        objective = direction(basis.layer, duals[k])
        objective.name = f"concept {k} at {basis.layer}"
        objectives.append(objective)
    return objectives
