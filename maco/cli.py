"""`maco-study visualize` and `maco-study spectrum`, and the model and spectrum options other commands share."""
from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import click
import torch

from maco.device import DTYPES, DeviceError, resolve_device, runtime_provenance, use_deterministic
from maco.images import STRETCH_PERCENTILES
from maco.methods import MethodError, available_methods, check_settings, get_method, run_method
from maco.models import RANDOM_WEIGHTS, ModelError, load_model
from maco.objectives import ObjectiveError, logit
from maco.optimize import MACO_ALGORITHM, METHODS, check_units, method_defaults
from maco.outputs import write_visualization
from maco.options import DTYPE_NAMES, runtime_options
from maco.spectra import ANALYTIC, SpectrumError, resolve_spectrum, save_spectrum, spectrum_from_folder
from maco.units import TOKEN_CHOICES, channel_objectives

DEFAULTS = {method: method_defaults(method) for method in METHODS}  # one home: the functions' signatures


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_units(text: str, what: str = "unit") -> list[int]:
    """A comma-separated list of integers (units, or seeds with ``what="seed"``)."""
    try:
        units = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of {what} indices") from None
    if not units:
        raise click.BadParameter(f"no {what} given")
    return units


def model_options(command):
    """--model, --weights, --random-weights and --device, shared by every command that loads a network."""
    for option in reversed([
        click.option("--model", "model_name", required=True, help="preset (vgg16, resnet50, vit_b16) or any timm name"),
        click.option("--weights", default="pretrained", show_default=True,
                     help="'pretrained' or a local checkpoint file"),
        click.option("--random-weights", is_flag=True, help="random weights (tests and demos only; every output says so)"),
        click.option("--device", default=default_device, show_default="cuda if available"),
    ]):
        command = option(command)
    return command


def spectrum_option(fallback: bool):
    """--spectrum: a .npy file or "analytic"; by default the published one, which a study needs (no ``fallback``)."""
    default = ("the published ImageNet spectrum, else the analytic one with a warning" if fallback
               else "the published ImageNet spectrum; stops when it is unavailable")
    return click.option("--spectrum", "spectrum_path", type=click.Path(path_type=Path),
                        help=f"MACO magnitude spectrum: a .npy file, or {ANALYTIC!r} [default: {default}]")


def maco_options(command):
    """--steps, --size, --crops, --seed, --spectrum and --quiet of a MACO run (commands with MACO only)."""
    for option in reversed([
        click.option("--steps", type=click.IntRange(min=1), default=DEFAULTS["maco"]["steps"], show_default=True),
        click.option("--size", type=click.IntRange(min=16), default=DEFAULTS["maco"]["size"], show_default=True,
                     help="image side in px"),
        click.option("--crops", type=click.IntRange(min=0), default=DEFAULTS["maco"]["crops"], show_default=True,
                     help="MACO crops per step, 0 for the whole image"),
        click.option("--seed", type=int, default=0, show_default=True),
        spectrum_option(fallback=True),
        click.option("--quiet", is_flag=True, help="no progress bars"),
    ]):
        command = option(command)
    return command


def open_model(model_name: str, weights: str, random_weights: bool, device: str, dtype: str = DTYPE_NAMES[0],
               deterministic: bool = False):
    """The model, or one line naming the problem; random weights are announced on stderr.

    ``dtype`` and ``deterministic`` are the values of ``maco.options.runtime_options``.
    """
    if deterministic:
        use_deterministic()
    try:
        model = load_model(model_name, weights=RANDOM_WEIGHTS if random_weights else weights,
                           device=resolve_device(device), compute_dtype=DTYPES[dtype])
    except (DeviceError, ModelError) as error:
        raise click.ClickException(str(error)) from None
    if model.random_weights:
        click.echo(f"WARNING: {model_name} has RANDOM weights; every output is labelled as such", err=True)
    return model


def open_spectrum(spectrum_path: Path | None, size: int, fallback: bool = True):
    """The MACO spectrum at ``size`` (``--spectrum``), announced on stderr, with a warning when it fell back."""
    try:
        spectrum = resolve_spectrum(size, spectrum_path, fallback=fallback)
    except SpectrumError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"spectrum: {spectrum.source}", err=True)
    if spectrum.fallback:
        click.echo(f"WARNING: the published ImageNet spectrum is unavailable ({spectrum.fallback}); MACO uses the "
                   f"analytic approximation (say --spectrum {ANALYTIC} to choose it)", err=True)
    return spectrum


NOT_VISUALIZATIONS = ("natural", "none")  # registry methods that make no images of their own


def _visualization_method(ctx, param, value: str) -> str:  # noqa: ANN001 - click's callback
    """Checked when the command runs, so a plugin installed after this module's import counts."""
    choices = [m for m in available_methods() if m not in NOT_VISUALIZATIONS]
    if value not in choices:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
    return value


def _settings(texts: tuple[str, ...]) -> dict:
    """--setting KEY=VALUE pairs, each VALUE read as TOML (1, 0.5, true, "text")."""
    settings = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise MethodError(f"--setting: expected KEY=VALUE, got {text!r}")
        try:
            settings[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            settings[key.strip()] = value.strip()
    return settings


def _targets(model, units: str | None, layer: str | None, channels: str | None, tokens: str):
    """(file stem part, run.json fields, objective) per unit or channel, checked before any heavy work."""
    if (units is None) == (layer is None) or (layer is None) != (channels is None):
        raise click.UsageError("give either --units, or --layer with --channels")
    if units is not None:
        unit_list = parse_units(units)
        check_units(model, unit_list)
        return [(f"unit{u}", {"unit": u}, logit(u)) for u in unit_list]
    channel_list = parse_units(channels)
    objectives = channel_objectives(model, layer, channel_list, tokens)
    return [(f"{layer}_channel{c}", {"layer": layer, "channel": c, "tokens": tokens}, objective)
            for c, objective in zip(channel_list, objectives)]


@click.command()
@model_options
@click.option("--units", help="comma-separated output units (ImageNet classes), e.g. 1,2,3")
@click.option("--layer", help="an internal layer (a name from the model's named_modules, e.g. layer3, blocks.6)")
@click.option("--channels", help="with --layer: comma-separated channel indices, e.g. 1,2,3")
@click.option("--tokens", type=click.Choice(TOKEN_CHOICES), default="all", show_default=True,
              help="ViT layers: the tokens a channel is averaged over (all, patch tokens, CLS token)")
@click.option("--method", default="maco", show_default=True, callback=_visualization_method,
              help="a method of the registry (maco.methods): maco, olah, pixel, or an installed plugin's "
                   "(docs/methods.md)")
@click.option("--setting", "settings_given", multiple=True, metavar="KEY=VALUE",
              help="a setting of the method (repeatable; a TOML value), e.g. lr=0.5 or a plugin's own")
@click.option("--steps", type=click.IntRange(min=1),
              help=f"optimisation steps [maco {DEFAULTS['maco']['steps']}, olah/pixel {DEFAULTS['olah']['steps']}]")
@click.option("--size", type=click.IntRange(min=16),
              help=f"working image side in px [maco {DEFAULTS['maco']['size']}, others the model input]")
@click.option("--crops", type=click.IntRange(min=0),
              help=f"MACO crops per unit and step, 0 for the whole image [{DEFAULTS['maco']['crops']}]")
@click.option("--stretch", is_flag=True,
              help=f"contrast stretch of the saved images: clip at the {STRETCH_PERCENTILES[0]:g}th and "
                   f"{STRETCH_PERCENTILES[1]:g}th percentiles")
@click.option("--units-per-run", type=click.IntRange(min=1), default=8, show_default=True,
              help="units optimised together (one forward/backward per step for all of them)")
@click.option("--seed", type=int, default=0, show_default=True)
@spectrum_option(fallback=True)
@runtime_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="no progress bars")
def visualize(model_name, weights, random_weights, device, units, layer, channels, tokens, method, settings_given,
              steps, size, crops, stretch, units_per_run, seed, spectrum_path, dtype, deterministic, out, quiet):
    """Feature visualizations of output units or internal channels: one PNG each (MACO adds transparency and masked PNGs) and run.json."""
    started = time.perf_counter()
    model = open_model(model_name, weights, random_weights, device, dtype, deterministic)
    try:
        targets = _targets(model, units, layer, channels, tokens)
    except ObjectiveError as error:
        raise click.ClickException(str(error)) from None
    registered = get_method(method)
    given = {"steps": steps, "size": size, "crops": crops}
    given = {k: v for k, v in given.items() if v is not None and k in registered.defaults}
    try:
        given.update(_settings(settings_given))
        settings = check_settings(registered, given)
    except MethodError as error:
        raise click.ClickException(str(error)) from None
    if method not in METHODS and layer is not None:
        raise click.UsageError(f"--layer: method {method!r} is a plugin's: it visualises output units (--units)")
    spectrum = open_spectrum(spectrum_path, size or DEFAULTS["maco"]["size"]) if method == "maco" else None

    out.mkdir(parents=True, exist_ok=True)
    kwargs = {"seed": seed, "progress": not quiet, **given}
    if method == "maco":
        kwargs["spectrum"] = spectrum

    def run_chunk(chunk):  # noqa: ANN001, ANN202 - maco.optimize's objectives, or the registry's units
        if method in METHODS:
            return METHODS[method](model, objectives=[t[2] for t in chunk], **kwargs)
        return run_method(method, model, [fields["unit"] for _, fields, _ in chunk], settings, seed)

    weights_tag = "_random-weights" if model.random_weights else ""
    metadata = {"model": model_name, "weights": model.weights, "method": method, "seed": str(seed)}
    records = []
    for first in range(0, len(targets), units_per_run):
        chunk = targets[first:first + units_per_run]
        for (stem_part, fields, _), viz in zip(chunk, run_chunk(chunk)):
            stem = f"{method}_{model_name}{weights_tag}_{stem_part}_seed{seed}"
            files = write_visualization(viz, out, stem, {**metadata, **{k: str(v) for k, v in fields.items()}}, stretch)
            records.append({**fields, "files": files, "objective": viz.objective, "run_seconds": round(viz.seconds, 3)})
    run = {
        "command": "visualize",
        "model": model_name,
        "weights": model.weights,
        "random_weights": model.random_weights,
        "method": method,
        "algorithm": MACO_ALGORITHM if method == "maco" else method,
        "settings": {k: v for k, v in settings.items() if isinstance(v, (int, float, str, bool))},
        "steps": settings.get("steps"),
        "size": settings.get("size") or model.input_size,
        "crops": settings.get("crops"),
        "contrast_stretch": list(STRETCH_PERCENTILES) if stretch else None,
        "seed": seed,
        "spectrum": spectrum.source if spectrum is not None else None,
        "runtime": runtime_provenance(model.device, model.compute_dtype),
        "units": records,
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    (out / "run.json").write_text(json.dumps(run, indent=2))
    click.echo(f"wrote {len(records)} visualization(s) and run.json to {out}")


@click.command()
@click.option("--images", required=True, type=click.Path(path_type=Path), help="folder of natural images (recursive)")
@click.option("--size", type=click.IntRange(min=8), default=512, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="output .npy")
def spectrum(images, size, out):
    """Mean magnitude spectrum (decorrelated colour, rfft2 layout) of a folder of images."""
    try:
        result = spectrum_from_folder(images, size)
    except SpectrumError as error:
        raise click.ClickException(str(error)) from None
    save_spectrum(result, out)
    click.echo(f"wrote {out} {tuple(result.magnitude.shape)} from {result.source}")
