"""Many units in one run are faithful: each unit's objective rises and its own image drives it most.

The objective MACO maximises is a unit's logit averaged over random crops of
its image, so that is what is measured here, on the same 64 fixed evaluation
crops for every image: E[logit_j(crop of image_i)].
"""
import pytest
import torch

from maco.optimize import maco, olah
from maco.transforms import crop_and_resize, maco_crop_boxes

UNITS = [0, 1, 2, 3]


def crop_drive(model, images: list[torch.Tensor], crops: int = 64) -> torch.Tensor:
    """M[i, j]: mean logit of unit j over fixed random crops of the image made for unit i."""
    stacked = torch.stack(images)
    boxes = maco_crop_boxes(1, crops, stacked.shape[-2], stacked.shape[-1], torch.Generator().manual_seed(123),
                            centre_std=None)
    with torch.no_grad():
        return torch.stack([
            model(crop_and_resize(image.unsqueeze(0), boxes, model.input_size)).mean(0)[UNITS] for image in stacked
        ])


def assert_faithful(model, initial, final) -> None:
    before, after = crop_drive(model, initial), crop_drive(model, final)
    for j in UNITS:
        assert after[j, j] > before[j, j] + 0.2, f"unit {j}: objective did not rise ({before[j, j]:.2f} -> {after[j, j]:.2f})"
        others = torch.cat([after[:j, j], after[j + 1:, j]])
        assert after[j, j] > others.max(), f"unit {j} is driven more by another unit's image:\n{after}"


@pytest.mark.parametrize("together", [True, False], ids=["together", "one-at-a-time"])
def test_maco_units_are_faithful(tiny_model, together):
    kwargs = dict(size=64, crops=4, seed=3, progress=False)
    if together:
        initial = maco(tiny_model, UNITS, steps=0, **kwargs)
        final = maco(tiny_model, UNITS, steps=60, **kwargs)
    else:
        initial = [maco(tiny_model, [unit], steps=0, **kwargs)[0] for unit in UNITS]
        final = [maco(tiny_model, [unit], steps=60, **kwargs)[0] for unit in UNITS]
    assert [viz.unit for viz in final] == UNITS
    assert_faithful(tiny_model, [v.image for v in initial], [v.image for v in final])


def test_olah_units_are_faithful_together(tiny_model):
    kwargs = dict(size=32, seed=1, progress=False)
    initial, final = olah(tiny_model, UNITS, steps=0, **kwargs), olah(tiny_model, UNITS, steps=60, **kwargs)
    assert_faithful(tiny_model, [v.image for v in initial], [v.image for v in final])
