"""The benchmark's metrics against known values and closed forms."""
import math

import pytest
import torch
from torch import nn

from maco.evaluation.metrics import (
    FrechetDistance,
    PenultimateFeatures,
    deep_knn_distance,
    penultimate_features,
    top1_hits,
)
from maco.models import load_model

from .conftest import grating_batch


class Identity(nn.Identity):
    """Features are the inputs themselves: the FID of Gaussian samples has a closed form."""

    def __init__(self, dimensions: int):
        super().__init__()
        self.num_features = dimensions


def test_fid_of_a_set_against_itself_is_zero(tiny_model):
    images = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fid = FrechetDistance(PenultimateFeatures(tiny_model)).add_natural(images)
    assert fid(images) == pytest.approx(0.0, abs=1e-3)
    assert fid(images.flip(-1) * 0.5) > 0.01  # and it does see a different set


def test_fid_of_shifted_gaussians_matches_the_closed_form():
    # N(mu1, diag(s1^2)) vs N(mu2, diag(s2^2)): FID = |mu1 - mu2|^2 + sum (s1 - s2)^2
    generator = torch.Generator().manual_seed(1)
    dimensions, samples = 6, 40_000
    s1 = torch.linspace(0.5, 2.0, dimensions)
    s2 = torch.linspace(1.5, 1.0, dimensions)
    mu2 = torch.linspace(-1.0, 2.0, dimensions)
    natural = torch.randn(samples, dimensions, generator=generator) * s1
    generated = mu2 + torch.randn(samples, dimensions, generator=generator) * s2
    expected = float((mu2 ** 2).sum() + ((s1 - s2) ** 2).sum())
    fid = FrechetDistance(Identity(dimensions)).add_natural(natural)
    assert fid(generated) == pytest.approx(expected, rel=0.02)
    in_halves = FrechetDistance(Identity(dimensions)).add_natural(natural[:15_000]).add_natural(natural[15_000:])
    assert in_halves(generated) == pytest.approx(fid(generated), rel=1e-5)  # batches accumulate exactly
    assert fid(natural[:20_000] + 3.0) == pytest.approx(9.0 * dimensions, rel=0.02)  # a pure shift
    assert math.isnan(fid(generated[:1]))  # one image has no covariance


def test_deep_knn_distance_by_hand():
    """Sun et al.'s Deep-KNN: normalise, then the Euclidean distance to the k-th nearest reference.

    References (3, 0), (0, 2), (1, 1), (-4, 0) normalise to e1, e2, d = (e1 + e2)/sqrt 2 and -e1. The query
    (5, 5) normalises to d: 1st neighbour d (0), 2nd and 3rd e1 and e2 (|d - e1| = sqrt(2 - sqrt 2)), 4th
    -e1 (sqrt(2 + sqrt 2)). Unnormalised, its nearest reference would be (1, 1), 4 sqrt 2 = 5.66 away.
    """
    references = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-4.0, 0.0]])
    query = torch.tensor([[5.0, 5.0], [0.0, -0.5]])
    near, far = math.sqrt(2 - math.sqrt(2)), math.sqrt(2 + math.sqrt(2))
    # (0, -0.5) normalises to -e2: e1 and -e1 at sqrt 2, d at sqrt(2 + sqrt 2), e2 at 2
    expected = {1: [0.0, math.sqrt(2)], 2: [near, math.sqrt(2)], 3: [near, far], 4: [far, 2.0]}
    for k, values in expected.items():
        assert deep_knn_distance(query, references, k).tolist() == pytest.approx(values, abs=1e-12)
    # the scale of either side does not count: a visualization does not get closer by louder activations
    assert deep_knn_distance(7 * query, 0.1 * references, 2).tolist() == pytest.approx(expected[2], abs=1e-12)
    with pytest.raises(ValueError, match="k=5 needs 1 to 4"):
        deep_knn_distance(query, references, 5)


def test_penultimate_features_are_timms_pre_logits_and_fid_uses_them():
    model = load_model("test_resnet", weights="random")
    images = torch.rand(3, 3, model.input_size, model.input_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.net.forward_head(model.net.forward_features(model.normalize(images)), pre_logits=True)
    assert torch.allclose(penultimate_features(model, images, batch_size=2), expected, atol=1e-5)
    assert PenultimateFeatures(model).num_features == expected.shape[1]


def test_top1_hits_of_the_trained_network_on_its_own_classes(tiny_model):
    labels = torch.arange(4).repeat(5)
    images = grating_batch(labels, torch.Generator().manual_seed(4))
    assert top1_hits(tiny_model, images, labels).float().mean() > 0.9
    assert top1_hits(tiny_model, images, (labels + 1) % 4).float().mean() < 0.1
