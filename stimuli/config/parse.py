"""Reading study.toml: parse, validate, and apply the defaults of `settings`.

Every error is a `ConfigError` whose one-line message names the offending key.
"""
from __future__ import annotations

import tomllib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from study_protocol.study import CONDITION_NAME_LENGTH, PAPER_CONDITIONS

from ..manifest import NAME_PATTERN
from .settings import (
    AnalysisConfig, IMAGENET_CLASSES, SKIMAGE_POOL, CatchConfig, ConditionConfig, ConfigError, MethodConfig, NetworkConfig, PoolConfig,
    PracticeConfig, QueryConfig, ReferencesConfig, StudyConfig,
)
from .table import Table

def _name(table: Table, key: str) -> str:
    """A name the bundle uses in ids: letters, digits, . _ - (the manifest's rule)."""
    value = table.str(key)
    if not NAME_PATTERN.fullmatch(value):
        raise ConfigError(f"{table.key(key)}: {value!r} must be letters, digits, '.', '_' or '-'")
    return value


def _method(parent: Table, name: str, default: MethodConfig) -> MethodConfig:
    t = parent.table(name)
    method = MethodConfig(steps=t.int("steps", default.steps, minimum=1),
                          size=t.int("size", default.size, minimum=8),
                          crops=None if default.crops is None else t.int("crops", default.crops, minimum=0))
    t.reject_unknown()
    return method


def _condition(t: Table, name: str) -> ConditionConfig:
    """One [conditions.<name>] table: its method from the registry, that method's settings checked."""
    from maco.methods import MethodError, check_settings, get_method  # lazily: maco needs torch

    if not NAME_PATTERN.fullmatch(name) or len(name) > CONDITION_NAME_LENGTH:
        raise ConfigError(f"{t.path}: a condition name is letters, digits, '.', '_' or '-', at most "
                          f"{CONDITION_NAME_LENGTH} characters")
    try:
        method = get_method(t.str("method"))
        settings = {k: v for k, v in t.data.items() if k not in ("method", "mask")}
        check_settings(method, settings)
    except MethodError as exc:
        raise ConfigError(f"{t.path}: {exc}") from None
    mask = t.raw("mask", False)
    if not isinstance(mask, bool) or (mask and method.kind != "optimized"):
        raise ConfigError(f"{t.key('mask')}: true or false, and only for a method that makes images")
    if method.name == "maco" and "size" in settings:
        raise ConfigError(f"{t.key('size')}: MACO's size is references.maco.size (its spectrum is made for it)")
    declared = {**settings, **({"mask": True} if mask else {})}
    return ConditionConfig(name, method.name, method.kind, tuple(sorted(declared.items())))


def _analysis(t: Table, conditions: list[str]) -> AnalysisConfig:
    """[analysis]: the reference condition and contrasts (checked against the data by the analysis)."""
    reference = t.raw("reference_condition", None)
    if reference is not None and t.str("reference_condition") not in conditions:
        raise ConfigError(f"{t.key('reference_condition')}: {reference!r} is not a declared condition "
                          f"({', '.join(conditions)})")
    contrasts = t.raw("contrasts", [])
    if not isinstance(contrasts, list) or not all(isinstance(c, str) and c.strip() for c in contrasts):
        raise ConfigError(f"{t.key('contrasts')}: a list of contrast declarations "
                          "(e.g. \"maco_vs_olah\", \"condition: natural vs maco\")")
    t.reject_unknown()
    return AnalysisConfig(reference, tuple(contrasts))


def _conditions(root: Table, study: Table) -> tuple[ConditionConfig, ...]:
    """The [conditions.<name>] tables, or (older configs) study.conditions naming the paper's, or the
    paper's four (study_protocol.study.PAPER_CONDITIONS)."""
    if root.has("conditions") and study.has("conditions"):
        raise ConfigError("study.conditions: give the conditions as [conditions.<name>] tables or this list, "
                          "not both")
    if root.has("conditions"):
        tables = root.table("conditions")
        if not tables.data:
            raise ConfigError("conditions: at least one [conditions.<name>] table is required")
        tables.used.update(tables.data)
        return tuple(_condition(tables.table(name), name) for name in tables.data)
    names = study.raw("conditions", list(PAPER_CONDITIONS))
    if not isinstance(names, list) or not names:
        raise ConfigError("study.conditions: must be a non-empty list")
    for c in names:
        if c not in PAPER_CONDITIONS:
            raise ConfigError(f"study.conditions: unknown condition {c!r} (this list names the paper's: "
                              f"{', '.join(PAPER_CONDITIONS)}; declare others as [conditions.<name>] tables)")
    if len(set(names)) != len(names):
        raise ConfigError(f"study.conditions: condition {next(c for c in names if names.count(c) > 1)!r} "
                          "named twice")
    data = {c: {"method": PAPER_CONDITIONS[c][0], **PAPER_CONDITIONS[c][1]} for c in names}
    return tuple(_condition(Table(data[c], f"conditions.{c}"), c) for c in names)


def sample_units(seed: int, network_key: str, count: int) -> tuple[int, ...]:
    """A seeded sample of class indices, reproducible per (seed, network), sorted."""
    rng = np.random.default_rng([seed, zlib.crc32(network_key.encode())])
    return tuple(sorted(int(i) for i in rng.choice(IMAGENET_CLASSES, size=count, replace=False)))


def _network(t: Table, seed: int, base_dir: Path) -> NetworkConfig:
    if t.has("units") == t.has("sample_units"):
        raise ConfigError(f"{t.path}: give exactly one of units (class indices) or sample_units (a count)")
    if t.has("units"):
        raw = t.raw("units")
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{t.key('units')}: must be a non-empty list of class indices")
        for index in raw:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < IMAGENET_CLASSES:
                raise ConfigError(f"{t.key('units')}: class index {index!r} out of range "
                                  f"0..{IMAGENET_CLASSES - 1}")
        if len(set(raw)) != len(raw):
            raise ConfigError(f"{t.key('units')}: duplicate class index")
        units = tuple(raw)
    else:
        count = t.int("sample_units", minimum=1)
        if count > IMAGENET_CLASSES:
            raise ConfigError(f"{t.key('sample_units')}: at most {IMAGENET_CLASSES}, got {count}")
        units = sample_units(seed, t.path.split(".", 1)[1], count)
    input_size = t.raw("input_size", None)
    if input_size is not None:
        input_size = t.int("input_size", minimum=16)
    if not NAME_PATTERN.fullmatch(t.path.split(".", 1)[1]):
        raise ConfigError(f"{t.path}: the network key must be letters, digits, '.', '_' or '-'")
    weights = t.str("weights", "pretrained")
    if weights not in ("pretrained", "random") and (base_dir / weights).exists():
        weights = str((base_dir / weights).resolve())  # a checkpoint or folder, relative to study.toml
    network = NetworkConfig(key=t.path.split(".", 1)[1], model=t.str("model"),
                            weights=weights, units=units,
                            input_size=input_size)
    t.reject_unknown()
    return network


def parse_config(data: dict[str, Any], base_dir: Path, source_text: str = "") -> StudyConfig:
    root = Table(data, "")
    study = root.table("study")
    name = _name(study, "name")
    seed = study.int("seed", 0)
    conditions = _conditions(root, study)
    main_trials = study.raw("main_trials_per_participant", None)
    if main_trials is not None:
        main_trials = study.int("main_trials_per_participant", minimum=1)
    study.reject_unknown()

    nets_table = root.table("networks")
    if not nets_table.data:
        raise ConfigError("networks: at least one [networks.<key>] table is required")
    networks = tuple(_network(nets_table.table(key), seed, base_dir) for key in nets_table.data)
    nets_table.used.update(nets_table.data)

    refs = root.table("references")
    from maco.spectra import ANALYTIC  # lazily, as the method defaults (settings.py): maco needs torch

    spectrum = refs.raw("spectrum", None)
    if spectrum is not None and refs.str("spectrum") != ANALYTIC:
        spectrum_path = base_dir / refs.str("spectrum")
        if not spectrum_path.is_file():
            raise ConfigError(f"references.spectrum: no file {spectrum_path}")
        spectrum = str(spectrum_path)
    defaults = ReferencesConfig()
    references = ReferencesConfig(
        per_trial=refs.int("per_trial", defaults.per_trial, minimum=1),
        first_seed=refs.int("first_seed", defaults.first_seed, minimum=0),
        units_per_run=refs.int("units_per_run", defaults.units_per_run, minimum=1),
        maco=_method(refs, "maco", defaults.maco), olah=_method(refs, "olah", defaults.olah),
        spectrum=spectrum)
    refs.reject_unknown()

    pool_t = root.table("pool")
    source = pool_t.str("source")
    if source != SKIMAGE_POOL:
        source_path = base_dir / source
        if not source_path.is_dir():
            raise ConfigError(f"pool.source: {source_path} is not a folder "
                              f"(or use \"{SKIMAGE_POOL}\" for the bundled photos)")
        source = str(source_path.resolve())
    pool = PoolConfig(source=source, chunk_size=pool_t.int("chunk_size", 1024, minimum=1),
                      batch_size=pool_t.int("batch_size", 64, minimum=1),
                      workers=pool_t.int("workers", 0, minimum=0))
    pool_t.reject_unknown()

    q = root.table("query")
    qd = QueryConfig()
    query = QueryConfig(per_unit=q.int("per_unit", qd.per_unit, minimum=1),
                        top_k=q.int("top_k", qd.top_k, minimum=1),
                        occluder_fraction=q.float("occluder_fraction", qd.occluder_fraction),
                        stride=q.int("stride", qd.stride, minimum=1),
                        batch_size=q.int("batch_size", qd.batch_size, minimum=1))
    if not 0 < query.occluder_fraction < 1:
        raise ConfigError(f"query.occluder_fraction: must be in (0, 1), got {query.occluder_fraction}")
    if query.top_k < query.per_unit:
        raise ConfigError(f"query.top_k: must be >= query.per_unit ({query.per_unit}), got {query.top_k}")
    q.reject_unknown()

    p = root.table("practice")
    practice = PracticeConfig(trials=p.int("trials", 3, minimum=0),
                              max_rounds=p.int("max_rounds", 3, minimum=1))
    p.reject_unknown()
    c = root.table("catch")
    catch = CatchConfig(trials=c.int("trials", 6, minimum=0))
    c.reject_unknown()
    analysis = _analysis(root.table("analysis"), [c.name for c in conditions])
    root.reject_unknown()

    config = StudyConfig(name=name, seed=seed, conditions=tuple(conditions), networks=networks,
                         pool=pool, references=references, query=query, practice=practice,
                         catch=catch, main_trials_per_participant=main_trials, analysis=analysis,
                         source_text=source_text)
    _check_trial_supply(config)
    return config


def _check_trial_supply(config: StudyConfig) -> None:
    """Practice and catch trials come from the spare images (ranks per_unit..top_k-1)."""
    units = sum(len(n.units) for n in config.networks)
    main = units * config.query.per_unit
    if config.main_trials_per_participant is not None and config.main_trials_per_participant > main:
        raise ConfigError(f"study.main_trials_per_participant: {config.main_trials_per_participant} is "
                          f"more than the {main} main query pairs ({units} units x query.per_unit)")
    spare = units * config.spare_per_unit
    needed = config.practice.trials * config.practice.max_rounds + config.catch.trials  # new pictures each round
    if needed > spare:
        raise ConfigError(
            f"query.top_k: practice.trials x practice.max_rounds + catch.trials = {needed} need as many spare "
            f"images, but top_k - per_unit = {config.spare_per_unit} per unit x {units} units gives {spare}")
    per_participant = config.main_trials_per_participant or main
    if config.catch.trials > per_participant:
        raise ConfigError(f"catch.trials: {config.catch.trials} catch trials but {per_participant} main trials "
                          "per participant: each catch trial follows a main trial of its own")
    if config.catch.trials and max(len(n.units) for n in config.networks) < 2:
        raise ConfigError("catch.trials: catch trials need a network with at least two units "
                          "(the distractor is an image of another unit)")


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, path.parent, text)
