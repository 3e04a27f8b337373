import pytest
import torch

from maco.objectives import ObjectiveError, channel, logit
from maco.optimize import maco, pixel
from maco.transparency import alpha_map, masked_image


def test_same_seed_same_images_other_seed_other_images(tiny_model):
    kwargs = dict(steps=3, size=32, crops=2, progress=False)
    first, again = maco(tiny_model, [1], seed=5, **kwargs)[0], maco(tiny_model, [1], seed=5, **kwargs)[0]
    other = maco(tiny_model, [1], seed=6, **kwargs)[0]
    assert torch.equal(first.image, again.image) and torch.equal(first.transparency, again.transparency)
    assert not torch.equal(first.image, other.image)


def test_transparency_is_the_sum_of_gradient_magnitudes(tiny_model):
    per_step = []

    def record(step, phase, values):
        per_step.append(step)

    viz = maco(tiny_model, [2], steps=4, size=32, crops=2, progress=False, callback=record)[0]
    assert viz.transparency.shape == (32, 32) and (viz.transparency >= 0).all() and viz.transparency.sum() > 0
    assert len(viz.history) == 4 and per_step == [0, 1, 2, 3]
    assert viz.spectrum_source.startswith("analytic") and viz.method == "maco"


def test_the_phase_learning_rate_is_annealed_on_a_cosine(tiny_model):
    def phase_steps(final_lr_fraction):
        phases = []
        maco(tiny_model, [1], steps=12, size=32, crops=2, progress=False, final_lr_fraction=final_lr_fraction,
             callback=lambda step, phase, values: phases.append(phase.detach().clone()))
        return [(after - before).abs().mean().item() for before, after in zip(phases, phases[1:])]

    annealed, constant = phase_steps(0.1), phase_steps(1.0)
    # step 1: lr x 0.985 against lr; step 11 (the last): lr x 0.115 against lr
    assert annealed[0] == pytest.approx(0.985 * constant[0], rel=0.02)
    assert annealed[-1] < 0.3 * constant[-1]
    with pytest.raises(ObjectiveError, match=r"final_lr_fraction must be in \[0, 1\], got 1.5"):
        maco(tiny_model, [1], steps=1, size=32, final_lr_fraction=1.5)


def test_objectives_are_checked_before_any_work(tiny_model):
    with pytest.raises(ObjectiveError, match=r"unit\(s\) \[4\] out of range"):
        maco(tiny_model, [0, 4], steps=1, size=32)
    with pytest.raises(ObjectiveError, match="either units or objectives"):
        maco(tiny_model, steps=1, size=32)
    viz = pixel(tiny_model, objectives=[logit(0) + 0.1 * channel("3", 5)], steps=2, progress=False)[0]
    assert viz.unit == "logit 0 + 0.1 * (channel 3:5)"


def test_alpha_map_and_masked_image_known_values():
    transparency = torch.arange(100, dtype=torch.float32).view(10, 10)
    alpha = alpha_map(transparency, percentile=50)
    ceiling = torch.quantile(transparency.flatten(), 0.5)
    assert alpha[0, 0] == 0 and alpha.max() == 1 and alpha[9, 9] == 1
    assert alpha[2, 0] == pytest.approx(20 / ceiling.item())
    image = torch.full((3, 10, 10), 0.2)
    masked = masked_image(image, transparency, percentile=50, background=1.0)
    assert masked[:, 0, 0].tolist() == pytest.approx([1.0] * 3)  # fully transparent: the background
    assert masked[:, 9, 9].tolist() == pytest.approx([0.2] * 3)  # fully opaque: the image
