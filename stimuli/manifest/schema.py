"""The bundle manifest's schema: its constants and typed records (see the package docstring)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from study_protocol.study import NO_REFERENCES_METHOD, PAPER_CONDITIONS

SCHEMA_NAME = "maco-study-bundle"
SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
IMAGES_DIR = "images"
IMAGE_ID_PATTERN = re.compile(r"[0-9a-f]{64}")  # always fullmatch: "$" would let a trailing newline in
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KIND_FIELDS = {"practice": "practice_trials", "main": "query_pairs", "catch": "catch_trials"}  # trial kind -> field


class ManifestError(ValueError):
    """A bundle that does not follow the schema; the message names the field."""


@dataclass(frozen=True)
class Network:
    key: str
    timm_name: str
    weights: str  # a description; exactly "random" for untrained weights
    num_classes: int = 1000
    input_size: int = 224


@dataclass(frozen=True)
class Unit:
    key: str  # "<network>:<class_index>", unique across networks
    network: str
    class_index: int
    label: str


@dataclass(frozen=True)
class ConditionMethod:
    """How a condition's references are made: a method of maco.methods' registry and the settings
    the study config declared for it (``mask``: shown through the method's masks)."""
    method: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceSet:
    network: str
    unit: str
    condition: str
    seeds: list[int]  # one per image; [] for natural exemplars (pool photos, not seeded runs)
    images: list[str]
    # masked conditions only (the paper's maco_mask): the unmasked images these renderings come from
    source_images: list[str] | None = None
    # natural exemplars only: the unit's activation on each photo (descending) and its pool file
    activations: list[float] | None = None
    pool_files: list[str] | None = None


@dataclass(frozen=True)
class Occluder:
    x: int  # left, in pixels of the base image
    y: int  # top
    size: int  # side of the square


@dataclass(frozen=True)
class QueryPair:
    id: str
    unit: str
    base_image: str
    image_a: str
    image_b: str
    correct: str  # "a" or "b": which occluded image the unit favours
    activation_base: float
    activation_max: float
    activation_min: float | None
    occluder_a: Occluder
    occluder_b: Occluder
    note: str = ""

    @property
    def correct_image(self) -> str:
        return self.image_a if self.correct == "a" else self.image_b

    @property
    def wrong_image(self) -> str:
        return self.image_b if self.correct == "a" else self.image_a


@dataclass(frozen=True)
class Protocol:
    main_trials_per_participant: int | None = None  # None: every query pair
    max_practice_rounds: int = 3
    # practice_trials holds max_practice_rounds rounds of this many pairs, round r the r-th slice:
    # each round shows new pictures. None (older bundles): every round shows every practice pair.
    practice_trials_per_round: int | None = None

    def practice_round(self, practice_trials: list[QueryPair], practice_round: int) -> list[QueryPair]:
        """The practice pairs of round `practice_round` (1-based)."""
        per_round = self.practice_trials_per_round
        if per_round is None:
            return list(practice_trials)
        return practice_trials[(practice_round - 1) * per_round: practice_round * per_round]


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int


@dataclass
class Manifest:
    study: str
    networks: list[Network]
    units: list[Unit]
    conditions: list[str]
    references: list[ReferenceSet]
    query_pairs: list[QueryPair]
    practice_trials: list[QueryPair]
    catch_trials: list[QueryPair]
    images: dict[str, ImageInfo] = field(default_factory=dict)
    # condition -> its method; bundles made before conditions were declared hold the paper's
    condition_methods: dict[str, ConditionMethod] = field(default_factory=dict)
    # the study config's [analysis] (reference_condition, contrasts); {}: the analysis's defaults
    analysis: dict[str, Any] = field(default_factory=dict)
    protocol: Protocol = field(default_factory=Protocol)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # -- lookups used by the server -------------------------------------
    def network(self, key: str) -> Network:
        return next(n for n in self.networks if n.key == key)

    def unit(self, key: str) -> Unit:
        return next(u for u in self.units if u.key == key)

    def condition_method(self, condition: str) -> ConditionMethod:
        if condition in self.condition_methods:
            return self.condition_methods[condition]
        method, settings = PAPER_CONDITIONS[condition]  # a bundle from before declared conditions
        return ConditionMethod(method, dict(settings))

    def shows_references(self, condition: str) -> bool:
        return self.condition_method(condition).method != NO_REFERENCES_METHOD

    def reference_images(self, unit: str, condition: str) -> list[str]:
        """The images shown in the reference grid; [] for `none`."""
        for ref in self.references:
            if ref.unit == unit and ref.condition == condition:
                return list(ref.images)
        return []

    def all_query_pairs(self) -> Iterator[tuple[str, QueryPair]]:
        """(trial kind, pair) for every pair: practice, main, catch."""
        for kind, pairs in (("practice", self.practice_trials), ("main", self.query_pairs),
                            ("catch", self.catch_trials)):
            for pair in pairs:
                yield kind, pair

    def referenced_images(self) -> set[str]:
        ids = {i for ref in self.references for i in ref.images + (ref.source_images or [])}
        for _, pair in self.all_query_pairs():
            ids.update((pair.base_image, pair.image_a, pair.image_b))
        return ids

    # -- (de)serialisation ----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data = {"schema": SCHEMA_NAME, **data}
        for ref in data["references"]:
            for optional in ("source_images", "activations", "pool_files"):
                if ref[optional] is None:
                    del ref[optional]
        for optional in ("condition_methods", "analysis"):  # older bundles keep their fingerprint
            if not data[optional]:
                del data[optional]
        if data["protocol"]["practice_trials_per_round"] is None:  # older bundles keep their fingerprint
            del data["protocol"]["practice_trials_per_round"]
        return data

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: equal bundles have equal fingerprints."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
