"""The benchmark's metrics against known values and closed forms."""
import math

import pytest
import torch
from torch import nn

from maco.evaluation.metrics import (
    FrechetDistance,
    PenultimateFeatures,
    nearest_neighbour_distance,
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


def test_nearest_neighbour_distance_of_a_shifted_copy_is_the_shift():
    generator = torch.Generator().manual_seed(2)
    references = torch.randn(50, 256, generator=generator)  # pairwise ~22 apart
    shift = torch.randn(256, generator=generator)
    shift = 0.5 * shift / shift.norm()
    distances = nearest_neighbour_distance(references[[3, 7, 9]] + shift, references)
    assert torch.allclose(distances, torch.full((3,), 0.5, dtype=torch.float64), atol=1e-6)
    query = torch.randn(4, 256, generator=generator)
    brute = torch.stack([min((q - r).norm() for r in references) for q in query]).double()
    assert torch.allclose(nearest_neighbour_distance(query, references), brute, atol=1e-4)


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
