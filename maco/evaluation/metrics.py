"""The section 4 metrics, as functions of images and models.

Images are float (N, 3, H, W) in [0, 1] at the size their model takes.
Penultimate features are the input of the network's classifier layer
(timm's ``get_classifier()``; the last module of a plain ``nn.Sequential``),
read with a forward hook, so they are the same "pre-logits" for every
architecture: the pooled 2048 features of Inception-v3, the CLS/pooled
token of a ViT.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.image.fid import FrechetInceptionDistance

from maco.evaluation.settings import BATCH_SIZE, PLAUSIBILITY_K
from maco.models import Model


def classifier_layer(net: nn.Module) -> nn.Module:
    """The layer that maps penultimate features to logits."""
    if hasattr(net, "get_classifier"):
        return net.get_classifier()
    return list(net.modules())[-1]


def _batches(images: torch.Tensor, batch_size: int):
    for first in range(0, images.shape[0], batch_size):
        yield images[first:first + batch_size]


@torch.no_grad()
def logits(model: Model, images: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """(N, classes) pre-softmax outputs, on the CPU."""
    return torch.cat([model(batch.to(model.device)).float().cpu() for batch in _batches(images, batch_size)])


@torch.no_grad()
def penultimate_features(model: Model, images: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """(N, D) inputs of the classifier layer, on the CPU."""
    captured = []
    handle = classifier_layer(model.net).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].flatten(1).float().cpu()))
    try:
        for batch in _batches(images, batch_size):
            model(batch.to(model.device))
    finally:
        handle.remove()
    return torch.cat(captured)


def deep_knn_distance(queries: torch.Tensor, references: torch.Tensor, k: int = PLAUSIBILITY_K) -> torch.Tensor:
    """(Nq,) Deep-KNN score (Sun et al. 2022), the plausibility (lower is better).

    Each feature vector is L2-normalised; the score is the Euclidean distance
    from each query to its ``k``-th nearest reference. On unit vectors it is
    sqrt(2 - 2 cos), so it ranks by the angle alone: a visualization does not
    get closer or farther by scaling its activations.
    """
    if not 1 <= k <= references.shape[0]:
        raise ValueError(f"k={k} needs 1 to {references.shape[0]} reference features")
    queries, references = (F.normalize(x.double(), dim=1) for x in (queries, references))
    return torch.cdist(queries, references).kthvalue(k, dim=1).values


class PenultimateFeatures(nn.Module):
    """A model as torchmetrics' FID feature extractor: [0, 1] images -> penultimate features."""

    def __init__(self, model: Model, batch_size: int = BATCH_SIZE):
        super().__init__()
        self.model = model
        self.batch_size = batch_size
        layer = classifier_layer(model.net)
        if isinstance(layer, nn.Linear):
            self.num_features = layer.in_features  # spares torchmetrics a probing forward pass

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return penultimate_features(self.model, images, self.batch_size)


class FrechetDistance:
    """FID of generated sets against one natural set, with torchmetrics' implementation.

    ``features`` maps a batch to (N, D) features (``PenultimateFeatures`` of
    Inception-v3 for the paper's FID). The natural set's statistics are
    accumulated once, batch by batch (``add_natural``), and kept across the
    generated sets.
    """

    def __init__(self, features: nn.Module):
        self.metric = FrechetInceptionDistance(feature=features, normalize=True, reset_real_features=False)

    def add_natural(self, images: torch.Tensor) -> FrechetDistance:
        self.metric.update(images, real=True)
        return self

    def __call__(self, generated: torch.Tensor) -> float:
        """FID between ``generated`` and the natural set (NaN with fewer than 2 images on a side)."""
        self.metric.reset()
        if generated.shape[0] < 2 or int(self.metric.real_features_num_samples) < 2:
            return float("nan")
        self.metric.update(generated, real=False)
        return float(self.metric.compute())


def top1_hits(model: Model, images: torch.Tensor, units: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """(N,) bool: does ``model`` classify each image as its unit (top-1)?"""
    return logits(model, images, batch_size).argmax(dim=1) == units
