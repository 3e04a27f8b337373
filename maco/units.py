"""Internal units: channel objectives at any layer of a timm CNN or ViT, checked before any heavy work.

A layer's output is probed once with a blank image: (B, C, H, W) maps are
averaged over positions; (B, N, C) ViT tokens over the tokens picked by
``tokens``: ``all``, ``patches`` (the patch tokens, after timm's
``num_prefix_tokens`` class and register tokens) or ``cls`` (the class token).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from maco.models import Model
from maco.objectives import Objective, ObjectiveError, capture, channel

TOKEN_CHOICES = ("all", "patches", "cls")


def layer_output_shape(model: Model, layer: str) -> tuple[int, ...]:
    """The layer's output shape for one image at the model's input size (unknown layers list the closest)."""
    blank = torch.full((1, 3, model.input_size, model.input_size), 0.5, device=model.device)
    with torch.no_grad(), capture(model.net, [layer]) as store:
        model(blank)
    return tuple(store[layer].shape)


def channel_width(shape: tuple[int, ...]) -> int:
    """Channels of a layer output: dimension 1 of NCHW maps, the last one of ViT tokens."""
    return shape[1] if len(shape) == 4 else shape[-1]


def token_slice(model: Model, shape: tuple[int, ...], tokens: str) -> slice | None:
    """The tokens to average for ``tokens``; None for all of them (and for every NCHW layer)."""
    if tokens not in TOKEN_CHOICES:
        raise ObjectiveError(f"unknown token choice {tokens!r}; choose one of {', '.join(TOKEN_CHOICES)}")
    if tokens == "all":
        return None
    if len(shape) != 3:
        raise ObjectiveError(f"--tokens {tokens} needs a ViT token layer (B, N, C); this layer gives {shape}")
    prefix = int(getattr(model.net, "num_prefix_tokens", 0))
    if tokens == "patches":
        return slice(prefix, None)
    if getattr(model.net, "cls_token", None) is None:
        raise ObjectiveError(f"{model.name} has no CLS token; use --tokens all or patches")
    return slice(0, 1)


def channel_objectives(model: Model, layer: str, channels: Sequence[int], tokens: str = "all") -> list[Objective]:
    """One ``channel`` objective per index, after checking the layer, the indices and the token choice."""
    shape = layer_output_shape(model, layer)
    width = channel_width(shape)
    bad = [c for c in channels if not 0 <= c < width]
    if bad:
        raise ObjectiveError(f"channel(s) {bad} out of range: layer {layer} has channels 0..{width - 1}")
    picked = token_slice(model, shape, tokens)
    return [channel(layer, c, picked) for c in channels]
