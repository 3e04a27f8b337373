"""Small classifiers trained in seconds on synthetic classes, for the tests and the benchmarks.

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


def train_toy(net: nn.Module, make_batch: BatchMaker, classes: int, input_size: int, iterations: int,
              name: str, seed: int = 0) -> tuple[Model, float]:
    """Adam 3e-3, batches of 64; returns the frozen model and its accuracy on 25 fresh images per class."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = Model(net=net, name=name, input_size=input_size, mean=(0.5,) * 3, std=(0.25,) * 3,
                  weights=f"trained here ({iterations} iterations)", num_classes=classes)
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(iterations):
        labels = torch.randint(classes, (64,), generator=generator)
        loss = nn.functional.cross_entropy(model(make_batch(labels, generator)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    labels = torch.arange(classes).repeat(25)
    with torch.no_grad():
        accuracy = (model(make_batch(labels, generator)).argmax(1) == labels).float().mean().item()
    return model, accuracy
