"""A class's CRAFT concepts, ranked by importance and visualized with MACO.

``extract_concepts`` runs CRAFT (``maco.craft``) on one class's images;
``concept_objectives`` turns each concept into an objective for
``maco.optimize.maco``. The objective stays in the non-negative space CRAFT
factorised: it reads the visualization's concepts as CRAFT does (non-negative
coefficients against W, ``expression``) and raises concept k's above the
strongest other's (``nnls_contrast``). NMF concept vectors are non-negative
and often close (cosine 0.7-0.9 on the test network): a direction on the raw
vector raises whichever concept dominates the shared channels, and the dual
vector (pinv(W)^T) leaves the non-negative space, where its read-out is not
CRAFT's. Chosen by benchmarks/bench_concept_objectives.py (docs/applications.md).
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


def _dual(basis: ConceptBasis, k: int) -> Objective:
    return direction(basis.layer, concept_directions(basis)[k])


def _raw(cos_power: float):
    def objective(basis: ConceptBasis, k: int) -> Objective:
        return direction(basis.layer, basis.vectors[k], cos_power)
    return objective


NNLS_ITERATIONS = 256  # converged to 5e-4 of the largest coefficient on the test network (64: 1e-2)


def nnls_coefficients(features: torch.Tensor, vectors: torch.Tensor, iterations: int = NNLS_ITERATIONS) -> torch.Tensor:
    """(B, K) u >= 0 minimising ||h - u W||: projected gradient from the clamped least-squares solution.

    Differentiable (unrolled), so an objective can stay in the non-negative
    space CRAFT factorised; close to sklearn's ``NMF.transform`` (test).
    """
    gram = vectors @ vectors.T
    step = 1 / torch.linalg.matrix_norm(gram, ord=2)
    target = features @ vectors.T
    u = (features @ torch.linalg.pinv(vectors)).clamp(min=0)
    for _ in range(iterations):
        u = (u - step * (u @ gram - target)).clamp(min=0)
    return u


def expression(features: torch.Tensor, basis: ConceptBasis) -> torch.Tensor:
    """(B, K) how much of each concept pooled features hold: NNLS coefficient x concept vector norm.

    The size of the concept's part of the reconstruction: free of NMF's
    arbitrary split of scale between U and W, so concepts compare.
    """
    vectors = basis.vectors.to(features)
    return nnls_coefficients(features, vectors) * vectors.norm(dim=1)


def _nnls(contrast: bool):
    def objective(basis: ConceptBasis, k: int) -> Objective:
        def fn(a):
            expressed = expression(pooled_features(a[basis.layer]), basis)
            own = expressed[:, k]
            if not contrast:
                return own
            return own - torch.cat([expressed[:, :k], expressed[:, k + 1:]], dim=1).max(dim=1).values
        return Objective(fn, [basis.layer], "")
    return objective


# the objectives compared by benchmarks/bench_concept_objectives.py (docs/applications.md)
CONCEPT_OBJECTIVES = {"dual": _dual, "raw": _raw(0.0), "raw_cos1": _raw(1.0), "raw_cos2": _raw(2.0),
                      "nnls": _nnls(False), "nnls_contrast": _nnls(True)}
CONCEPT_OBJECTIVE = "nnls_contrast"  # the only one whose every visualization showed its own concept most


def concept_objectives(basis: ConceptBasis, concepts: list[int], kind: str = CONCEPT_OBJECTIVE) -> list[Objective]:
    """One objective per concept (``CONCEPT_OBJECTIVES[kind]``), named after it."""
    objectives = []
    for k in concepts:
        objective = CONCEPT_OBJECTIVES[kind](basis, k)
        objective.name = f"concept {k} at {basis.layer}"
        objectives.append(objective)
    return objectives
