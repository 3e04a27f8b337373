"""Networks trained here on classes made of two distinct parts each (applications.parts): concepts exist."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
import torch
from torch import nn

from applications.parts import (
    CLASS_PARTS,
    PART_FRACTION,
    draw,
    overlap,
    parts_cnn_net,
    train_on_parts,
)
from maco.models import Model

SIZE = 48


def trained(net: nn.Module, name: str, steps: int) -> Model:
    model = Model(net=net, name=name, input_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                  weights="trained in the test", num_classes=len(CLASS_PARTS))
    accuracy = train_on_parts(net, model, steps)
    assert accuracy > 0.9, f"{name} did not learn the parts classes (accuracy {accuracy:.2f})"
    return model


@pytest.fixture(scope="session")
def parts_cnn() -> Model:
    """The small CNN of applications.parts, trained here."""
    torch.manual_seed(0)
    net = parts_cnn_net()
    return trained(net, "parts-cnn", 100)


@pytest.fixture(scope="session")
def parts_vit() -> Model:
    """A two-block timm ViT (8 px patches, a CLS token) trained on the same classes."""
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=SIZE, patch_size=8, depth=2,
                            embed_dim=32, num_heads=2, num_classes=len(CLASS_PARTS))
    return trained(net, "parts-vit", 100)


@pytest.fixture(scope="session")
def parts() -> SimpleNamespace:
    """Drawing helpers at the test size, for tests that need the parts' positions."""
    side = round(PART_FRACTION * SIZE)
    return SimpleNamespace(size=SIZE, draw=lambda label, keep, generator: draw(label, keep, generator, SIZE),
                           overlap=lambda box, corner: overlap(box, corner, side))


@pytest.fixture
def restores_determinism():
    """A test that runs a command with --deterministic: the switch is process-wide, so undo it afterwards."""
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
