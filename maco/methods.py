"""The method registry: every way of making a unit's reference images, built in or installed.

A method (docs/methods.md, "Add your own method") is an object with

- ``name``: the word a study config's ``[conditions.<name>] method = "..."`` names;
- ``kind``: ``"optimized"`` (its ``render`` makes the images), ``"dataset"`` (the study picks pool
  photos itself: ``natural``) or ``"none"`` (no references);
- ``defaults``: its settings and their defaults (TOML values); a setting not named here is refused;
- ``render(model, units, settings, seed, **context) -> list[Reference]``: one reference per unit,
  in order, for one seed; ``settings`` already checked and completed with the defaults; ``context``
  may carry ``spectrum`` (MACO's), which other methods ignore.

Built in: ``maco``, ``olah``, ``pixel`` (``maco.optimize``), ``natural`` and ``none``. A package adds
methods by declaring, in its pyproject.toml,

    [project.entry-points."maco_study.methods"]
    my_method = "my_package:METHOD"

where ``METHOD`` is such an object (or a class making one). Built-in names cannot be taken.
"""
from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from typing import Any, Sequence

import torch

ENTRY_POINT_GROUP = "maco_study.methods"
# keyword arguments of maco.optimize's functions that are not settings of a study
_NOT_SETTINGS = ("seed", "progress", "callback", "spectrum", "objectives", "units", "crop_size")


class MethodError(ValueError):
    """An unknown method, a plugin that does not load, or a setting it refuses (one line)."""


@dataclass
class Reference:
    """One unit's reference image from one seed."""
    image: torch.Tensor  # (3, H, W) in [0, 1]
    mask: torch.Tensor | None = None  # (H, W) >= 0: how much each pixel matters (shown faded where low)
    objective: float | None = None  # the value the method reached, for the quality gate
    algorithm: str | None = None  # a version label recorded in the bundle's provenance
    spectrum_source: str | None = None  # MACO only


class Method:
    """A convenient base: subclasses set name, kind, defaults and render (duck typing suffices)."""
    name: str = ""
    kind: str = "optimized"
    defaults: dict[str, Any] = {}

    def render(self, model: Any, units: Sequence[int], settings: dict[str, Any], seed: int,
               **context: Any) -> list[Reference]:
        raise MethodError(f"method {self.name!r} makes no images itself (kind {self.kind!r})")


def check_settings(method: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` completed with ``method.defaults``; MethodError names a setting it refuses."""
    defaults = dict(getattr(method, "defaults", {}))
    for key, value in settings.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise MethodError(f"method {method.name!r} has no setting {key!r} (its settings: {known})")
        if defaults[key] is not None and not _same_type(value, defaults[key]):
            raise MethodError(f"method {method.name!r}: setting {key!r} must be a "
                              f"{type(defaults[key]).__name__}, got {value!r}")
    return {**defaults, **settings}


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


class OptimizedMethod(Method):
    """One of maco.optimize's functions; its settings are that function's keyword defaults."""

    def __init__(self, name: str):
        from .optimize import method_defaults

        self.name = name
        self.defaults = {k: v for k, v in method_defaults(name).items() if k not in _NOT_SETTINGS}

    def render(self, model, units, settings, seed, **context):
        from .optimize import METHODS

        kwargs = dict(settings)
        if self.name == "maco":
            kwargs["spectrum"] = context.get("spectrum")
        return [Reference(v.image, v.transparency, v.objective, v.algorithm, v.spectrum_source)
                for v in METHODS[self.name](model, units=list(units), seed=seed, progress=False, **kwargs)]


class SelectionMethod(Method):
    """A method whose references the study picks itself (natural) or that has none."""

    def __init__(self, name: str, kind: str):
        self.name, self.kind, self.defaults = name, kind, {}


def _builtins() -> dict[str, Method]:
    return {**{name: OptimizedMethod(name) for name in ("maco", "olah", "pixel")},
            "natural": SelectionMethod("natural", "dataset"), "none": SelectionMethod("none", "none")}


BUILTIN_METHODS = ("maco", "olah", "pixel", "natural", "none")


def _entry_points() -> dict[str, md.EntryPoint]:
    return {ep.name: ep for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN_METHODS}


def available_methods() -> list[str]:
    """Built-in methods, then those of installed plugins."""
    return [*BUILTIN_METHODS, *sorted(_entry_points())]


def get_method(name: str) -> Method:
    """The method called ``name``; MethodError when no built-in or installed plugin has it."""
    if name in BUILTIN_METHODS:
        return _builtins()[name]
    entry = _entry_points().get(name)
    if entry is None:
        plugins = ", ".join(sorted(_entry_points())) or "none installed"
        raise MethodError(f"unknown method {name!r}: not built in ({', '.join(BUILTIN_METHODS)}) and no "
                          f"installed package declares it in the entry-point group {ENTRY_POINT_GROUP} "
                          f"(plugins: {plugins})")
    try:
        loaded = entry.load()
        method = loaded() if isinstance(loaded, type) else loaded
    except Exception as exc:  # a plugin's own failure, reported as one line
        raise MethodError(f"method {name!r}: its plugin {entry.value} does not load "
                          f"({type(exc).__name__}: {exc})") from None
    if not callable(getattr(method, "render", None)) or getattr(method, "kind", "optimized") != "optimized":
        raise MethodError(f"method {name!r}: {entry.value} is not a method (it needs render(), kind 'optimized')")
    method.name = name
    return method


def run_method(name: str, model: Any, units: Sequence[int], settings: dict[str, Any], seed: int,
               **context: Any) -> list:
    """One run of the registry's method ``name`` (settings checked and completed) as
    maco.optimize.Visualizations, one per unit: what `visualize` and `evaluate` write and score."""
    import math
    import time

    from .optimize import Visualization

    method = get_method(name)
    started = time.perf_counter()
    references = method.render(model, list(units), check_settings(method, settings), seed, **context)
    if len(references) != len(units):
        raise MethodError(f"method {name!r} returned {len(references)} references for {len(units)} units")
    seconds = time.perf_counter() - started
    return [Visualization(unit, name, seed, r.image.detach().cpu(),
                          math.nan if r.objective is None else r.objective, [], r.mask, r.spectrum_source,
                          r.algorithm, seconds) for unit, r in zip(units, references)]
