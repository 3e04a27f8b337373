"""The network as the generator sees it: a frozen classifier on [0, 1] images.

`StudyModel` wraps `maco.models.load_model`'s result with what the stages
need beyond it: the centre-crop fraction and interpolation of the model's own
preprocessing (and an optional input-size override for tiny test/demo builds).
Tests build one around a small `nn.Module` wrapped in a `maco.models.Model`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .config import NetworkConfig, StimuliError

if TYPE_CHECKING:  # maco.models imports timm: only load_study_model needs it at run time
    from maco.models import Model

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
    """A maco ``Model`` (frozen, normalising, [0, 1] in, logits out) plus its own preprocessing."""

    model: Model
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bicubic"

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.model.input_size, self.crop_pct, self.interpolation)

    @property
    def input_size(self) -> int:
        return self.model.input_size

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def weights(self) -> str:
        return self.model.weights

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.net.parameters()).dtype

    @torch.no_grad()
    def logits(self, x01: torch.Tensor) -> torch.Tensor:
        """Logits for a (B, 3, S, S) batch in [0, 1], on the model's device.

        non_blocking: a batch in pinned memory (the pool's DataLoader on CUDA)
        is copied while the host goes on; from pageable memory it changes nothing.
        """
        return self.model(x01.to(self.device, self.dtype, non_blocking=True))


def load_study_model(network: NetworkConfig, seed: int, device: torch.device | str = "cpu",
                     compute_dtype: torch.dtype = torch.float32) -> StudyModel:
    """Load one configured network through maco.models; errors become StimuliError.

    Random weights are drawn from a generator seeded by (seed, network key):
    every process of a build, resumed or sharded, must see the same network.
    """
    from maco.models import ModelError, load_model

    try:
        model = load_model(network.model, weights=network.weights, device=device,
                           seed=seed * 1_000_003 + zlib.crc32(network.key.encode()), compute_dtype=compute_dtype)
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
    return StudyModel(model, crop_pct=float(crop_pct), interpolation=interpolation)
