"""The demo's three networks: small timm networks trained here on the synthetic task, and cached.

One of each kind the study compares (``maco.small_networks``): a plain CNN for VGG16, a residual
network for ResNet50, a vision transformer for ViT-B/16, each trained with Adam on one bank of
``TRAINING_IMAGES`` images drawn once from the task (drawing an image costs more than a step of
these networks) and scored on fresh draws. Each is saved as ``<folder>/<key>.safetensors`` with
its recipe, held-out accuracy and training time in the file's metadata: ``maco.models.load_model``
reads them back and the bundle's provenance records them. A file whose recipe is the current one is
reused (a second demo run trains nothing).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from .task import (CLASSES, OBJECTS_PER_SCENE, TASK_DESCRIPTION, TRAINING_EDGE_PX, TRAINING_OPACITY, make_batch,
                   make_scenes)


@dataclass(frozen=True)
class Recipe:
    model: str  # a maco.small_networks name
    iterations: int
    lr: float
    batch: int = 32
    seed: int = 0  # initial weights and the training batches


RECIPES = {
    "vgg16": Recipe("small_vgg", 500, 1.5e-3),
    "resnet50": Recipe("small_resnet", 160, 3e-3),
    "vit_b16": Recipe("small_vit", 400, 1e-3),
}
TRAINING_IMAGES = 1200  # the bank all three train on (200 per class)
HELD_OUT_PER_CLASS = 50  # fresh images per class for the accuracy
MIN_ACCURACY = 0.9  # below it the demo stops: its pictures would not show what a class looks like
NETWORKS_DIR = "networks"  # in the demo folder; study_demo.toml's weights point there


class TrainingError(Exception):
    """A network that did not learn the task; the message names it."""


@dataclass
class TrainedNetwork:
    key: str
    path: Path
    accuracy: float
    seconds: float
    reused: bool


def checkpoint_path(folder: Path, key: str) -> Path:
    return folder / f"{key}.safetensors"


def recipe_text(recipe: Recipe) -> str:
    return json.dumps({**asdict(recipe), "training_images": TRAINING_IMAGES, "optimizer": "Adam",
                       "loss": "binary cross-entropy per class", "objects_per_scene": OBJECTS_PER_SCENE,
                       "object_opacity": TRAINING_OPACITY, "object_edge_px": TRAINING_EDGE_PX,
                       "held_out_per_class": HELD_OUT_PER_CLASS}, sort_keys=True)


def _bank(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return make_scenes(TRAINING_IMAGES, torch.Generator().manual_seed(seed))


def train_detectors(model, bank: tuple[torch.Tensor, torch.Tensor], recipe: Recipe) -> float:  # noqa: ANN001 - maco.models.Model
    """Adam on binary cross-entropy per class over random bank scenes (``model.net`` frozen again
    afterwards); returns the held-out accuracy on fresh single-object images (argmax over the classes).

    Per-class detectors, not a softmax: a scene without a class teaches its logit to stay low, so a
    visualization that raises one class's logit does not raise the others' (docs/demo.md).
    """
    images, targets = bank
    net, generator = model.net, torch.Generator().manual_seed(recipe.seed)
    net.requires_grad_(True)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    for _ in range(recipe.iterations):
        picks = torch.randint(len(images), (recipe.batch,), generator=generator)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images[picks]), targets[picks])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    net.requires_grad_(False)
    labels = torch.arange(len(CLASSES)).repeat(HELD_OUT_PER_CLASS)
    with torch.no_grad():
        predictions = model(make_batch(labels, generator)).argmax(1)
    return (predictions == labels).float().mean().item()


def train_network(key: str, recipe: Recipe, bank: tuple[torch.Tensor, torch.Tensor], path: Path) -> TrainedNetwork:
    import timm
    from safetensors.torch import save_file

    from maco.models import Model
    from maco.small_networks import DATA_CONFIG

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = timm.create_model(recipe.model, num_classes=len(CLASSES))
    model = Model(net=net, name=recipe.model, input_size=DATA_CONFIG["input_size"][-1], mean=DATA_CONFIG["mean"],
                  std=DATA_CONFIG["std"], weights="trained here", num_classes=len(CLASSES))
    accuracy = train_detectors(model, bank, recipe)
    seconds = time.perf_counter() - start
    if accuracy < MIN_ACCURACY:
        raise TrainingError(f"networks.{key}: {recipe.model} reached only {accuracy:.0%} held-out accuracy on the "
                            f"synthetic task (at least {MIN_ACCURACY:.0%} needed)")
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"task": TASK_DESCRIPTION, "classes": json.dumps([c.name for c in CLASSES]),
                "num_classes": str(len(CLASSES)), "recipe": recipe_text(recipe),
                "held_out_accuracy": f"{accuracy:.4f}", "train_seconds": f"{seconds:.1f}",
                "trained_by": "maco-study demo (demo/networks.py)"}
    partial = path.with_suffix(".partial")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(partial), metadata=metadata)
    partial.replace(path)  # a killed run leaves no half-written checkpoint to be reused
    return TrainedNetwork(key, path, accuracy, seconds, reused=False)


def cached(path: Path, recipe: Recipe) -> TrainedNetwork | None:
    """The network in ``path`` when it was trained with ``recipe`` on this task, else None."""
    from maco.models import ModelError, checkpoint_metadata

    if not path.is_file():
        return None
    try:
        metadata = checkpoint_metadata(path)
    except ModelError:  # a damaged file is trained again
        return None
    if metadata.get("recipe") != recipe_text(recipe) or metadata.get("task") != TASK_DESCRIPTION:
        return None
    return TrainedNetwork(path.stem, path, float(metadata["held_out_accuracy"]), float(metadata["train_seconds"]),
                          reused=True)


def prepare_networks(folder: Path, echo: Callable[[str], None] = print) -> dict[str, TrainedNetwork]:
    """Every network of RECIPES in ``folder``: reused when cached, else trained (on one shared bank)."""
    networks: dict[str, TrainedNetwork] = {}
    bank = None
    for key, recipe in RECIPES.items():
        path = checkpoint_path(folder, key)
        found = cached(path, recipe)
        if found is None:
            if bank is None:
                bank = _bank(seed=0)
            found = train_network(key, recipe, bank, path)
        networks[key] = found
        echo(f"      {key}: {recipe.model}, {found.accuracy:.1%} held-out accuracy "
             + ("(cached)" if found.reused else f"(trained in {found.seconds:.0f} s)"))
    return networks
