"""Small classifiers trained in seconds on synthetic classes, for tests, benchmarks and examples.

They stand in for ImageNet networks where no weights may be downloaded: a
feature visualization of a unit that really responds can be judged.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from maco.models import Model

# make_batch(labels, generator) -> images (B, 3, S, S) in [0, 1]
BatchMaker = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def train_classifier(model: Model, make_batch: BatchMaker, classes: int, iterations: int, batch: int = 64,
                     lr: float = 3e-3, held_out_per_class: int = 25, held_out: BatchMaker | None = None) -> float:
    """Adam on ``model.net`` (frozen again afterwards); returns the accuracy on fresh images of each class.

    The held-out images come from ``held_out`` (default: ``make_batch``, which must then draw fresh
    images: give ``held_out`` when ``make_batch`` samples a fixed training set).
    Only the first ``classes`` outputs compete in that accuracy (a network may have more outputs).
    """
    net = model.net
    generator = torch.Generator().manual_seed(0)
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(iterations):
        labels = torch.randint(classes, (batch,), generator=generator)
        loss = nn.functional.cross_entropy(model(make_batch(labels, generator)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    labels = torch.arange(classes).repeat(held_out_per_class)
    with torch.no_grad():
        predictions = model((held_out or make_batch)(labels, generator))[:, :classes].argmax(1)
    return (predictions == labels).float().mean().item()


def train_toy(net: nn.Module, make_batch: BatchMaker, classes: int, input_size: int, iterations: int,
              name: str) -> tuple[Model, float]:
    """A Model around ``net`` (inputs normalised with mean 0.5, std 0.25), trained; and its accuracy."""
    model = Model(net=net, name=name, input_size=input_size, mean=(0.5,) * 3, std=(0.25,) * 3,
                  weights=f"trained here ({iterations} iterations)", num_classes=classes)
    return model, train_classifier(model, make_batch, classes, iterations)
