"""`maco-study evaluate`: the MACO paper's benchmark for any timm network and units."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
import timm
import torch
import torchmetrics
from tqdm import tqdm

from maco.cli import default_device, parse_units, spectrum_option
from maco.device import DTYPES, DeviceError, resolve_device, runtime_provenance, use_deterministic
from maco.evaluation.metrics import PenultimateFeatures
from maco.evaluation.natural import EvaluationError, find_natural_images, open_rgb
from maco.evaluation.report import contact_sheet, markdown_tables, write_csv
from maco.evaluation.run import Evaluation, evaluate as run_evaluation
from maco.evaluation.settings import (
    FID_CROP,
    FID_MODEL,
    FID_RESIZE,
    PLAUSIBILITY_K,
    TRANSFER_CLASSIFIERS,
)
from maco.evaluation.variants import VARIANTS
from maco.images import to_pil
from maco.models import RANDOM_WEIGHTS, Model, ModelError, load_model
from maco.objectives import ObjectiveError
from maco.optimize import check_units
from maco.options import runtime_options
from maco.spectra import SpectrumError, choose_spectrum


def _names(text: str, what: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise click.BadParameter(f"no {what} given")
    return names


def _variants(text: str) -> list:
    names = _names(text, "variant")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return [VARIANTS[name] for name in dict.fromkeys(names)]


def _classifiers(text: str) -> dict[str, str]:
    """Column name -> timm name; the paper's short names map through settings.TRANSFER_CLASSIFIERS."""
    if text.strip().lower() == "none":
        return {}
    return {name: TRANSFER_CLASSIFIERS.get(name, name) for name in _names(text, "transfer classifier")}


def _load_checked(name: str, weights: str, device: torch.device, units: list[int],
                  compute_dtype: torch.dtype = torch.float32) -> Model:
    model = load_model(name, weights=weights, device=device, compute_dtype=compute_dtype)
    check_units(model, units)
    return model


def _recorded(result: Evaluation, field: str) -> list[str]:
    """The distinct values of a Visualization field (its spectrum, its algorithm) over every variant run."""
    return sorted({getattr(viz, field) for by_variant in result.visualizations.values()
                   for shown in by_variant.values() for viz in shown if getattr(viz, field)})


@click.command()
@click.option("--model", "model_names", required=True, multiple=True,
              help="network whose units are visualized: preset or timm name (repeat for several)")
@click.option("--weights", default="pretrained", show_default=True,
              help="weights of the visualized networks: 'pretrained' or a local checkpoint file")
@click.option("--random-weights", is_flag=True, help="random weights for every model (tests and demos only)")
@click.option("--units", required=True, help="comma-separated output units (ImageNet classes), e.g. 1,2,3")
@click.option("--images", required=True, type=click.Path(path_type=Path),
              help="natural images: a folder of class folders (named by index or WordNet id) or a CSV of path,class")
@click.option("--variants", "variant_names", default=",".join(VARIANTS), show_default=True,
              help="methods (maco, olah, pixel) and ablation variants to evaluate")
@click.option("--transfer-models", default=",".join(TRANSFER_CLASSIFIERS), show_default=True,
              help="classifiers for transferability: the paper's short names or timm names; 'none' to skip")
@click.option("--fid-model", default=FID_MODEL, show_default=True, help="FID feature network (pool features)")
@click.option("--plausibility-k", type=click.IntRange(min=1), default=PLAUSIBILITY_K, show_default=True,
              help="Deep-KNN's k: the distance to the k-th nearest natural image of the class")
@click.option("--seeds", default="0", show_default=True, help="comma-separated seeds: one visualization per unit and seed")
@click.option("--steps", type=click.IntRange(min=1), help="optimisation steps [each method's default]")
@click.option("--size", type=click.IntRange(min=16), help="working image side in px [each method's default]")
@spectrum_option(fallback=False)
@click.option("--device", default=default_device, show_default="cuda if available")
@runtime_options
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="no progress bars")
def evaluate(model_names, weights, random_weights, units, images, variant_names, transfer_models, fid_model,
             plausibility_k, seeds,
             steps, size, spectrum_path, device, dtype, deterministic, out, quiet):
    """Score feature visualizations as in the MACO paper (Tables 1-3): CSV, markdown tables, contact sheets."""
    started = time.perf_counter()
    unit_list = parse_units(units)
    seed_list = parse_units(seeds, "seed")
    variants = _variants(variant_names)
    classifiers = _classifiers(transfer_models)
    shared_weights = RANDOM_WEIGHTS if random_weights else "pretrained"
    if deterministic:
        use_deterministic()
    try:
        device = resolve_device(device)
        # a benchmark's MACO runs on the spectrum it names: never a silent fallback to the analytic one
        spectrum = choose_spectrum(spectrum_path) if any(v.method == "maco" for v in variants) else None
        natural_files = find_natural_images(images, unit_list)
        too_few = {unit: len(paths) for unit, paths in natural_files.items() if len(paths) < plausibility_k}
        if too_few:
            raise EvaluationError(f"--plausibility-k {plausibility_k} needs as many natural images per class; "
                                  f"{', '.join(f'unit {u} has {n}' for u, n in too_few.items())}")
        natural = {unit: [open_rgb(path) for path in paths]
                   for unit, paths in tqdm(natural_files.items(), desc="natural images", unit="class", disable=quiet)}
        # --dtype: the visualized networks' precision (their visualizations, plausibility and logits);
        # the transfer classifiers and the FID network stay float32, alike for runs in either precision
        networks = [_load_checked(name, RANDOM_WEIGHTS if random_weights else weights, device, unit_list,
                                  DTYPES[dtype]) for name in dict.fromkeys(model_names)]
        transfer = {column: _load_checked(name, shared_weights, device, unit_list)
                    for column, name in classifiers.items()}
        fid_network = load_model(fid_model, weights=shared_weights, device=device)
    except (DeviceError, EvaluationError, ModelError, ObjectiveError, SpectrumError) as error:
        raise click.ClickException(str(error)) from None
    if random_weights:
        click.echo("WARNING: every model has RANDOM weights; every output says so", err=True)

    method_options = {key: value for key, value in {"steps": steps, "size": size}.items() if value}
    result = run_evaluation(networks, unit_list, natural, variants, PenultimateFeatures(fid_network), transfer,
                            seed_list, method_options, spectrum, progress=not quiet, plausibility_k=plausibility_k)

    out.mkdir(parents=True, exist_ok=True)
    write_csv(result.rows, out / "scores.csv")
    write_csv(result.summary, out / "summary.csv")
    tag = " (RANDOM weights)" if random_weights else ""
    preamble = [f"- {n.name}: {n.weights}" for n in [*networks, *transfer.values(), fid_network]]
    if random_weights:
        preamble.insert(0, "**RANDOM weights (a test run): these figures say nothing about the methods.**\n")
    (out / "tables.md").write_text(
        markdown_tables(result.summary, {v.name: v for v in variants}, list(transfer), preamble))
    for network in networks:
        shown = result.visualizations[network.name]
        contact_sheet(shown, variants, f"{network.name}{tag}").save(out / f"contact_sheet_{network.name}.png")
        folder = out / "images" / network.name
        folder.mkdir(parents=True, exist_ok=True)
        for variant in variants:
            for viz in shown[variant.name]:
                to_pil(variant.scored_image(viz)).save(folder / f"{variant.name}_unit{viz.unit}_seed{viz.seed}.png")
    run = {
        "command": "evaluate",
        "networks": {n.name: n.weights for n in networks},
        "random_weights": random_weights,
        "units": unit_list,
        "seeds": seed_list,
        "variants": {v.name: {"method": v.method, "options": v.options, "scored": "masked" if v.masked else "image"}
                     for v in variants},
        "method_options": method_options,
        "maco_algorithm": ", ".join(_recorded(result, "algorithm")) or None,
        "spectrum": _recorded(result, "spectrum_source"),
        "plausibility": {"score": "Deep-KNN: L2-normalised penultimate features, distance to the k-th nearest",
                         "k": plausibility_k},
        "natural_images": {"source": str(images), "per_unit": {u: len(p) for u, p in natural_files.items()}},
        "fid": {"model": fid_model, "weights": fid_network.weights, "resize": FID_RESIZE, "crop": FID_CROP},
        "transfer_classifiers": {column: model.weights for column, model in transfer.items()},
        "runtime": runtime_provenance(device, DTYPES[dtype]),
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "torchmetrics": torchmetrics.__version__},
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    (out / "run.json").write_text(json.dumps(run, indent=2))
    click.echo(f"wrote scores.csv, summary.csv, tables.md, {len(networks)} contact sheet(s) and run.json to {out}")
