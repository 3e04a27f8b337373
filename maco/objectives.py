"""Composable objectives over a model's activations (Lucent's style).

An ``Objective`` maps the activations of a batch to one value per image (to
be maximised). Objectives add, subtract, negate and scale: ``logit(1) - 0.5 *
channel("layer4", 3)``. Layer activations come from forward hooks on the
named modules (``model.net.named_modules()``); ``"logits"`` is the output.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from maco.device import at_least_float32

LOGITS = "logits"
Activations = dict[str, torch.Tensor]


class ObjectiveError(ValueError):
    """An objective that does not fit the model (unknown layer, index out of range)."""


class Objective:
    def __init__(self, fn: Callable[[Activations], torch.Tensor], layers: Sequence[str], name: str,
                 logit_unit: int | None = None):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name
        # set by ``logit`` alone (composites drop it): lets a run of logits be evaluated in one gather
        self.logit_unit = logit_unit

    def __call__(self, activations: Activations) -> torch.Tensor:
        return self.fn(activations)

    def __add__(self, other: "Objective | float") -> "Objective":
        if not isinstance(other, Objective):
            return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {other}")
        return Objective(lambda a: self(a) + other(a), self.layers + other.layers, f"{self.name} + {other.name}")

    def __radd__(self, other: float) -> "Objective":  # lets sum([...]) start from 0
        return self + other

    def __neg__(self) -> "Objective":
        return -1.0 * self

    def __sub__(self, other: "Objective | float") -> "Objective":
        return self + (-other)

    def __mul__(self, factor: float) -> "Objective":
        return Objective(lambda a: factor * self(a), self.layers, f"{factor} * ({self.name})")

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _pooled(activation: torch.Tensor) -> torch.Tensor:
    """(B, C) features: spatial mean for NCHW maps, token mean for ViT (B, N, C) tokens."""
    if activation.ndim == 4:
        return activation.mean(dim=(2, 3))
    if activation.ndim == 3:
        return activation.mean(dim=1)
    if activation.ndim == 2:
        return activation
    raise ObjectiveError(f"unsupported activation shape {tuple(activation.shape)}")


def _channel_values(activation: torch.Tensor, channel: int) -> torch.Tensor:
    width = activation.shape[1] if activation.ndim == 4 else activation.shape[-1]
    if not 0 <= channel < width:
        raise ObjectiveError(f"channel {channel} out of range: the layer has {width} channels")
    return _pooled(activation)[:, channel]


def logit(unit: int) -> Objective:
    """The pre-softmax output ``unit`` (an ImageNet class for the study's models)."""
    def fn(a: Activations) -> torch.Tensor:
        logits = a[LOGITS]
        if not 0 <= unit < logits.shape[-1]:
            raise ObjectiveError(f"unit {unit} out of range: the model has {logits.shape[-1]} outputs")
        return logits[:, unit]

    return Objective(fn, [], f"logit {unit}", logit_unit=unit)


def channel(layer: str, index: int, tokens: slice | None = None) -> Objective:
    """Mean activation of one channel: over positions (NCHW) or over tokens (ViT, (B, N, C)).

    ``tokens`` picks the ViT tokens averaged (``slice(0, 1)``: the CLS token); all of them by default.
    """
    def fn(a: Activations) -> torch.Tensor:
        activation = a[layer]
        return _channel_values(activation if tokens is None else activation[:, tokens], index)

    return Objective(fn, [layer], f"channel {layer}:{index}")


def neuron(layer: str, index: int, position: tuple[int, int] | int | None = None) -> Objective:
    """One channel at one position: (y, x) for NCHW maps, a token index for ViT; centre by default."""
    def fn(a: Activations) -> torch.Tensor:
        act = a[layer]
        if act.ndim == 4:
            y, x = position if position is not None else (act.shape[2] // 2, act.shape[3] // 2)
            return act[:, index, y, x]
        token = position if position is not None else act.shape[1] // 2
        return act[:, token, index]

    return Objective(fn, [layer], f"neuron {layer}:{index}@{position}")


def direction(layer: str, vector: torch.Tensor, cos_power: float = 0.0) -> Objective:
    """dot(h, v) * cos(h, v)^p on the pooled activation h (Olah et al.'s direction with cosine emphasis)."""
    def fn(a: Activations) -> torch.Tensor:
        features = _pooled(a[layer])
        v = vector.to(features)
        dot = features @ v
        if cos_power == 0:
            return dot
        cosine = F.cosine_similarity(features, v.unsqueeze(0), dim=1)
        return dot * cosine.clamp(min=1e-6) ** cos_power

    return Objective(fn, [layer], f"direction {layer} (cos^{cos_power})")


def feature_inversion(layer: str, reference: torch.Tensor) -> Objective:
    """Cosine similarity between the activations and a reference image's (``reference_activations``)."""
    target = reference.detach().flatten(1)

    def fn(a: Activations) -> torch.Tensor:
        act = a[layer].flatten(1)
        if act.shape[1] != target.shape[1]:
            raise ObjectiveError(
                f"feature inversion at {layer}: activation size {act.shape[1]} differs from the reference's "
                f"{target.shape[1]}; render at the size the reference was taken"
            )
        return F.cosine_similarity(act, target.to(act), dim=1)

    return Objective(fn, [layer], f"feature inversion {layer}")


def resolve_layers(net: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """The modules for ``names``; an unknown name lists the closest real ones."""
    modules = dict(net.named_modules())
    resolved = {}
    for name in names:
        if name == LOGITS:
            continue
        if name not in modules:
            close = difflib.get_close_matches(name, [m for m in modules if m], n=5, cutoff=0.4)
            raise ObjectiveError(f"unknown layer {name!r}; closest: {', '.join(close) or 'none'}")
        resolved[name] = modules[name]
    return resolved


@contextmanager
def capture(net: nn.Module, names: Sequence[str]) -> Iterator[Activations]:
    """Record the outputs of the named layers on every forward pass while inside."""
    store: Activations = {}

    def hook_for(name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            # objectives in float32, also when the network runs in bfloat16
            store[name] = at_least_float32(output[0] if isinstance(output, tuple) else output)
        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in resolve_layers(net, names).items()]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def reference_activations(model, layer: str, image: torch.Tensor) -> torch.Tensor:
    """Activations of ``layer`` for one [0, 1] image (3, S, S) at the model's input size."""
    with torch.no_grad(), capture(model.net, [layer]) as store:
        model(image.unsqueeze(0).to(model.device))
    return store[layer]
