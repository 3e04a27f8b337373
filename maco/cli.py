"""`maco-study visualize` and `maco-study spectrum`."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch
from PIL.PngImagePlugin import PngInfo

from maco.images import to_pil
from maco.models import RANDOM_WEIGHTS, ModelError, load_model
from maco.objectives import ObjectiveError
from maco.optimize import METHODS, Visualization, check_units
from maco.spectra import SpectrumError, load_spectrum, resize_spectrum, resolve_spectrum, save_spectrum, spectrum_from_folder
from maco.transparency import alpha_map, masked_image

DEFAULT_STEPS = {"maco": 256, "olah": 512, "pixel": 512}


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


def _save(image: torch.Tensor, path: Path, metadata: dict[str, str]) -> str:
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, value)
    to_pil(image).save(path, format="PNG", pnginfo=info)
    return path.name


def _write_outputs(viz: Visualization, out: Path, stem: str, metadata: dict[str, str]) -> dict:
    files = {"image": _save(viz.image, out / f"{stem}.png", metadata)}
    if viz.transparency is not None:
        files["transparency"] = _save(alpha_map(viz.transparency), out / f"{stem}_transparency.png", metadata)
        files["masked"] = _save(masked_image(viz.image, viz.transparency), out / f"{stem}_masked.png", metadata)
    return files


@click.command()
@click.option("--model", "model_name", required=True, help="preset (vgg16, resnet50, vit_b16) or any timm name")
@click.option("--weights", default="pretrained", show_default=True, help="'pretrained' or a local checkpoint file")
@click.option("--random-weights", is_flag=True, help="random weights (tests and demos only; every output says so)")
@click.option("--units", required=True, help="comma-separated output units (ImageNet classes), e.g. 1,2,3")
@click.option("--method", type=click.Choice(sorted(METHODS)), default="maco", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), help="optimisation steps [maco 256, olah/pixel 512]")
@click.option("--size", type=click.IntRange(min=16), help="working image side in px [maco 512, others the model input]")
@click.option("--crops", type=click.IntRange(min=1), default=6, show_default=True, help="MACO crops per unit and step")
@click.option("--units-per-run", type=click.IntRange(min=1), default=8, show_default=True,
              help="units optimised together (one forward/backward per step for all of them)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--spectrum", "spectrum_path", type=click.Path(path_type=Path),
              help="MACO magnitude spectrum .npy [default: ImageNet's, else the analytic one]")
@click.option("--device", default=default_device, show_default="cuda if available")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="no progress bars")
def visualize(model_name, weights, random_weights, units, method, steps, size, crops, units_per_run, seed,
              spectrum_path, device, out, quiet):
    """Feature visualizations of output units: one PNG per unit (MACO adds transparency and masked PNGs) and run.json."""
    unit_list = parse_units(units)
    started = time.perf_counter()
    try:
        model = load_model(model_name, weights=RANDOM_WEIGHTS if random_weights else weights, device=device)
        check_units(model, unit_list)
        spectrum = None
        if method == "maco":
            working = size or 512
            spectrum = resize_spectrum(load_spectrum(spectrum_path), working) if spectrum_path else resolve_spectrum(working)
    except (ModelError, ObjectiveError, SpectrumError) as error:
        raise click.ClickException(str(error)) from None
    if model.random_weights:
        click.echo(f"WARNING: {model_name} has RANDOM weights; every output is labelled as such", err=True)
    if spectrum is not None:
        click.echo(f"spectrum: {spectrum.source}", err=True)

    out.mkdir(parents=True, exist_ok=True)
    kwargs = {"steps": steps or DEFAULT_STEPS[method], "seed": seed, "progress": not quiet}
    if size:
        kwargs["size"] = size
    if method == "maco":
        kwargs.update(crops=crops, spectrum=spectrum)
    weights_tag = "_random-weights" if model.random_weights else ""
    metadata = {"model": model_name, "weights": model.weights, "method": method, "seed": str(seed)}
    records = []
    for first in range(0, len(unit_list), units_per_run):
        for viz in METHODS[method](model, unit_list[first:first + units_per_run], **kwargs):
            stem = f"{method}_{model_name}{weights_tag}_unit{viz.unit}_seed{seed}"
            files = _write_outputs(viz, out, stem, {**metadata, "unit": str(viz.unit)})
            records.append({
                "unit": viz.unit, "files": files, "objective": viz.objective, "run_seconds": round(viz.seconds, 3),
            })
    run = {
        "model": model_name,
        "weights": model.weights,
        "random_weights": model.random_weights,
        "method": method,
        "steps": kwargs["steps"],
        "size": kwargs.get("size", 512 if method == "maco" else model.input_size),
        "crops": crops if method == "maco" else None,
        "seed": seed,
        "spectrum": spectrum.source if spectrum is not None else None,
        "device": str(model.device),
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
