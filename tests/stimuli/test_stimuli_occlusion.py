from __future__ import annotations

import torch

from stimuli.occlusion import occluder_side, query_pair


def brute_force(model, image, unit, side, stride):
    """One forward per position, the occluder filled with the rounded region mean."""
    size = image.shape[-1]
    results = {}
    for y in range(0, size - side + 1, stride):
        for x in range(0, size - side + 1, stride):
            occluded = image.clone()
            colour = torch.round(image[:, y:y + side, x:x + side].mean((1, 2)) * 255) / 255
            occluded[:, y:y + side, x:x + side] = colour[:, None, None]
            results[(y, x)] = (float(model.logits(occluded[None])[0, unit]), occluded)
    return results


def test_batched_occlusion_equals_brute_force_loop(make_model):
    model = make_model(input_size=30, dtype=torch.float64)
    torch.manual_seed(1)
    image = torch.round(torch.rand(3, 30, 30, dtype=torch.float64) * 255) / 255
    for unit, stride, batch_size in ((2, 2, 7), (5, 3, 1000)):
        side = occluder_side(30, 0.4)
        expected = brute_force(model, image, unit, side, stride)
        result = query_pair(model, image, unit, 0.4, stride, batch_size)
        best = max(expected, key=lambda p: expected[p][0])
        worst = min(expected, key=lambda p: expected[p][0])
        assert result.side == side == 12
        assert result.max_position == best and result.min_position == worst
        assert abs(result.activation_max - expected[best][0]) < 1e-10
        assert abs(result.activation_min - expected[worst][0]) < 1e-10
        assert torch.equal(result.max_image, expected[best][1])
        assert torch.equal(result.min_image, expected[worst][1])
        assert abs(result.activation_base - float(model.logits(image[None])[0, unit])) < 1e-12
        assert result.relative_difference == (
            (result.activation_max - result.activation_min) / abs(result.activation_base))


def test_occluder_is_forty_percent_of_the_side():
    assert occluder_side(224, 0.4) == 90
    assert occluder_side(64, 0.4) == 26
