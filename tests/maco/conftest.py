"""Shared fixtures for maco/ tests: a tiny network trained here so that its units really respond."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from maco.models import Model
from maco.toy import train_toy

os.environ.setdefault("MACO_OFFLINE", "1")  # never try to download the ImageNet spectrum in tests

SHARED_SPECTRUM = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet_spectrum_decorrelated.npy"
# the published spectrum is never committed; CI has it (.ci/run stops when it is missing), and a
# local run without it says in its summary that these tests did not run
needs_shared = pytest.mark.skipif(
    not SHARED_SPECTRUM.exists(),
    reason=f"NOT RUN: the published MACO spectrum {SHARED_SPECTRUM} is missing (CI has it in ../shared/data)")

TINY_SIZE = 32
# Four classes of coloured gratings: (RGB colour, orientation in degrees). No pure green: it lies on the
# weakest axis of ImageNet's decorrelated colour space, and on this network neither our MACO nor Horama
# drives a green grating's unit at all (docs/maco.md).
TINY_CLASSES = [((1.0, 0.1, 0.1), 0), ((0.1, 0.1, 0.1), 90), ((0.1, 0.2, 1.0), 45), ((0.9, 0.9, 0.1), 135)]


def grating_batch(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Coloured sinusoidal gratings in [0, 1], random period and phase, with noise."""
    n = labels.shape[0]
    coords = torch.arange(TINY_SIZE, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    angles = torch.tensor([math.radians(TINY_CLASSES[i][1]) for i in labels.tolist()])
    period = 8 + 8 * torch.rand(n, generator=generator)
    phase = 2 * math.pi * torch.rand(n, generator=generator)
    along = x * torch.cos(angles).view(-1, 1, 1) + y * torch.sin(angles).view(-1, 1, 1)
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * along / period.view(-1, 1, 1) + phase.view(-1, 1, 1))
    colours = torch.tensor([TINY_CLASSES[i][0] for i in labels.tolist()]).view(n, 3, 1, 1)
    images = 0.5 + (colours - 0.5) * wave.unsqueeze(1)
    return (images + 0.1 * torch.randn(images.shape, generator=generator)).clamp(0, 1)


@pytest.fixture(scope="session")
def tiny_model() -> Model:
    """A small CNN trained in a few seconds to tell the four gratings apart."""
    torch.manual_seed(0)  # the initial weights
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, len(TINY_CLASSES)),
    )
    model, accuracy = train_toy(net, grating_batch, len(TINY_CLASSES), TINY_SIZE, 150, "tiny")
    assert accuracy > 0.95, f"the tiny network did not learn the gratings (accuracy {accuracy:.2f})"
    return model
