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
from maco.evaluation.report import NOT_SCORED_RANDOM, contact_sheet, markdown_tables, write_csv
from maco.evaluation.run import Evaluation, evaluate as run_evaluation
from maco.evaluation.settings import (
    FID_CROP,
    FID_MODEL,
    FID_RESIZE,
    PLAUSIBILITY_K,
    TRANSFER_CLASSIFIERS,
)
from maco.evaluation.variants import VARIANTS, plugin_variant
from maco.methods import BUILTIN_METHODS
from maco.images import to_pil
from maco.models import PRETRAINED_WEIGHTS, RANDOM_WEIGHTS, Model, ModelError, load_model, resolve_name
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
    """Table 1's methods and the ablation's variants, or any installed plugin's method (maco.methods)."""
    from maco.methods import available_methods

    plugins = [m for m in available_methods() if m not in BUILTIN_METHODS]
    names = _names(text, "variant")
    unknown = [name for name in names if name not in VARIANTS and name not in plugins]
    if unknown:
        raise click.BadParameter(f"unknown variant(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join([*VARIANTS, *plugins])}")
    return [VARIANTS[name] if name in VARIANTS else plugin_variant(name) for name in dict.fromkeys(names)]


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


def _load_judge(role: str, name: str, weights: str, device: torch.device, units: list[int] | None = None) -> Model:
    """An auxiliary network (float32), its errors naming its role: which of the seven networks lacks weights."""
    try:
        return _load_checked(name, weights, device, units) if units else load_model(name, weights, device)
    except ModelError as error:
        raise ModelError(f"{role}: {error}") from None


def _recorded(result: Evaluation, field: str) -> list[str]:
    """The distinct values of a Visualization field (its spectrum, its algorithm) over every variant run."""
    return sorted({getattr(viz, field) for by_variant in result.visualizations.values()
                   for shown in by_variant.values() for viz in shown if getattr(viz, field)})


@click.command()
@click.option("--model", "model_names", required=True, multiple=True,
              help="network whose units are visualized: preset or timm name (repeat for several)")
@click.option("--weights", help="weights of the visualized networks: 'pretrained', a checkpoint file or a folder of "
              "weights [default: pretrained]")
@click.option("--random-weights", is_flag=True,
              help="smoke run: random weights for every network not given weights; FID and transferability on "
                   "random weights are not computed (n/a)")
@click.option("--units", required=True, help="comma-separated output units (ImageNet classes), e.g. 1,2,3")
@click.option("--images", required=True, type=click.Path(path_type=Path),
              help="natural images: a folder of class folders (named by index or WordNet id) or a CSV of path,class")
@click.option("--variants", "variant_names", default=",".join(VARIANTS), show_default=True,
              help="methods (maco, olah, pixel), ablation variants, or an installed plugin's method to evaluate")
@click.option("--transfer-models", default=",".join(TRANSFER_CLASSIFIERS), show_default=True,
              help="classifiers for transferability: the paper's short names or timm names; 'none' to skip")
@click.option("--fid-model", default=FID_MODEL, show_default=True, help="FID feature network (pool features)")
@click.option("--fid-weights", type=click.Path(exists=True, path_type=Path),
              help="the FID network's weights: a checkpoint file, or a folder holding <timm name>.safetensors "
                   "(.pth, .bin) or a Hugging Face cache [default: pretrained, from the local cache or the hub]")
@click.option("--transfer-weights", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="a folder holding every transfer classifier's weights, as --fid-weights' folder "
                   "[default: pretrained, from the local cache or the hub]")
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
             fid_weights, transfer_weights, plausibility_k, seeds, steps, size, spectrum_path, device, dtype,
             deterministic, out, quiet):
    """Score feature visualizations as in the MACO paper (Tables 1-3): CSV, markdown tables, contact sheets."""
    started = time.perf_counter()
    unit_list = parse_units(units)
    seed_list = parse_units(seeds, "seed")
    variants = _variants(variant_names)
    classifiers = _classifiers(transfer_models)
    weights, fid_weights, transfer_weights = (
        str(given) if given is not None else RANDOM_WEIGHTS if random_weights else PRETRAINED_WEIGHTS
        for given in (weights, fid_weights, transfer_weights))
    # FID and transferability on random weights are noise, not numbers (FIDs of 1e22, negative against the
    # natural set itself): those networks are not even loaded, and the tables say why their cells are empty
    not_scored = {metric: NOT_SCORED_RANDOM for metric, given in [("fid", fid_weights),
                                                                  ("transferability", transfer_weights)]
                  if given == RANDOM_WEIGHTS and (metric == "fid" or classifiers)}
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
        # --dtype: the visualized networks' precision (their visualizations, plausibility and logits);
        # the transfer classifiers and the FID network stay float32, alike for runs in either precision
        for name in [*classifiers.values(), fid_model]:  # unknown names stop the run even when not loaded
            resolve_name(name)
        networks = [_load_checked(name, weights, device, unit_list, DTYPES[dtype])
                    for name in dict.fromkeys(model_names)]
        transfer = {} if "transferability" in not_scored else {
            column: _load_judge(f"transfer classifier {column}", name, transfer_weights, device, unit_list)
            for column, name in classifiers.items()}
        fid_network = None if "fid" in not_scored else _load_judge("FID network", fid_model, fid_weights, device)
        natural = {unit: [open_rgb(path) for path in paths]
                   for unit, paths in tqdm(natural_files.items(), desc="natural images", unit="class", disable=quiet)}
    except (DeviceError, EvaluationError, ModelError, ObjectiveError, SpectrumError) as error:
        raise click.ClickException(str(error)) from None
    random_networks = [n.name for n in networks if n.random_weights]
    if random_networks or not_scored:
        click.echo(f"WARNING: RANDOM weights ({', '.join(random_networks + [f'{m} network(s)' for m in not_scored])});"
                   " a smoke run: every output says so", err=True)

    method_options = {key: value for key, value in {"steps": steps, "size": size}.items() if value}
    fid_features = PenultimateFeatures(fid_network) if fid_network is not None else None
    result = run_evaluation(networks, unit_list, natural, variants, fid_features, transfer,
                            seed_list, method_options, spectrum, progress=not quiet, plausibility_k=plausibility_k)

    out.mkdir(parents=True, exist_ok=True)
    write_csv(result.rows, out / "scores.csv")
    write_csv(result.summary, out / "summary.csv")
    judges = [*transfer.values(), *([fid_network] if fid_network is not None else [])]
    preamble = [f"- {n.name}: {n.weights}" for n in [*networks, *judges]]
    preamble += [f"- {metric} networks: random weights, {metric} not computed" for metric in not_scored]
    if random_networks or not_scored:
        preamble.insert(0, "**RANDOM weights (a smoke run): these figures say nothing about the methods.**\n")
    (out / "tables.md").write_text(
        markdown_tables(result.summary, {v.name: v for v in variants}, list(classifiers), preamble, not_scored))
    for network in networks:
        shown = result.visualizations[network.name]
        tag = " (RANDOM weights)" if network.random_weights else ""
        contact_sheet(shown, variants, f"{network.name}{tag}").save(out / f"contact_sheet_{network.name}.png")
        folder = out / "images" / network.name
        folder.mkdir(parents=True, exist_ok=True)
        for variant in variants:
            for viz in shown[variant.name]:
                to_pil(variant.scored_image(viz)).save(folder / f"{variant.name}_unit{viz.unit}_seed{viz.seed}.png")
    run = {
        "command": "evaluate",
        "networks": {n.name: n.weights for n in networks},
        "random_weights": random_networks + list(not_scored),
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
        "fid": {"model": fid_model, "weights": fid_network.weights if fid_network else not_scored["fid"],
                "resize": FID_RESIZE, "crop": FID_CROP},
        "transfer_classifiers": {column: transfer[column].weights if column in transfer else not_scored[
            "transferability"] for column in classifiers},
        "runtime": runtime_provenance(device, DTYPES[dtype]),
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "torchmetrics": torchmetrics.__version__},
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    (out / "run.json").write_text(json.dumps(run, indent=2))
    click.echo(f"wrote scores.csv, summary.csv, tables.md, {len(networks)} contact sheet(s) and run.json to {out}")
