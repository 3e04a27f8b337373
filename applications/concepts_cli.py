"""`maco-study concepts`: a class's CRAFT concepts, ranked by importance, each visualized with MACO."""
from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from applications.figures import ConceptPanel, concepts_figure, mosaic
from applications.runs import load_images, run_settings, write_json
from maco.cli import maco_options, model_options, open_model, open_spectrum
from maco.concepts import ClassConcepts, concept_objectives, extract_concepts
from maco.craft import PATCH_FRACTION, SOBOL_DESIGNS, ConceptError
from maco.images import image_files
from maco.objectives import ObjectiveError
from maco.optimize import Visualization, maco
from maco.options import runtime_options
from maco.outputs import save_png, write_visualization
from maco.transforms import crop_and_resize
from maco.transparency import masked_image
from maco.units import channel_width, layer_output_shape

MOSAIC_PATCHES = 16  # a 4 x 4 mosaic per concept


def default_layer(model) -> str:
    """The last feature stage timm names (layer4 of a ResNet, the last block of a ViT)."""
    info = getattr(model.net, "feature_info", None)
    if not info:
        raise click.UsageError(f"{model.name} names no feature stages; give --layer")
    last = info[-1]
    return last["module"] if isinstance(last, dict) else info.module_name()[-1]


def check_inputs(model, layer: str, class_index: int, concepts: int, folder: Path) -> list[Path]:
    """Everything that can be wrong with the request, found before any heavy work; returns the image files."""
    try:
        width = channel_width(layer_output_shape(model, layer))
    except ObjectiveError as error:
        raise click.ClickException(str(error)) from None
    if not 0 <= class_index < model.num_classes:
        raise click.ClickException(f"class {class_index} out of range: {model.name} has outputs "
                                   f"0..{model.num_classes - 1}")
    if concepts > width:
        raise click.ClickException(f"{concepts} concepts asked but layer {layer} has only {width} channels")
    files = image_files(folder)
    if not files:
        raise click.ClickException(f"no image files (.jpg, .png, ...) in {folder}")
    return files


@click.command()
@model_options
@click.option("--class", "class_index", type=int, required=True, help="the class (output unit) whose images these are")
@click.option("--images", "folder", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder of the class's natural images (recursive)")
@click.option("--layer", help="layer to factorise [the last feature stage: layer4, blocks.11, ...]")
@click.option("--concepts", "concept_count", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--patches", type=click.IntRange(min=1), default=64, show_default=True, help="random patches per image")
@click.option("--patch-fraction", type=click.FloatRange(0.05, 1.0), default=PATCH_FRACTION, show_default=True,
              help="patch side / image side")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="concepts visualized, most important first")
@click.option("--importance-images", type=click.IntRange(min=1), default=16, show_default=True,
              help="images the Sobol importance is averaged over")
@maco_options
@runtime_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def concepts(model_name, weights, random_weights, device, class_index, folder, layer, concept_count, patches,
             patch_fraction, top, importance_images, steps, size, crops, seed, spectrum_path, quiet, dtype,
             deterministic, out):
    """CRAFT concepts of one class, each visualized with MACO: PNGs, concepts.json, run.json and concepts.png."""
    started = time.perf_counter()
    model = open_model(model_name, weights, random_weights, device, dtype, deterministic)
    layer = layer or default_layer(model)
    files = check_inputs(model, layer, class_index, concept_count, folder)
    spectrum = open_spectrum(spectrum_path, size)
    images = load_images(files, model.input_size)
    click.echo(f"{len(files)} images, {len(files) * patches} patches, layer {layer}", err=True)
    try:
        found = extract_concepts(model, layer, images, class_index, concepts=concept_count, patches_per_image=patches,
                                 patch_fraction=patch_fraction, importance_images=importance_images, seed=seed)
    except ConceptError as error:
        raise click.ClickException(str(error)) from None
    shown = found.ranking[:top]
    vizs = maco(model, objectives=concept_objectives(found.basis, shown), steps=steps, size=size, crops=crops,
                seed=seed, spectrum=spectrum, progress=not quiet)

    out.mkdir(parents=True, exist_ok=True)
    records = write_concepts(out, model, found, vizs, images, files, folder, patch_fraction)
    write_json(out / "run.json", run_settings(
        "concepts", model, spectrum, class_index=class_index, images=str(folder), image_count=len(files), layer=layer,
        concepts=concept_count, patches_per_image=patches, patch_fraction=patch_fraction, top=top,
        importance_images=min(importance_images, len(files)), sobol_designs=SOBOL_DESIGNS, steps=steps, size=size,
        crops=crops, seed=seed, wall_seconds=round(time.perf_counter() - started, 3),
    ))
    click.echo(f"wrote {len(records)} concept visualization(s), concepts.json and concepts.png to {out}")


def write_concepts(out: Path, model, found: ClassConcepts, vizs: list[Visualization], images: torch.Tensor,
                   files: list[Path], folder: Path, patch_fraction: float) -> list[dict]:
    """Per visualized concept its PNGs (MACO, transparency, masked, top patches), concepts.png and concepts.json."""
    layer, class_index = found.basis.layer, found.class_index
    tag = "_random-weights" if model.random_weights else ""
    metadata = {"model": model.name, "weights": model.weights, "layer": layer, "class": str(class_index)}
    tile = max(16, round(patch_fraction * model.input_size))
    records, panels = [], []
    for rank, (k, viz) in enumerate(zip(found.ranking, vizs), start=1):
        stem = f"concept{rank}_c{k}{tag}"
        top_patches = found.top_patches(k, MOSAIC_PATCHES)
        sheet = mosaic(crop_and_resize(images, found.boxes[top_patches], tile), columns=4)
        written = {**write_visualization(viz, out, stem, {**metadata, "concept": str(k)}),
                   "patches": save_png(sheet, out / f"{stem}_patches.png", metadata)}
        records.append({
            "rank": rank, "concept": k, "importance": float(found.importance[k]), "files": written,
            "objective": viz.objective,
            "top_patches": [{"image": str(files[int(found.boxes[i, 0])].relative_to(folder)),
                             "box": [round(float(v), 1) for v in found.boxes[i, 1:]]} for i in top_patches],
        })
        masked = masked_image(viz.image, viz.transparency)
        panels.append(ConceptPanel(k, float(found.importance[k]), viz.image, masked, sheet))
    title = f"{model.name} class {class_index}: CRAFT concepts at {layer}"
    concepts_figure(panels, found.importance.tolist(), title, model.random_weights, out / "concepts.png")
    write_json(out / "concepts.json", {
        "class": class_index, "layer": layer, "importance_measure": "total Sobol index on the class logit (CRAFT)",
        "reconstruction_error": found.reconstruction_error, "importance": found.importance.tolist(),
        "ranking": found.ranking, "concepts": records, "figure": "concepts.png",
    })
    return records
