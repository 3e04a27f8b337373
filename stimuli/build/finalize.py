"""Finalize: the manifest from every recorded piece, its provenance, and `stimuli check`."""
from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import manifest as mf
from ..config import StudyConfig
from ..models import StudyModel
from ..natural import natural_exemplars
from ..pool import Pool, TopK, load_image
from ..quality import summarize
from .plan import Piece
from .store import PieceStore
from .trials import check_copies, make_trials

SOFTWARE = ("maco-study", "torch", "timm", "numpy", "pillow", "scikit-image")  # versions in the provenance


def finalize(store: PieceStore, config: StudyConfig, models: dict[str, StudyModel], pool: Pool,
             topk: dict[str, TopK], pieces: dict[str, list[Piece]]) -> Path:
    """Write ``manifest.json`` (returned) once every piece is recorded."""
    queries = {(p.network, p.unit, p.rank): store.read(p) for p in pieces["queries"]}
    main, practice, catch = make_trials(store.out, config, models, queries)
    natural = natural_references(store, config, models, pool, topk, {q["pool_index"] for q in queries.values()})
    references = reference_sets(store, config, pieces["references"], natural)
    manifest = mf.Manifest(
        study=config.name, networks=networks(config, models), units=units(config, models),
        conditions=config.condition_names, references=references,
        condition_methods={c.name: mf.ConditionMethod(c.method, dict(c.settings)) for c in config.conditions},
        analysis=config.analysis.declared(),
        query_pairs=main, practice_trials=practice, catch_trials=catch,
        protocol=mf.Protocol(config.main_trials_per_participant, config.practice.max_rounds,
                             config.practice.trials or None),
        provenance=provenance(store, config, models, pool, topk, pieces["references"]))
    path = mf.write_manifest(store.out, manifest)
    for stale in (store.out / mf.IMAGES_DIR).glob(".*.tmp"):  # left by a killed build
        stale.unlink(missing_ok=True)
    return path


def networks(config: StudyConfig, models: dict[str, StudyModel]) -> list[mf.Network]:
    from maco.models import resolve_name

    return [mf.Network(n.key, resolve_name(n.model), models[n.key].weights,
                       models[n.key].num_classes, models[n.key].input_size)
            for n in config.networks]


def units(config: StudyConfig, models: dict[str, StudyModel]) -> list[mf.Unit]:
    return [mf.Unit(f"{n.key}:{u}", n.key, u, class_label(u, models[n.key].num_classes,
                                                          models[n.key].model.metadata.get("classes")))
            for n in config.networks for u in n.units]


def class_label(index: int, num_classes: int, names: str | None = None) -> str:
    """ImageNet's name of the class, the name a checkpoint gives it (``names``: a JSON list), else ``class i``."""
    if names is not None:
        return json.loads(names)[index]
    if num_classes != 1000:
        return f"class {index}"
    from timm.data import ImageNetInfo

    return ImageNetInfo().index_to_description(index)


def natural_references(store: PieceStore, config: StudyConfig, models: dict[str, StudyModel], pool: Pool,
                       topk: dict[str, TopK], excluded: set[int]) -> dict[tuple[str, int], mf.ReferenceSet]:
    """(network, unit) -> the natural condition's set (every natural condition shows the same photos)."""
    sets: dict[tuple[str, int], mf.ReferenceSet] = {}
    if not config.natural_exemplars:
        return sets
    for n in config.networks:
        chosen = natural_exemplars(topk[n.key], n.key, n.units, excluded, config.references.per_trial)
        for u, exemplars in chosen.items():
            images = [store.add_image(load_image(pool.path(i), models[n.key].preprocessing)) for i, _ in exemplars]
            sets[(n.key, u)] = mf.ReferenceSet(n.key, f"{n.key}:{u}", "", [], images,
                                               activations=[a for _, a in exemplars],
                                               pool_files=[pool.files[i] for i, _ in exemplars])
    return sets


def reference_sets(store: PieceStore, config: StudyConfig, pieces: list[Piece],
                   natural: dict[tuple[str, int], mf.ReferenceSet]) -> list[mf.ReferenceSet]:
    images: dict[tuple[str, int, str], list[tuple[int, str, str | None]]] = {}
    for piece in pieces:
        for unit, entry in store.read(piece)["images"].items():
            images.setdefault((piece.network, int(unit), piece.method), []).append(
                (piece.seed, entry["image"], entry.get("masked")))
    sets = []
    for n in config.networks:
        for u in n.units:
            for condition in config.conditions:
                if condition.kind == "dataset":
                    sets.append(dataclasses.replace(natural[(n.key, u)], condition=condition.name))
                if condition.run is None:
                    continue
                runs = sorted(images[(n.key, u, condition.run)])
                seeds = [seed for seed, _, _ in runs]
                if condition.mask:
                    sets.append(mf.ReferenceSet(n.key, f"{n.key}:{u}", condition.name, seeds,
                                                [m for _, _, m in runs], [i for _, i, _ in runs]))
                else:
                    sets.append(mf.ReferenceSet(n.key, f"{n.key}:{u}", condition.name, seeds,
                                                [i for _, i, _ in runs]))
    return sets


def provenance(store: PieceStore, config: StudyConfig, models: dict[str, StudyModel], pool: Pool, topk: dict[str, TopK],
               reference_pieces: list[Piece]) -> dict[str, Any]:
    software = {}
    for package in SOFTWARE:
        try:
            software[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    pieces = [(p, store.read(p)) for p in reference_pieces]
    spectra = sorted({r["spectrum_source"] for p, r in pieces if r.get("spectrum_source")})
    quality: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for piece, record in pieces:
        for unit, entry in record.get("quality", {}).items():  # absent in pieces built before the gate
            quality.setdefault((piece.network, int(unit), piece.method), []).append(entry)
    return {
        # networks trained on a task of their own (the demo's): what their checkpoint says about it
        "network_training": {key: model.model.metadata for key, model in models.items() if model.model.metadata},
        "maco_algorithms": sorted({r["algorithm"] for p, r in pieces
                                   if config.reference_runs[p.method].method == "maco" and r.get("algorithm")}),
        "quality": summarize(quality, {n.key: n.units for n in config.networks},
                             {c.name: c.run for c in config.conditions if c.run is not None}),
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": config.content(), "config_fingerprint": config.fingerprint(),
        "config_toml": config.source_text,
        "software": software, "spectrum_sources": spectra, "runtime": store.runtimes(),
        "pool": {"source": config.pool.source, "images": len(pool.files),
                 "unreadable": {k: len(t.unreadable) for k, t in topk.items()}},
    }


def check_bundle(bundle: str | Path) -> mf.Manifest:
    """Everything `stimuli check` verifies; raises ManifestError naming the problem."""
    manifest = mf.load_manifest(bundle, verify_hashes=True)
    have = {(r.unit, r.condition) for r in manifest.references}
    for unit in manifest.units:
        for condition in manifest.conditions:
            if manifest.shows_references(condition) and (unit.key, condition) not in have:
                raise mf.ManifestError(f"references: unit {unit.key} has no {condition} references")
    check_copies(Path(bundle), manifest)
    return manifest
