"""MACO's crop-and-resize equals torchvision's roi_align, forward and backward."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from maco.transforms import crop_and_resize, maco_crop_boxes


def reference(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    return roi_align(images, boxes, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def edge_boxes(height: int, width: int) -> torch.Tensor:
    """Boxes on the borders, the whole image, enlarging and non-square ones."""
    return torch.tensor([
        [0, 0.0, 0.0, width, height],
        [0, 0.0, 0.0, 7.3, 9.1],
        [0, width - 11.2, height - 5.5, width, height],
        [1, 3.7, 1.2, 40.9, 20.4],
        [1, 0.2, height - 30.0, 29.0, height],
    ])


@pytest.mark.parametrize("size", [16, 24, 50])
def test_equals_roi_align_on_random_and_edge_boxes(size: int) -> None:
    generator = torch.Generator().manual_seed(size)
    images = torch.rand(2, 3, 64, 48, generator=generator, requires_grad=True)
    boxes = torch.cat([maco_crop_boxes(2, 5, 64, 48, generator), edge_boxes(64, 48)])
    grad_out = torch.randn(len(boxes), 3, size, size, generator=generator)

    expected = reference(images, boxes, size)
    got = crop_and_resize(images, boxes, size)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    (expected_grad,) = torch.autograd.grad(expected, images, grad_out)
    (got_grad,) = torch.autograd.grad(got, images, grad_out)
    assert torch.allclose(got_grad, expected_grad, atol=1e-5, rtol=1e-5)
    assert got_grad.abs().sum() > 0


def test_crops_of_one_image_accumulate_and_others_get_no_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 32, 32, generator=generator, requires_grad=True)
    boxes = maco_crop_boxes(2, 4, 32, 32, generator)  # owners 0 and 1 only
    crop_and_resize(images, boxes, 8).sum().backward()
    assert images.grad[2].abs().sum() == 0
    # a crop's output sums its input with weights summing to one per output pixel
    # (inside the image), so the total gradient mass is crops x pixels x channels
    assert torch.isclose(images.grad.sum(), torch.tensor(8 * 8 * 8 * 3.0), rtol=1e-5)
