"""Networks trained here on classes made of distinct parts, so that concepts exist.

Every class has two parts (a colour and a texture of its own) pasted at random
places on a noisy grey ground; in training each part is sometimes left out,
so the network must recognise either part alone: two concepts per class.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
import torch
from torch import nn

from maco.models import Model

SIZE = 48
PART = 14
# per class: two parts, each (RGB colour, texture) with texture "disk", "vstripes", "hstripes" or "checker"
CLASS_PARTS = [
    [((1.0, 0.15, 0.1), "disk"), ((0.1, 0.8, 0.2), "vstripes")],
    [((0.15, 0.3, 1.0), "hstripes"), ((1.0, 0.9, 0.1), "checker")],
    [((0.9, 0.2, 0.9), "checker"), ((0.1, 0.9, 0.9), "disk")],
]


def part_pattern(texture: str) -> torch.Tensor:
    """(PART, PART) pattern in [0, 1]."""
    coords = torch.arange(PART, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    if texture == "disk":
        return (((y - PART / 2 + 0.5) ** 2 + (x - PART / 2 + 0.5) ** 2) < (PART / 2) ** 2).float()
    if texture == "vstripes":
        return (x % 4 < 2).float()
    if texture == "hstripes":
        return (y % 4 < 2).float()
    return ((x // 3 + y // 3) % 2).float()


def draw(label: int, keep: tuple[bool, bool], generator: torch.Generator) -> tuple[torch.Tensor, list]:
    """One image of class ``label`` and the (x, y) corner of each kept part (None when left out)."""
    image = 0.5 + 0.05 * torch.randn(3, SIZE, SIZE, generator=generator)
    cells = torch.randperm(4, generator=generator)[:2]  # two distinct quadrants, so parts never overlap
    corners = []
    for (colour, texture), cell, present in zip(CLASS_PARTS[label], cells.tolist(), keep):
        if not present:
            corners.append(None)
            continue
        jitter = torch.randint(0, SIZE // 2 - PART + 1, (2,), generator=generator).tolist()
        x, y = (cell % 2) * SIZE // 2 + jitter[0], (cell // 2) * SIZE // 2 + jitter[1]
        mask = part_pattern(texture)
        region = image[:, y:y + PART, x:x + PART]
        image[:, y:y + PART, x:x + PART] = region * (1 - mask) + torch.tensor(colour).view(3, 1, 1) * mask
        corners.append((x, y))
    return image.clamp(0, 1), corners


def parts_batch(labels: torch.Tensor, generator: torch.Generator, drop: float = 0.3) -> torch.Tensor:
    images = []
    for label in labels.tolist():
        keep = torch.rand(2, generator=generator) > drop
        if not keep.any():
            keep[torch.randint(2, (1,), generator=generator)] = True
        images.append(draw(label, tuple(keep.tolist()), generator)[0])
    return torch.stack(images)


def train(net: nn.Module, name: str, steps: int) -> Model:
    """Train ``net`` on the parts classes; a frozen ``Model`` that tells them apart."""
    generator = torch.Generator().manual_seed(0)
    model = Model(net=net, name=name, input_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                  weights="trained in the test", num_classes=len(CLASS_PARTS))
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        labels = torch.randint(len(CLASS_PARTS), (48,), generator=generator)
        loss = nn.functional.cross_entropy(model(parts_batch(labels, generator)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = Model(net=net, name=name, input_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                    weights="trained in the test", num_classes=len(CLASS_PARTS))
    labels = torch.arange(len(CLASS_PARTS)).repeat(20)
    with torch.no_grad():
        accuracy = (trained(parts_batch(labels, generator)).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9, f"{name} did not learn the parts classes (accuracy {accuracy:.2f})"
    return trained


@pytest.fixture(scope="session")
def parts_cnn() -> Model:
    """A small CNN; its layer "features" (index 6 of the Sequential) is the concept layer."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, len(CLASS_PARTS)),
    )
    return train(net, "parts-cnn", 100)


@pytest.fixture(scope="session")
def parts_vit() -> Model:
    """A two-block timm ViT (8 px patches, CLS token) trained on the same classes."""
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=SIZE, patch_size=8, depth=2,
                            embed_dim=32, num_heads=2, num_classes=len(CLASS_PARTS))
    return train(net, "parts-vit", 100)


def overlap(box: torch.Tensor, corner, side: float = PART) -> float:
    """Fraction of a part's square covered by a (x1, y1, x2, y2) box; 0 for a missing part."""
    if corner is None:
        return 0.0
    x1, y1, x2, y2 = box.tolist()
    width = max(0.0, min(x2, corner[0] + side) - max(x1, corner[0]))
    height = max(0.0, min(y2, corner[1] + side) - max(y1, corner[1]))
    return width * height / side**2


@pytest.fixture(scope="session")
def parts() -> SimpleNamespace:
    """The drawing helpers, for tests that need the parts' positions."""
    return SimpleNamespace(size=SIZE, draw=draw, overlap=overlap)
