"""Augmentations: MACO's random crops and noise, and Lucid's standard transforms.

Both produce a batch at the model's input size in one batched resampling op:
``roi_align`` for MACO crops (it averages several samples per output pixel
when a crop is shrunk, i.e. it is antialiased; on the CPU the same op in its
exactly separable form, see ``crop_and_resize``), one ``grid_sample`` with a
per-image affine map for Lucid's pad/jitter/scale/rotate/jitter chain.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from maco.device import on_device

# MACO crops: side uniform with mean 0.275 and std 0.0144 of the image side, i.e. Horama's effective
# U[0.25, 0.30] (clipped to [0.1, 1]). The paper text's N(0.25, 0.1) measured worse (docs/maco.md).
CROP_MEAN = 0.275
CROP_STD = 0.0144
CROP_RANGE = (0.1, 1.0)
# crop centres ~ N(0.5, 0.18) of the side; the references' 0.15 scored lower on the whole image and on uniformly
# placed crops, and the same on centre crops (v6, docs/maco.md)
CROP_CENTRE_STD = 0.18

# Lucid's standard_transforms: pad 12 (grey), jitter 8, scale 0.9..1.1 in 11
# steps, rotate -10..10 deg (0 five times more likely), jitter 4.
LUCID_PAD = 12
LUCID_JITTER = (8, 4)
LUCID_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
LUCID_ANGLES = tuple(range(-10, 11)) + (0,) * 5


def maco_crop_boxes(
    units: int,
    crops: int,
    height: int,
    width: int,
    generator: torch.Generator,
    mean: float = CROP_MEAN,
    std: float = CROP_STD,
    side_range: tuple[float, float] = CROP_RANGE,
    centre_std: float | None = CROP_CENTRE_STD,
) -> torch.Tensor:
    """Random square crop boxes, ``crops`` per unit, as roi_align rows (unit, x1, y1, x2, y2).

    Sides: a fraction of the image side, uniform with ``mean`` and ``std``.
    Centres ~ N(0.5, ``centre_std``) of the image side, centre-biased as in
    the references, a little wider (``None``: uniform), the box shifted to lie inside the image.
    """
    device = generator.device
    count = units * crops
    # uniform with that mean and std, as Horama's U[0.25, 0.30]; a normal measured worse (docs/maco.md)
    spread = std * math.sqrt(3)
    draw = torch.rand(count, generator=generator, device=device)
    side = torch.add(mean - spread, draw, alpha=2 * spread).clamp_(*side_range).mul_(min(height, width))
    extent = _extent(width, height, torch.device(device))  # x, then y, as drawn
    if centre_std is None:
        draws = [torch.rand(count, generator=generator, device=device) for _ in range(2)]
        corners = torch.stack(draws, dim=1).mul_(extent - side.unsqueeze(1))
    else:
        draws = [torch.randn(count, generator=generator, device=device) for _ in range(2)]
        centre = torch.stack(draws, dim=1).mul_(centre_std).add_(0.5).mul_(extent)
        corners = torch.minimum(centre.sub_(side.unsqueeze(1), alpha=0.5).clamp_(min=0), extent - side.unsqueeze(1))
    owner = torch.arange(count, dtype=side.dtype, device=device).div_(crops, rounding_mode="floor")
    return torch.cat([owner.unsqueeze(1), corners, corners + side.unsqueeze(1)], dim=1)


def whole_image_boxes(units: int, height: int, width: int, device: torch.device | str) -> torch.Tensor:
    """One box per unit covering its whole image (MACO without crops), as roi_align rows."""
    boxes = torch.zeros(units, 5, device=device)
    boxes[:, 0] = torch.arange(units, device=device)
    boxes[:, 3], boxes[:, 4] = width, height
    return boxes


@functools.lru_cache(maxsize=16)
def _extent(width: int, height: int, device: torch.device) -> torch.Tensor:
    """(width, height) as a tensor on ``device``, made once."""
    return torch.tensor([width, height], dtype=torch.float32, device=device)


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop every box out of its image and resize it to ``size`` x ``size``, antialiased.

    The result is torchvision's ``roi_align(aligned=True, sampling_ratio=-1)``.
    On the CPU its backward runs on one thread and cost more than half of what
    MACO adds to a step, so there the same sums are computed in their
    separable form (two batched matrix products for all crops at once,
    multi-threaded); both agree to float rounding (tests/maco/test_maco_crops.py).
    The separable form is also the deterministic one, used on every device under
    ``torch.use_deterministic_algorithms``. Its sampling weights and windows
    are a few kilobytes computed on the host (``separable_sampling``),
    instead of some fifty small device operators and two device syncs per
    step. The result may be a non-contiguous view (its channels are the third
    axis in memory); ``uniform_noise`` gives it back contiguous.
    """
    # roi_align's CUDA backward accumulates with atomics: not deterministic
    if images.device.type != "cpu" and not torch.are_deterministic_algorithms_enabled():
        return roi_align(images, boxes.to(images), output_size=size, spatial_scale=1.0, sampling_ratio=-1,
                         aligned=True)
    windows, rows, cols = separable_sampling(boxes.detach().cpu().float().numpy(), images.shape, size)
    rows, cols = (torch.from_numpy(weights).to(images) for weights in (rows, cols))
    return _SeparableCrops.apply(images, windows, rows, cols)


def separable_sampling(
    boxes: np.ndarray, shape: torch.Size, size: int
) -> tuple[list[tuple[int, int, int]], np.ndarray, np.ndarray]:
    """What ``_SeparableCrops`` needs for ``boxes`` (roi_align rows, float32 as roi_align's own arithmetic) on images of ``shape``.

    Returns every crop's window as (image, first row, first column), all
    windows of one size (the weights' last axes), and the row and column
    weights, (crops, size, window) each, float32.
    """
    height, width = shape[2:]
    # aligned=True: pixel centres sit at integer coordinates, so box edges move by half a pixel
    first, weights = axis_weights(boxes[:, 1:3] - 0.5, boxes[:, 3:] - boxes[:, 1:3], size, np.array([width, height], np.float32))
    cols, rows = weights[:, 0, :, :min(weights.shape[-1], width)], weights[:, 1, :, :min(weights.shape[-1], height)]
    windows = np.stack([boxes[:, 0].astype(np.int64), first[:, 1], first[:, 0]], axis=1).tolist()
    return windows, np.ascontiguousarray(rows, np.float32), np.ascontiguousarray(cols, np.float32)


def axis_weights(
    start: np.ndarray, length: np.ndarray, out_size: int, in_size: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """roi_align's sampling along one axis, as one (out_size, window) weight matrix per crop and axis.

    roi_align averages a grid of ceil(length / out_size) bilinear samples per
    output pixel and axis, with the grid and the validity test applied per
    axis, so its 2-D weights are the outer product of two 1-D ones. A crop
    only touches a window of the input, of one length for all (the longest,
    at most ``in_size``), placed to lie inside it; the weights are relative to
    it. ``start``, ``length``: any shape (here (crops, axes)), ``in_size``
    broadcast to it. Returns the windows' first index and the weights
    (*shape, out_size, window), zero beyond each crop's samples.
    """
    extent = in_size[..., None, None]
    start, length = start[..., None, None], length[..., None, None]
    bin_size = length / out_size
    grid = np.maximum(np.ceil(bin_size), 1)
    pixel = np.arange(out_size, dtype=start.dtype)[:, None]
    sample = np.arange(int(grid.max()), dtype=start.dtype)
    coord = start + pixel * bin_size + (sample + 0.5) * bin_size / grid
    # roi_align's bilinear_interpolate: samples beyond one pixel outside are zero,
    # the others are clamped to the border
    valid = (sample < grid) & (coord >= -1) & (coord <= extent)
    last = extent - 1
    low = np.minimum(np.floor(np.maximum(coord, 0)), last)
    at_border = low >= last
    high = np.where(at_border, low, low + 1)
    frac = np.where(at_border, 0, np.maximum(coord, 0) - low)
    first = np.where(valid, low, extent).min(axis=(-2, -1))
    window = int((np.where(valid, high, -1).max(axis=(-2, -1)) - first).max()) + 1
    first = np.minimum(first, np.maximum(in_size - window, 0)).astype(np.int64)
    scale = valid / grid
    weights = np.zeros((*first.shape, out_size, window), start.dtype)
    # one row of weights per output pixel: add each sample's two taps at their place in the window
    targets = weights.reshape(-1, window)
    rows = np.broadcast_to(np.arange(targets.shape[0]).reshape(*first.shape, out_size, 1), coord.shape)
    for index, weight in ((low, (1 - frac) * scale), (high, frac * scale)):
        # invalid samples have zero weight; clip their indices into the window
        place = np.clip(index.astype(np.int64) - first[..., None, None], 0, window - 1)
        np.add.at(targets, (rows.reshape(-1), place.reshape(-1)), weight.reshape(-1))
    return first, weights


class _SeparableCrops(torch.autograd.Function):
    """out[n, c] = rows[n] @ window[n][c] @ cols[n].T for all crops in two batched products.

    ``windows``: every crop's window of ``images`` as (image, first row, first
    column), their size the weights' last axes. The windows are stacked rows
    before channels so that both products run on views, with no broadcast copy
    of the weights. The backward adds each window's gradient onto its slice of
    one image-sized buffer, filled once. Slices, one ``cat`` forward and one
    ``add_`` per crop backward, rather than a gather: on the CPU the gather took
    2x and its backward (an accumulating, single-threaded ``index_put_``) 5-9x
    longer; both are deterministic on every device.
    """

    @staticmethod
    def forward(ctx, images, windows, rows, cols):  # noqa: ANN001, ANN205
        height, width = rows.shape[-1], cols.shape[-1]
        crops = torch.stack([images[image, :, top:top + height, left:left + width].transpose(0, 1)
                             for image, top, left in windows])  # (N, window rows, C, window columns)
        count, channels = len(rows), crops.shape[2]
        half = crops.view(count, -1, crops.shape[-1]) @ cols.transpose(1, 2)  # (N, window rows x C, S)
        out = rows @ half.view(count, rows.shape[-1], -1)  # (N, S, C x S)
        ctx.save_for_backward(rows, cols)
        ctx.layout = (images.shape, windows)
        return out.view(count, rows.shape[1], channels, -1).transpose(1, 2)  # (N, C, S, S), a view

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        rows, cols = ctx.saved_tensors
        shape, windows = ctx.layout
        # (N, C, window rows, S): the one broadcast copy, of the row weights
        half = rows.transpose(1, 2).unsqueeze(1) @ grad_out
        crops = half.flatten(1, 2) @ cols  # (N, C x window rows, window columns)
        height, width = half.shape[2], crops.shape[-1]
        images = grad_out.new_zeros(shape)
        for (image, top, left), crop in zip(windows, crops.view(*half.shape[:3], width)):
            images[image, :, top:top + height, left:left + width].add_(crop)
        return images, None, None, None


def uniform_noise(images: torch.Tensor, amplitude: float, generator: torch.Generator) -> torch.Tensor:
    """``images`` + U(-amplitude, amplitude), contiguous whatever the layout of ``images``."""
    noise = torch.empty(images.shape, dtype=images.dtype, device=images.device)
    return noise.uniform_(-amplitude, amplitude, generator=generator).add_(images)


def lucid_transform_grids(
    count: int, image_size: int, output_size: int, generator: torch.Generator
) -> torch.Tensor:
    """Sampling grids (count, S, S, 2) for Lucid's standard transforms, then a resize to ``output_size``.

    The chain pad -> jitter -> scale -> rotate -> jitter -> resize is one affine
    map per image; it is inverted here so that each output pixel knows where
    to sample the original image (coordinates in pixels, origin top-left).
    """
    device = generator.device

    def choice(values: tuple[float, ...]) -> torch.Tensor:
        return on_device(values, device)[torch.randint(len(values), (count,), generator=generator, device=device)]

    def offsets(jitter: int) -> torch.Tensor:
        return torch.randint(jitter + 1, (count, 2), generator=generator, device=device).float()

    scale = choice(LUCID_SCALES)
    angle = choice(LUCID_ANGLES) * math.pi / 180
    first, second = offsets(LUCID_JITTER[0]), offsets(LUCID_JITTER[1])
    side_after_jitter = image_size + 2 * LUCID_PAD - LUCID_JITTER[0]
    side_scaled = side_after_jitter * scale  # (count,)
    side_final = side_scaled - LUCID_JITTER[1]

    centers = torch.arange(output_size, dtype=torch.float32, device=device) + 0.5
    ys, xs = torch.meshgrid(centers, centers, indexing="ij")
    out = torch.stack([xs, ys], dim=-1).expand(count, -1, -1, -1)  # (count, S, S, 2) as (x, y)
    # undo the resize and the second jitter: coordinates in the rotated canvas
    rotated = out * (side_final / output_size).view(-1, 1, 1, 1) + second.view(-1, 1, 1, 2)
    # undo the rotation about the canvas centre
    half = (side_scaled / 2).view(-1, 1, 1, 1)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    dx, dy = (rotated - half).unbind(-1)
    unrotated = torch.stack([cos * dx + sin * dy, -sin * dx + cos * dy], dim=-1) + half
    # undo the scale, the first jitter and the padding
    source = unrotated / scale.view(-1, 1, 1, 1) + first.view(-1, 1, 1, 2) - LUCID_PAD
    return source / image_size * 2 - 1  # grid_sample's [-1, 1], align_corners=False


def lucid_transforms(images: torch.Tensor, output_size: int, generator: torch.Generator) -> torch.Tensor:
    """Lucid's standard transforms, one random draw per image, padding with grey 0.5."""
    grids = lucid_transform_grids(images.shape[0], images.shape[-1], output_size, generator).to(images)
    # grid_sample's CUDA backward accumulates with atomics: not deterministic
    sample = bilinear_sample if torch.are_deterministic_algorithms_enabled() else _grid_sample
    return sample(images - 0.5, grids) + 0.5


def _grid_sample(images: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(images, grids, mode="bilinear", padding_mode="zeros", align_corners=False)


def bilinear_sample(images: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """``grid_sample`` (bilinear, zero padding, align_corners=False) by indexing, (N, C, S, S) out.

    Its backward is an accumulating ``index_put_``, which has a deterministic
    implementation on CUDA; ``grid_sample``'s backward has none.
    """
    count, _, height, width = images.shape
    # one pixel of zeros around the image: every corner outside it reads a zero
    padded = F.pad(images, (1, 1, 1, 1))
    x = ((grids[..., 0] + 1) * width - 1) / 2  # pixel coordinates, (N, S, S)
    y = ((grids[..., 1] + 1) * height - 1) / 2
    x0, y0 = x.floor(), y.floor()
    owner = torch.arange(count, device=images.device).view(-1, 1, 1)
    out = 0
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        weight = (1 - (x - x0 - dx).abs()) * (1 - (y - y0 - dy).abs())
        rows = (y0 + dy).clamp(-1, height).long() + 1
        cols = (x0 + dx).clamp(-1, width).long() + 1
        out = out + padded[owner, :, rows, cols] * weight.unsqueeze(-1)  # (N, S, S, C)
    return out.permute(0, 3, 1, 2)
