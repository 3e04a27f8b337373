"""The study config's settings: one frozen dataclass per table of study.toml, holding its defaults.

Content settings enter `StudyConfig.fingerprint()`; execution settings (marked) only change speed.
MACO's and Olah's defaults have their one home in ``maco.optimize``'s signatures; that module needs
torch, so it is imported only when a `ReferencesConfig` is made (reading a config), never on import.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

IMAGENET_CLASSES = 1000
SKIMAGE_POOL = "skimage"  # the offline pool: scikit-image's bundled photos


class StimuliError(Exception):
    """Bad input to the generator; the message is one line naming the problem."""


class ConfigError(StimuliError):
    """A study.toml that cannot be used; the message names the key."""


@dataclass(frozen=True)
class NetworkConfig:
    key: str  # the study's name for it (bundle, export): "resnet50"
    model: str  # timm name: "resnet50.a1_in1k"
    weights: str  # "pretrained", "random" or a local checkpoint path
    units: tuple[int, ...]  # ImageNet class indices (explicit or the seeded sample)
    input_size: int | None = None  # None: the model's own; set only for tests/demos (CNNs)


@dataclass(frozen=True)
class MethodConfig:
    steps: int
    size: int
    crops: int | None = None  # MACO only: random crops per step, 0: the whole image (Olah uses Lucid's transforms)


def maco_method_defaults() -> MethodConfig:
    """maco's own defaults (their one home is maco.optimize.maco's signature)."""
    from maco.optimize import method_defaults

    return MethodConfig(**{k: method_defaults("maco")[k] for k in ("steps", "size", "crops")})


def olah_method_defaults() -> MethodConfig:
    """Olah's steps from maco.optimize.olah's signature, at the paper's 224 px."""
    from maco.optimize import method_defaults

    return MethodConfig(steps=method_defaults("olah")["steps"], size=224)


@dataclass(frozen=True)
class ConditionConfig:
    """One between-subject condition: ``[conditions.<name>]`` (docs/stimuli.md, "Conditions")."""
    name: str
    method: str  # a name of maco.methods' registry (built in or an installed plugin)
    kind: str  # the method's: "optimized", "dataset" (natural) or "none"
    settings: tuple[tuple[str, Any], ...] = ()  # as declared, sorted; `mask` is the study's, the rest the method's

    @property
    def mask(self) -> bool:
        """Whether the references are shown through the method's masks (MACO's transparency maps)."""
        return bool(dict(self.settings).get("mask", False))

    @property
    def method_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings if k != "mask"}

    @property
    def run(self) -> str | None:
        """The reference runs it shows, by name: conditions differing only in `mask` share them."""
        if self.kind != "optimized":
            return None
        if not self.method_settings:
            return self.method
        digest = hashlib.sha256(json.dumps(self.method_settings, sort_keys=True).encode()).hexdigest()
        return f"{self.method}-{digest[:8]}"


@dataclass(frozen=True)
class ReferencesConfig:
    per_trial: int = 9
    first_seed: int = 0  # reference j of every unit uses seed first_seed + j
    # units optimised together in one run; content, not only speed: a run draws every
    # unit's augmentations from one seeded generator
    units_per_run: int = 8
    maco: MethodConfig = field(default_factory=maco_method_defaults)
    olah: MethodConfig = field(default_factory=olah_method_defaults)
    spectrum: str | None = None  # MACO's: a .npy path or "analytic"; None: the published one (stops when missing)


@dataclass(frozen=True)
class PoolConfig:
    source: str  # a folder (flat or one sub-folder per class) or "skimage"
    chunk_size: int = 1024  # images per resumable/shardable piece of the pool pass
    batch_size: int = 64  # execution
    workers: int = 0  # DataLoader workers decoding images (execution)


@dataclass(frozen=True)
class QueryConfig:
    per_unit: int = 10  # main query pairs per unit: its top per_unit images
    top_k: int = 12  # images kept per unit; the ones past per_unit feed practice and catch
    occluder_fraction: float = 0.4  # occluder side / image side (90 px at 224)
    stride: int = 2  # px between occluder positions
    batch_size: int = 256  # occluded images per forward pass (execution)


@dataclass(frozen=True)
class PracticeConfig:
    trials: int = 3  # per round: every round shows new pictures (the bundle holds trials x max_rounds)
    max_rounds: int = 3


@dataclass(frozen=True)
class CatchConfig:
    trials: int = 6


@dataclass(frozen=True)
class AnalysisConfig:
    """[analysis]: what the analysis of this study tests, carried by the bundle and the export.

    Empty: the reference is the first condition and the contrasts the analysis's default
    (the paper's named contrasts its conditions support, and each other condition vs the reference)."""
    reference_condition: str | None = None
    contrasts: tuple[str, ...] = ()  # `maco-study analyze --contrast` declarations

    def declared(self) -> dict[str, Any]:
        return {k: v for k, v in (("reference_condition", self.reference_condition),
                                  ("contrasts", list(self.contrasts))) if v}


@dataclass(frozen=True)
class StudyConfig:
    name: str
    seed: int
    conditions: tuple[ConditionConfig, ...]
    networks: tuple[NetworkConfig, ...]
    pool: PoolConfig
    references: ReferencesConfig = field(default_factory=ReferencesConfig)
    query: QueryConfig = QueryConfig()
    practice: PracticeConfig = PracticeConfig()
    catch: CatchConfig = CatchConfig()
    main_trials_per_participant: int | None = None
    analysis: AnalysisConfig = AnalysisConfig()
    source_text: str = field(default="", compare=False, repr=False)

    @property
    def condition_names(self) -> list[str]:
        return [c.name for c in self.conditions]

    @property
    def reference_runs(self) -> dict[str, ConditionConfig]:
        """Optimisations to run, by run name (each with a condition showing it): `maco` serves both
        the paper's maco and maco_mask."""
        runs: dict[str, ConditionConfig] = {}
        for condition in self.conditions:
            if condition.run is not None:
                runs.setdefault(condition.run, condition)
        return runs

    def run_settings(self, run: str) -> dict[str, Any]:
        """A run's method settings as declared over the study's [references.<method>] table (maco, olah)."""
        condition = self.reference_runs[run]
        base = getattr(self.references, condition.method, None)
        base = {k: v for k, v in dataclasses.asdict(base).items() if v is not None} if base else {}
        return {**base, **condition.method_settings}

    @property
    def natural_exemplars(self) -> bool:
        return any(c.kind == "dataset" for c in self.conditions)

    @property
    def pool_top_k(self) -> int:
        """Images kept per unit by the pool pass: the query images, and with a natural condition
        enough more that per_trial remain once every query photo of the study is excluded."""
        if not self.natural_exemplars:
            return self.query.top_k
        units = sum(len(n.units) for n in self.networks)
        return self.query.top_k * units + self.references.per_trial

    @property
    def spare_per_unit(self) -> int:
        return self.query.top_k - self.query.per_unit

    def content(self) -> dict[str, Any]:
        """The settings that decide the bundle's content (see the package doc)."""
        data = dataclasses.asdict(self)
        del data["source_text"]
        data["pool"] = {"source": self.pool.source, "chunk_size": self.pool.chunk_size}
        data["query"] = {k: v for k, v in data["query"].items() if k != "batch_size"}
        return data

    def fingerprint(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
