"""Shared fixtures: a tiny deterministic classifier and a small image pool."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from maco.models import Model
from stimuli.models import StudyModel
from stimuli.testing import write_pool

TINY_CLASSES = 10


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, TINY_CLASSES)).eval()


def tiny_model(input_size: int = 32, dtype: torch.dtype = torch.float32) -> StudyModel:
    return StudyModel(Model(net=tiny_net().to(dtype), name="tiny", input_size=input_size,
                            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                            weights="random", num_classes=TINY_CLASSES))


@pytest.fixture
def model() -> StudyModel:
    return tiny_model()


@pytest.fixture
def make_model():
    return tiny_model


@pytest.fixture
def make_pool():
    return write_pool
