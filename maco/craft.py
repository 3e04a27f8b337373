"""CRAFT concepts (Fel et al., CVPR 2023): NMF of a layer's activations on image patches, Sobol importance.

The steps, as in the paper: cut random patches out of one class's images and
resize each to the model's input; take the layer's activations, made
non-negative (clamped at 0; post-ReLU layers already are) and pooled over
positions or tokens; factorise them with scikit-learn's NMF, A ~ U W, where
each row of W is a concept vector in the layer's channel space and U holds
every patch's concept coefficients. The importance of a concept is its total
Sobol index on the class logit: the whole images' activations are rewritten
position by position as (U * mask) W, with masks drawn from a Sobol sequence,
and fed through the rest of the network (CRAFT's estimator: Jansen's).

craft-xai (the authors' package) is not used: its PyTorch module imports
TensorFlow for its samplers and needs the network split in two callables;
a forward hook that replaces the layer's output does the split for any timm
model here, and ``torch.quasirandom.SobolEngine`` draws the masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import NMF

from maco.models import Model
from maco.objectives import ObjectiveError, _pooled, capture, resolve_layers

PATCH_FRACTION = 0.3  # patch side / image side: CRAFT's 64 px patches of 224 px images
SOBOL_DESIGNS = 32  # CRAFT's nb_design
BATCH = 64


class ConceptError(ValueError):
    """Concept extraction asked for something the data or the layer cannot give."""


@dataclass
class ConceptBasis:
    """The concept vectors of one layer and the fitted NMF that gives any activation's coefficients."""

    layer: str
    vectors: torch.Tensor  # (K, C): row k is concept k in the layer's channel space
    nmf: NMF

    def coefficients(self, features: torch.Tensor) -> torch.Tensor:
        """(N, K) concept coefficients of (N, C) non-negative features (W held fixed)."""
        array = features.detach().cpu().numpy().astype(self.nmf.components_.dtype)
        return torch.from_numpy(self.nmf.transform(array)).float()


def random_patch_boxes(images: int, per_image: int, side: int, fraction: float,
                       generator: torch.Generator) -> torch.Tensor:
    """Random square boxes, ``per_image`` per image, as ``crop_and_resize`` rows (image, x1, y1, x2, y2)."""
    patch = fraction * side
    corners = torch.rand(images * per_image, 2, generator=generator) * (side - patch)
    owner = torch.arange(images).repeat_interleave(per_image).float()
    return torch.stack([owner, corners[:, 0], corners[:, 1], corners[:, 0] + patch, corners[:, 1] + patch], dim=1)


def layer_activations(model: Model, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The layer's raw output for images in [0, 1], in batches, on the CPU."""
    outputs = []
    with torch.no_grad(), capture(model.net, [layer]) as store:
        for start in range(0, len(images), BATCH):
            model(images[start:start + BATCH].to(model.device))
            outputs.append(store[layer].float().cpu())
    return torch.cat(outputs)


def pooled_features(activations: torch.Tensor) -> torch.Tensor:
    """(N, C) non-negative features: clamped at 0, then pooled as the ``direction`` objective pools."""
    return _pooled(activations.clamp(min=0))


def fit_concepts(features: torch.Tensor, layer: str, count: int, seed: int = 0) -> tuple[ConceptBasis, torch.Tensor]:
    """NMF of (P, C) non-negative features into ``count`` concepts; returns the basis and the (P, K) coefficients."""
    samples, channels = features.shape
    if count > channels:
        raise ConceptError(f"{count} concepts asked but layer {layer} has only {channels} channels")
    if count > samples:
        raise ConceptError(f"{count} concepts asked from only {samples} patches; cut more patches")
    nmf = NMF(n_components=count, init="nndsvda", max_iter=1000, random_state=seed)
    coefficients = nmf.fit_transform(features.numpy().astype(np.float64))
    basis = ConceptBasis(layer, torch.from_numpy(nmf.components_).float(), nmf)
    return basis, torch.from_numpy(coefficients).float()


def relative_error(features: torch.Tensor, coefficients: torch.Tensor, basis: ConceptBasis) -> float:
    """||A - U W||_F / ||A||_F."""
    return float(torch.linalg.norm(features - coefficients @ basis.vectors) / torch.linalg.norm(features))


def sobol_masks(concepts: int, designs: int) -> torch.Tensor:
    """Saltelli's design: matrices A, B, then per concept i, A with column i taken from B; ((K + 2) * n, K)."""
    ab = torch.quasirandom.SobolEngine(2 * concepts, scramble=False).draw(designs)
    a, b = ab[:, :concepts], ab[:, concepts:]
    replicated = a.repeat(concepts, 1, 1)
    for i in range(concepts):
        replicated[i, :, i] = b[:, i]
    return torch.cat([a, b, replicated.reshape(-1, concepts)])


def jansen_total_indices(outputs: torch.Tensor, concepts: int, designs: int) -> torch.Tensor:
    """Jansen's estimator of the total Sobol indices from outputs on ``sobol_masks``' rows (as craft-xai)."""
    a = outputs[:designs]
    replicated = outputs[2 * designs:].reshape(concepts, designs)
    variance = a.var()
    if variance <= 0:
        return torch.zeros(concepts)
    return ((a - replicated) ** 2).sum(dim=1) / (2 * designs * variance)


def _logits_with_layer_replaced(model: Model, layer: str, image: torch.Tensor, replacement: torch.Tensor,
                                widen: bool = True):
    """Logits when ``layer`` outputs ``replacement`` (M rows) for one image.

    With ``widen``, the image is fed once and the layer's output widened to M
    rows, so the part before the layer runs once; a network that mixes the
    layer's input into later blocks broadcasts it (the same for every row) or,
    where it cannot, gets the image repeated M times, as without ``widen``.
    """
    module = resolve_layers(model.net, [layer])[layer]
    handle = module.register_forward_hook(lambda _module, _inputs, _output: replacement)
    try:
        with torch.no_grad():
            try:
                logits = model(image[None]) if widen else None
            except RuntimeError:
                logits = None
            if logits is None or logits.shape[0] != len(replacement):
                logits = model(image[None].expand(len(replacement), -1, -1, -1))
    finally:
        handle.remove()
    return logits


def sobol_importance(model: Model, basis: ConceptBasis, images: torch.Tensor, class_index: int,
                     designs: int = SOBOL_DESIGNS, widen: bool = True) -> torch.Tensor:
    """(K,) mean over images of each concept's total Sobol index on the class logit.

    ``widen=False`` feeds every image once per mask (what craft-xai's split
    network costs); the benchmark compares both.
    """
    if not 0 <= class_index < model.num_classes:
        raise ObjectiveError(f"class {class_index} out of range: {model.name} has outputs 0..{model.num_classes - 1}")
    concepts = len(basis.vectors)
    masks = sobol_masks(concepts, designs)
    vectors = basis.vectors.to(model.device)
    indices = []
    for image in images:
        activation = layer_activations(model, basis.layer, image[None])[0].clamp(min=0)
        # one row per position: NCHW maps give (C, h, w) per image, ViT tokens (T, C)
        channels_first = activation.ndim == 3
        positions = activation.flatten(1).T if channels_first else activation.reshape(-1, vectors.shape[1])
        codes = basis.coefficients(positions).to(model.device)  # (positions, K)
        rewritten = (codes[None] * masks.to(model.device)[:, None, :]) @ vectors  # (M, positions, C)
        if channels_first:
            rewritten = rewritten.transpose(1, 2)
        rewritten = rewritten.reshape(len(masks), *activation.shape)
        logits = _logits_with_layer_replaced(model, basis.layer, image.to(model.device), rewritten, widen)
        indices.append(jansen_total_indices(logits[:, class_index].float().cpu(), concepts, designs))
    return torch.stack(indices).mean(dim=0)
