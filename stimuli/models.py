"""The network as the generator sees it: a frozen classifier on [0, 1] images.

`StudyModel` wraps `maco.models.load_model`'s result with what the stages
need beyond it (device placement, the centre-crop fraction of the model's own
preprocessing, an optional input-size override for tiny test/demo builds).
Tests build a `StudyModel` directly around a small `nn.Module`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import NetworkConfig, StimuliError

DEFAULT_CROP_PCT = 0.875
RESAMPLING = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST", "lanczos": "LANCZOS"}


@dataclass(frozen=True)
class Preprocessing:
    """The model's own resize and centre crop (timm's eval transform), before normalisation."""

    input_size: int
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bicubic"


@dataclass
class StudyModel:
    net: nn.Module
    input_size: int
    mean: torch.Tensor  # (3,) in [0, 1] units
    std: torch.Tensor
    name: str = "test"
    weights: str = "random"
    num_classes: int = 1000
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bicubic"
    maco_model: Any = None  # the maco.models.Model, for the optimisations

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.input_size, self.crop_pct, self.interpolation)

    def to(self, device: torch.device | str) -> "StudyModel":
        self.net.to(device)
        self.mean = self.mean.to(device)
        self.std = self.std.to(device)
        if self.maco_model is not None and hasattr(self.maco_model, "to"):
            self.maco_model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def logits(self, x01: torch.Tensor) -> torch.Tensor:
        """Logits for a (B, 3, S, S) batch in [0, 1], on the model's device."""
        x01 = x01.to(self.device, self.mean.dtype)
        return self.net((x01 - self.mean[:, None, None]) / self.std[:, None, None])


def load_study_model(network: NetworkConfig, seed: int, device: torch.device | str = "cpu") -> StudyModel:
    """Load one configured network through maco.models; errors become StimuliError.

    Random weights are drawn from a generator seeded by (seed, network key):
    every process of a build, resumed or sharded, must see the same network.
    """
    from maco.models import ModelError, load_model

    try:
        model = load_model(network.model, weights=network.weights, device=device,
                           seed=seed * 1_000_003 + zlib.crc32(network.key.encode()))
    except ModelError as exc:
        raise StimuliError(f"networks.{network.key}: {exc}") from None
    if network.input_size is not None:
        model.input_size = network.input_size
    out_of_range = [u for u in network.units if u >= model.num_classes]
    if out_of_range:
        raise StimuliError(f"networks.{network.key}.units: class index {out_of_range[0]} out of "
                           f"range for {network.model} ({model.num_classes} classes)")
    try:  # one tiny forward: a network that cannot take this input size fails now, clearly
        with torch.no_grad():
            model(torch.zeros(1, 3, model.input_size, model.input_size, device=model.device))
    except Exception as exc:
        raise StimuliError(f"networks.{network.key}.input_size: {network.model} does not accept "
                           f"{model.input_size} px inputs ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    pretrained_cfg = getattr(model.net, "pretrained_cfg", {}) or {}
    crop_pct = pretrained_cfg.get("crop_pct") or DEFAULT_CROP_PCT
    interpolation = pretrained_cfg.get("interpolation") if pretrained_cfg.get("interpolation") in RESAMPLING \
        else "bicubic"
    study_model = StudyModel(
        net=model.net, input_size=model.input_size,
        mean=torch.as_tensor(model.mean, dtype=torch.float32).flatten(),
        std=torch.as_tensor(model.std, dtype=torch.float32).flatten(),
        name=model.name, weights=model.weights, num_classes=model.num_classes,
        crop_pct=float(crop_pct), interpolation=interpolation, maco_model=model)
    return study_model.to(model.device)
