"""`maco-study invert`: feature inversions of images at one layer, and the Figure 6a layout."""
from __future__ import annotations

import time
from pathlib import Path

import click

from applications.figures import inversion_figure
from applications.runs import load_images, run_settings, write_json
from maco.cli import maco_options, model_options, open_model, open_spectrum
from maco.inversion import INVERSION_CROP_SIZE, feature_distance, invert
from maco.objectives import ObjectiveError
from maco.options import runtime_options
from maco.outputs import write_visualization
from maco.transparency import alpha_map, masked_image
from maco.units import layer_output_shape


@click.command()
@model_options
@click.option("--layer", required=True, help="the layer whose activations are matched (e.g. layer3, blocks.6)")
@click.option("--images", "first_image", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the images to invert: --images a.png b.png ...")
@click.argument("more_images", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@maco_options
@runtime_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def invert_command(model_name, weights, random_weights, device, layer, first_image, more_images, steps, size, crops,
                   seed, spectrum_path, quiet, dtype, deterministic, out):
    """Feature inversion with MACO: per image the inversion, transparency and masked PNGs; inversion.png; run.json."""
    started = time.perf_counter()
    files = [first_image, *more_images]
    model = open_model(model_name, weights, random_weights, device, dtype, deterministic)
    try:
        layer_output_shape(model, layer)
    except ObjectiveError as error:
        raise click.ClickException(str(error)) from None
    spectrum = open_spectrum(spectrum_path, size)
    images = load_images(files, model.input_size)
    vizs = invert(model, layer, images, steps=steps, size=size, crops=crops, seed=seed, spectrum=spectrum,
                  progress=not quiet)

    out.mkdir(parents=True, exist_ok=True)
    tag = "_random-weights" if model.random_weights else ""
    records, rows = [], []
    for number, (file, image, viz) in enumerate(zip(files, images, vizs)):
        stem = f"inversion{number}_{file.stem}_{layer}{tag}"
        written = write_visualization(viz, out, stem, {"model": model_name, "weights": model.weights, "layer": layer,
                                                  "image": file.name})
        records.append({"image": str(file), "files": written, "objective": viz.objective,
                        "feature_distance": feature_distance(model, layer, viz.image, image)})
        rows.append((file.name, image, viz.image, alpha_map(viz.transparency)[None],
                     masked_image(viz.image, viz.transparency)))
    title = f"{model_name}: feature inversion at {layer}"
    inversion_figure(rows, title, model.random_weights, out / "inversion.png")
    write_json(out / "run.json", run_settings(
        "invert", model, spectrum, layer=layer, steps=steps, size=size, crops=crops, crop_size=INVERSION_CROP_SIZE,
        seed=seed, figure="inversion.png", inversions=records, wall_seconds=round(time.perf_counter() - started, 3),
    ))
    click.echo(f"wrote {len(records)} inversion(s), inversion.png and run.json to {out}")
