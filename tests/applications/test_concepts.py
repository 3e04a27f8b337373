"""CRAFT concepts on a network trained on classes made of two parts each (conftest)."""
from __future__ import annotations

import pytest
import torch

from maco.concepts import concept_objectives, extract_concepts, nnls_coefficients
from maco.craft import (
    ConceptError,
    fit_concepts,
    jansen_total_indices,
    layer_activations,
    pooled_features,
    sobol_masks,
)
from maco.optimize import maco
from maco.spectra import analytic_spectrum
from maco.transforms import crop_and_resize, maco_crop_boxes

LAYER = "4"  # the second convolutional block of parts_cnn (in the last one both parts of a class align)
CONCEPTS = 3  # the two parts and the ground


@pytest.fixture(scope="module")
def class_zero(parts_cnn, parts):
    generator = torch.Generator().manual_seed(1)
    images, corners = zip(*[parts.draw(0, (True, True), generator) for _ in range(12)])
    result = extract_concepts(parts_cnn, LAYER, torch.stack(images), 0, concepts=CONCEPTS, patches_per_image=32,
                              patch_fraction=0.4, importance_images=4)
    return result, corners, parts.overlap


def part_of_concept(result, corners, overlap, concept: int, top: int = 8) -> int | None:
    """The part (0 or 1) every top patch of ``concept`` covers mostly, None if they do not agree."""
    parts = set()
    for index in result.top_patches(concept, top).tolist():
        box = result.boxes[index]
        cover = [overlap(box[1:], corner) for corner in corners[int(box[0])]]
        parts.add(0 if cover[0] >= 0.5 and cover[1] < 0.1 else 1 if cover[1] >= 0.5 and cover[0] < 0.1 else None)
    return parts.pop() if len(parts) == 1 else None


def test_nmf_reconstructs_the_activations(class_zero):
    result = class_zero[0]
    assert result.reconstruction_error < 0.05
    assert result.coefficients.min() >= 0 and result.basis.vectors.min() >= 0


def test_each_part_is_a_concept_whose_top_patches_cover_it(class_zero):
    result, corners, overlap = class_zero
    parts = [part_of_concept(result, corners, overlap, k) for k in range(CONCEPTS)]
    assert sorted(p for p in parts if p is not None) == [0, 1], parts


def test_the_ground_is_the_least_important_concept(class_zero):
    result, corners, overlap = class_zero
    parts = [part_of_concept(result, corners, overlap, k) for k in range(CONCEPTS)]
    ground = parts.index(None)
    assert result.ranking[-1] == ground, (result.importance, parts)
    assert result.importance[ground] < 0.1 < min(result.importance[k] for k in range(CONCEPTS) if k != ground)


def test_jansen_estimator_on_an_additive_function():
    # y = sum a_i x_i with x_i ~ U(0, 1): total index of x_i = a_i^2 / sum a^2
    weights = torch.tensor([3.0, 2.0, 1.0, 0.0])
    masks = sobol_masks(4, 1024)
    indices = jansen_total_indices(masks @ weights, 4, 1024)
    assert torch.allclose(indices, weights**2 / (weights**2).sum(), atol=0.02)


def test_every_concept_visualization_expresses_its_own_concept_most(parts_cnn, parts, class_zero):
    """Read in CRAFT's own space: sklearn's NMF coefficients (W fixed) times each concept vector's norm.

    Under the dual-vector objective this failed on this class: concept 0's image expressed the ground most.
    """
    result = class_zero[0]
    size = 96
    vizs = maco(parts_cnn, objectives=concept_objectives(result.basis, list(range(CONCEPTS))), steps=64,
                size=size, crops=4, progress=False, spectrum=analytic_spectrum())
    images = torch.stack([v.image for v in vizs])
    # the features as the optimisation saw them: on MACO crops, averaged per visualization
    boxes = maco_crop_boxes(CONCEPTS, 16, size, size, torch.Generator().manual_seed(5))
    features = pooled_features(layer_activations(parts_cnn, LAYER, crop_and_resize(images, boxes, parts.size)))
    features = features.view(CONCEPTS, 16, -1).mean(dim=1)
    expressed = result.basis.coefficients(features) * result.basis.vectors.norm(dim=1)  # row: visualization
    assert expressed.argmax(dim=1).tolist() == list(range(CONCEPTS)), expressed


def test_nnls_coefficients_match_sklearns_nmf_transform(class_zero):
    basis = class_zero[0].basis
    features = torch.rand(20, basis.vectors.shape[1], generator=torch.Generator().manual_seed(0))
    reference = basis.coefficients(features)
    assert torch.allclose(nnls_coefficients(features, basis.vectors), reference, atol=1e-3 * float(reference.max()))


def test_more_concepts_than_channels_is_refused():
    with pytest.raises(ConceptError, match="only 4 channels"):
        fit_concepts(torch.rand(50, 4), "layer", 5)


def test_jansen_estimator_matches_craft_xai():
    estimators = pytest.importorskip("craft.sobol.estimators")  # the authors' package (its torch module needs TF)
    masks = sobol_masks(5, 32)
    outputs = torch.sin(3 * masks[:, 0]) + masks[:, 1] * masks[:, 2] + 0.1 * masks[:, 4]
    reference = estimators.JansenEstimator()(masks.numpy(), outputs.numpy(), 32)
    assert torch.allclose(jansen_total_indices(outputs, 5, 32), torch.from_numpy(reference), rtol=1e-4, atol=1e-6)

