"""A seeded MACO run pinned to the images the code made before issue 28's faster step.

``data/maco_pinned_v7.npz`` holds ``pinned_run()``'s output computed at commit a155875 (algorithm
maco-study-maco/7, the separable crops with a Python loop per crop, noise drawn after the crops):
the two images and transparency maps average-pooled over 4 x 4 pixels, and the objective at every
step. Any change of the step's arithmetic must keep them within float rounding; a change of the
algorithm fails here and bumps ``MACO_ALGORITHM`` with a new pinned file (docs/maco.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from maco.models import Model
from maco.optimize import MACO_ALGORITHM, maco
from maco.spectra import analytic_spectrum

PINNED = Path(__file__).parent / "data" / "maco_pinned_v7.npz"
# float32 rounding that differs in the order of sums (measured: roi_align in place of the separable
# crops moves the images by 4e-6 after 16 steps) stays far below this; any change of the random
# draws or of the algorithm moves them by 1e-2 or more
IMAGE_ATOL = 1e-4


def pinned_run() -> dict[str, np.ndarray]:
    """Two units of a seeded random-weight CNN, 16 steps, crops upsampled as at the study's sizes."""
    torch.manual_seed(28)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    model = Model(net, "pinned", 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "random", 5)
    runs = maco(model, [1, 3], steps=16, size=64, crops=3, seed=11, spectrum=analytic_spectrum(64), progress=False)
    images = torch.stack([run.image for run in runs])
    transparency = torch.stack([run.transparency for run in runs])
    return {
        "images": nn.functional.avg_pool2d(images, 4).numpy(),
        "transparency": nn.functional.avg_pool2d(transparency / transparency.amax(), 4).numpy(),
        "history": np.array([run.history for run in runs], dtype=np.float32),
    }


def test_a_seeded_run_makes_the_pinned_images() -> None:
    assert MACO_ALGORITHM == "maco-study-maco/7"  # a new version comes with a new pinned file
    pinned, got = np.load(PINNED), pinned_run()
    np.testing.assert_allclose(got["images"], pinned["images"], rtol=0, atol=IMAGE_ATOL)
    np.testing.assert_allclose(got["transparency"], pinned["transparency"], rtol=0, atol=IMAGE_ATOL)
    np.testing.assert_allclose(got["history"], pinned["history"], rtol=1e-4, atol=1e-4)
