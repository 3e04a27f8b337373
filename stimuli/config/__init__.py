"""study.toml: the one file a stimulus build is made from.

`load_config(path)` parses and validates it before any work starts; every
error is a `ConfigError` whose one-line message names the offending key
(e.g. ``query.top_k: must be >= query.per_unit (10), got 4``). The commented
reference is ``examples/study.toml``.

Settings split in two kinds. *Content* settings decide what the bundle holds
(units, seeds, steps, occluder...): they enter `StudyConfig.fingerprint()`,
so a resumed build refuses a changed config. *Execution* settings (batch
sizes, loader workers) only change speed: they may change between runs.

Modules: ``settings`` (the dataclasses and their defaults; torch-free on import),
``table`` (typed TOML tables naming their keys), ``parse`` (validation, `load_config`).
"""
from .parse import load_config, parse_config, sample_units
from .settings import (
    AnalysisConfig, IMAGENET_CLASSES, SKIMAGE_POOL, CatchConfig, ConditionConfig, ConfigError, MethodConfig, NetworkConfig, PoolConfig,
    PracticeConfig, QueryConfig, ReferencesConfig, StimuliError, StudyConfig,
)

__all__ = ["AnalysisConfig", "IMAGENET_CLASSES", "SKIMAGE_POOL", "CatchConfig", "ConditionConfig", "ConfigError", "MethodConfig", "NetworkConfig",
           "PoolConfig", "PracticeConfig", "QueryConfig", "ReferencesConfig", "StimuliError", "StudyConfig",
           "load_config", "parse_config", "sample_units"]
