"""The optimisation loops: ``maco``, ``olah`` and ``pixel``, many units per run.

Each unit keeps its own image parameters and its own random augmentations;
one forward and one backward pass per step cover every unit's batch. Units
are ImageNet output units (logits) by default, or any ``Objective`` list.

All three share the loop ``_optimize``; they differ only in the image
parameterization, the augmentation and the optimiser (as in the papers:
MACO uses NAdam with lr 1.0 on the phase, here annealed on a cosine, v5;
Lucid uses Adam with lr 0.05).
"""
from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from maco.models import Model
from maco.objectives import LOGITS, Objective, ObjectiveError, capture, logit
from maco.parameterizations import (
    SpectralLayout,
    fourier_image,
    fourier_init,
    fourier_scale,
    maco_image,
    maco_init,
    pixel_image,
    pixel_init,
)
from maco.spectra import Spectrum, SpectrumFallbackWarning, resize_spectrum, resolve_spectrum
from maco.transforms import (
    CROP_MEAN,
    CROP_STD,
    crop_and_resize,
    lucid_transforms,
    maco_crop_boxes,
    uniform_noise,
    whole_image_boxes,
)

# called after every step with (step, parameters, per-unit objective values)
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass
class Visualization:
    unit: int | str  # the output unit, or the objective's name
    method: str  # "maco", "olah" or "pixel"
    seed: int
    image: torch.Tensor  # (3, H, W) in [0, 1], on the CPU
    objective: float  # objective value at the last step (averaged over that step's augmentations)
    history: list[float] = field(repr=False)  # objective value at every step
    transparency: torch.Tensor | None = None  # (H, W): sum over steps of |dL/dx| (MACO only)
    spectrum_source: str | None = None  # MACO only
    algorithm: str | None = None  # MACO only: MACO_ALGORITHM
    seconds: float = 0.0  # wall time of the whole run (shared by its units)


def check_units(model: Model, units: Sequence[int]) -> None:
    """Every unit must be an output of the model: raise before any heavy work."""
    if not units:
        raise ObjectiveError("no unit to visualize")
    bad = [u for u in units if not (isinstance(u, int) and 0 <= u < model.num_classes)]
    if bad:
        raise ObjectiveError(f"unit(s) {bad} out of range: {model.name} has outputs 0..{model.num_classes - 1}")


def _objectives(model: Model, units: Sequence[int] | None, objectives: Sequence[Objective] | None):
    """One objective per unit, checked against the model before any heavy work."""
    if (units is None) == (objectives is None):
        raise ObjectiveError("give either units or objectives")
    if objectives is not None:
        return list(objectives), [o.name for o in objectives]
    units = list(units)
    check_units(model, units)
    return [logit(u) for u in units], units


def logit_index(objectives: list[Objective], model: Model) -> torch.Tensor | None:
    """(units, 1, 1) the output index of every objective when all are plain logits of ``model``, else None.

    An index out of range is left to ``logit``, which says so at the first step.
    """
    units = [objective.logit_unit for objective in objectives]
    if None in units or not all(0 <= unit < model.num_classes for unit in units):
        return None
    return torch.tensor(units, device=model.device).view(-1, 1, 1)


def objective_values(objectives: list[Objective], activations: dict[str, torch.Tensor],
                     logit_units: torch.Tensor | None) -> torch.Tensor:
    """Each unit's objective, averaged over its share of the batch (grouped by unit): (units,).

    Plain logits (``logit_index``) in one gather, whatever the unit count; other objectives one by one.
    """
    units = len(objectives)
    if logit_units is not None:
        logits = activations[LOGITS]
        grouped = logits.view(units, -1, logits.shape[-1])
        return grouped.gather(2, logit_units.expand(-1, grouped.shape[1], 1)).mean(dim=(1, 2))
    per_unit = next(iter(activations.values())).shape[0] // units
    return torch.stack([
        objective({k: v[u * per_unit:(u + 1) * per_unit] for k, v in activations.items()}).mean()
        for u, objective in enumerate(objectives)
    ])


def _optimize(
    model: Model,
    objectives: list[Objective],
    parameters: torch.Tensor,
    render: Callable[[torch.Tensor], torch.Tensor],
    augment: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    steps: int,
    track_transparency: bool,
    progress: bool,
    description: str,
    callback: StepCallback | None,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Run the shared loop; returns final images, transparency maps and the (steps, units) history.

    ``schedule``, when given, is stepped once after every optimiser step.
    """
    units = len(objectives)
    layers = sorted({layer for objective in objectives for layer in objective.layers})
    history = []  # one (units,) tensor per step, stacked at the end: no copy per step
    logit_units = logit_index(objectives, model)
    maximise = torch.full((units,), -1.0, device=parameters.device)
    transparency = None

    def add_to_transparency(grad: torch.Tensor) -> None:
        # read in a hook: ``retain_grad`` would keep a copy of the image's gradient every step
        nonlocal transparency
        magnitude = grad.abs().sum(dim=1)  # not linalg.vector_norm(ord=1): 96 ms a step here
        transparency = magnitude if transparency is None else transparency.add_(magnitude)

    with capture(model.net, layers) as store:
        bar = tqdm(range(steps), desc=description, unit="step", disable=not progress)
        for step in bar:
            image = render(parameters)
            if track_transparency:
                image.register_hook(add_to_transparency)
            batch = augment(image)
            logits = model(batch)  # fills ``store`` through the hooks: read it only after the call
            activations = {**store, LOGITS: logits}
            values = objective_values(objectives, activations, logit_units)
            optimizer.zero_grad(set_to_none=True)
            values.backward(maximise.to(values.dtype))  # the gradient of -sum(values)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            history.append(values.detach())
            if callback is not None:
                callback(step, parameters, history[-1])
            if progress and (step % 16 == 0 or step == steps - 1):
                bar.set_postfix(objective=f"{history[-1].mean().item():.3f}")
    with torch.no_grad():
        final = render(parameters)
    history = torch.stack(history) if history else torch.zeros(0, units, device=parameters.device)
    return final, transparency, history


def _visualizations(method, labels, seed, images, transparency, history, started, spectrum_source=None,
                    algorithm=None):
    seconds = time.perf_counter() - started
    history = history.cpu()
    return [
        Visualization(
            unit=label,
            method=method,
            seed=seed,
            image=images[i].detach().cpu(),
            objective=float(history[-1, i]) if len(history) else float("nan"),
            history=history[:, i].tolist(),
            transparency=None if transparency is None else transparency[i].detach().cpu(),
            spectrum_source=spectrum_source,
            algorithm=algorithm,
            seconds=seconds,
        )
        for i, label in enumerate(labels)
    ]


MACO_ALGORITHM = "maco-study-maco/7"
"""Recorded with every MACO output (run.json, bundle provenance). /1: raw phase, DC zeroed, uniform
crops; /2: standardised phase, DC kept, centre-biased crops, even self-conjugate columns; /3: crop
sides as Horama's, U[0.25, 0.30]; /4: a random carrier phase (no corner spike) and the spectrum's
boundary cross removed; /5: the learning rate annealed on a cosine; /6: crop centres ~N(0.5, 0.18), not 0.15;
/7: no carrier by default (it cost whole-image margin, most on a ViT) (docs/maco.md)."""
FREE_MAGNITUDE_LR = 0.05  # ablation only (magnitude_constraint=False): NAdam lr on the log-magnitude


def cosine_annealing(
    optimizer: torch.optim.Optimizer, steps: int, final_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """At step t every group's lr times f + (1 - f)(1 + cos(pi t / steps)) / 2, f = ``final_fraction``.

    Relative per group (``CosineAnnealingLR``'s floor is one absolute lr for all groups).
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: final_fraction + (1 - final_fraction) * (1 + math.cos(math.pi * t / max(steps, 1))) / 2)


def maco(
    model: Model,
    units: Sequence[int] | None = None,
    objectives: Sequence[Objective] | None = None,
    *,
    steps: int = 256,
    size: int = 512,
    crops: int = 6,
    crop_size: tuple[float, float] = (CROP_MEAN, CROP_STD),
    lr: float = 1.0,
    final_lr_fraction: float = 0.1,
    noise: float = 0.05,
    seed: int = 0,
    spectrum: Spectrum | None = None,
    magnitude_constraint: bool = True,
    random_carrier: bool = False,
    progress: bool = True,
    callback: StepCallback | None = None,
) -> list[Visualization]:
    """MACO (Fel et al. 2023): optimise the phase of a fixed natural-image magnitude spectrum.

    Per step and unit: ``crops`` random crops (side ~U[0.25, 0.30] of the
    image, as Horama; ``crop_size`` is its mean and std; centre ~N(0.5, 0.18))
    resized to the model's input, plus uniform noise U(-noise, noise); the
    objective is averaged over the crops; NAdam on the standardised phase
    (``maco.parameterizations``), its lr annealed on a cosine from ``lr`` to
    ``final_lr_fraction`` x ``lr`` over the run. The transparency map is the sum over steps
    of |dL/dx| at the working resolution, over channels.

    Ablations (the paper's Table 3): ``magnitude_constraint=False`` optimises
    the magnitude too (its log, from the spectrum); ``crops=0`` feeds the whole
    image, resized; ``noise=0`` adds none. ``random_carrier=True`` adds v4's
    fixed random carrier phase, which removes the references' saturated
    corner dot but cost whole-image margin, most on a ViT, so the default
    (v7) starts as the references do (docs/maco.md, "The carrier, decided").
    These defaults are the only ones:
    ``method_defaults("maco")`` gives them to the CLI and to study.toml.
    """
    objectives, labels = _objectives(model, units, objectives)
    if crops < 0 or noise < 0:
        raise ObjectiveError(f"crops and noise must be >= 0, got crops={crops}, noise={noise}")
    if not 0 <= final_lr_fraction <= 1:
        raise ObjectiveError(f"final_lr_fraction must be in [0, 1], got {final_lr_fraction}")
    started = time.perf_counter()
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    if spectrum is None:
        spectrum = resolve_spectrum(size)
        if spectrum.fallback:  # who passes a spectrum has been told (``visualize`` says it on stderr)
            warnings.warn(f"the published ImageNet spectrum is unavailable ({spectrum.fallback}); MACO uses the "
                          "analytic approximation (pass spectrum= to choose one)", SpectrumFallbackWarning, stacklevel=2)
    spectrum = resize_spectrum(spectrum, size)
    layout = SpectralLayout.of(size, size, device)
    magnitude = layout.even(spectrum.magnitude.to(device))
    phase, carrier = maco_init(len(objectives), size, size, generator)  # the carrier is drawn either way
    if not random_carrier:
        carrier = None
    phase.requires_grad_()
    groups = [{"params": [phase], "lr": lr}]
    if magnitude_constraint:
        energy = layout.ac_energy(magnitude)

        def render(p: torch.Tensor) -> torch.Tensor:
            return maco_image(p, carrier, magnitude, layout, energy)
    else:
        log_magnitude = magnitude.clamp(min=magnitude.max() * 1e-12).log().expand_as(phase).clone().requires_grad_()
        groups.append({"params": [log_magnitude], "lr": FREE_MAGNITUDE_LR})

        def render(p: torch.Tensor) -> torch.Tensor:
            return maco_image(p, carrier, layout.even(log_magnitude.exp()), layout)

    whole = whole_image_boxes(len(objectives), size, size, device) if crops == 0 else None

    def augment(images: torch.Tensor) -> torch.Tensor:
        boxes = whole if crops == 0 else maco_crop_boxes(len(objectives), crops, size, size, generator, *crop_size)
        batch = crop_and_resize(images, boxes, model.input_size)
        return uniform_noise(batch, noise, generator) if noise > 0 else batch

    optimizer = torch.optim.NAdam(groups)
    images, transparency, history = _optimize(
        model, objectives, phase, render, augment, optimizer, steps, True, progress, "maco", callback,
        cosine_annealing(optimizer, steps, final_lr_fraction),
    )
    return _visualizations("maco", labels, seed, images, transparency, history, started, spectrum.source,
                           MACO_ALGORITHM)


def method_defaults(method: str) -> dict[str, object]:
    """The keyword defaults of ``METHODS[method]``: their one home, read by the CLI and by study.toml."""
    return {name: p.default for name, p in inspect.signature(METHODS[method]).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _lucid_baseline(method, model, units, objectives, steps, size, lr, seed, progress, callback):
    objectives, labels = _objectives(model, units, objectives)
    started = time.perf_counter()
    size = size or model.input_size
    generator = torch.Generator(device=model.device).manual_seed(seed)
    count = len(objectives)
    if method == "olah":
        parameters = fourier_init(count, size, size, generator).requires_grad_()
        scale = fourier_scale(size, size).to(model.device)

        def render(p: torch.Tensor) -> torch.Tensor:
            return fourier_image(p, scale, size)
    else:
        parameters = pixel_init(count, size, size, generator).requires_grad_()
        render = pixel_image

    images, _, history = _optimize(
        model, objectives, parameters, render,
        lambda images: lucid_transforms(images, model.input_size, generator),
        torch.optim.Adam([parameters], lr=lr), steps, False, progress, method, callback,
    )
    return _visualizations(method, labels, seed, images, None, history, started)


def _lucid_method(method: str, doc: str):
    """The public function of one Lucid-style baseline (they share every keyword default)."""
    def run(
        model: Model,
        units: Sequence[int] | None = None,
        objectives: Sequence[Objective] | None = None,
        *,
        steps: int = 512,
        size: int | None = None,
        lr: float = 0.05,
        seed: int = 0,
        progress: bool = True,
        callback: StepCallback | None = None,
    ) -> list[Visualization]:
        return _lucid_baseline(method, model, units, objectives, steps, size, lr, seed, progress, callback)

    run.__name__ = run.__qualname__ = method
    run.__doc__ = doc
    return run


olah = _lucid_method("olah", """Olah et al. 2017 as in Lucid: 1/f Fourier basis (decay 1, sd 0.01), decorrelated colour,
    the standard transforms, Adam 0.05, 512 steps. ``size`` defaults to the model's input size.""")
pixel = _lucid_method("pixel", """Pixel-space optimisation (plain RGB pixels, sigmoid) with Lucid's standard transforms,
    Adam 0.05, 512 steps. ``size`` defaults to the model's input size.""")

METHODS = {"maco": maco, "olah": olah, "pixel": pixel}
