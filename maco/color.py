"""ImageNet colour decorrelation (Olah et al. 2017, as in Lucid).

Images are optimised in a decorrelated colour space; ``recorrelate`` maps them
back to RGB. The matrix is the square root of ImageNet's colour covariance
(its SVD), normalised so that its largest column has unit norm.
"""
from __future__ import annotations

import torch

from maco.device import on_device

_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02],
     [0.27, 0.00, -0.05],
     [0.27, -0.09, 0.03]]
)
COLOR_CORRELATION = _SVD_SQRT / _SVD_SQRT.norm(dim=0).max()
COLOR_DECORRELATION = torch.linalg.inv(COLOR_CORRELATION)


def _mix(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix to (..., 3, H, W) images (the matrix is copied to their device once)."""
    return torch.einsum("ij,...jhw->...ihw", on_device(matrix, images.device, images.dtype), images)


def recorrelate(images: torch.Tensor) -> torch.Tensor:
    """Decorrelated colour space -> RGB, for (..., 3, H, W) tensors."""
    return _mix(images, COLOR_CORRELATION)


def decorrelate(images: torch.Tensor) -> torch.Tensor:
    """RGB -> decorrelated colour space, for (..., 3, H, W) tensors."""
    return _mix(images, COLOR_DECORRELATION)
