"""Validation of a manifest: a tiny typed reader that knows the path of every value,
then the cross-field rules; every failure is a ManifestError naming the field."""
from __future__ import annotations

import math
import re
import struct
from typing import Any

from study_protocol.study import CONDITION_NAME_LENGTH, PAPER_CONDITIONS

from .schema import (IMAGE_ID_PATTERN, KIND_FIELDS, NAME_PATTERN, PNG_SIGNATURE, SCHEMA_NAME, SCHEMA_VERSION,
                     ConditionMethod, ImageInfo, Manifest, ManifestError, Network, Occluder, Protocol, QueryPair,
                     ReferenceSet, Unit)

NATURAL_METHOD = "natural"  # maco.methods' built-in whose references carry activations and pool files


def parse_manifest(data: Any) -> Manifest:
    """The validated manifest of parsed JSON `data`."""
    manifest = _parse(_Field(data, ""))
    _check_consistency(manifest)
    return manifest


class _Field:
    def __init__(self, value: Any, path: str):
        self.value = value
        self.path = path

    def fail(self, message: str) -> ManifestError:
        return ManifestError(f"{self.path or 'manifest'}: {message}")

    def _child_path(self, name: str | int) -> str:
        if isinstance(name, int):
            return f"{self.path}[{name}]"
        return f"{self.path}.{name}" if self.path else name

    def obj(self, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail(f"must be an object, got {type(self.value).__name__}")
        if allowed is not None:
            unknown = sorted(set(self.value) - allowed)
            if unknown:
                raise _Field(None, self._child_path(unknown[0])).fail("unknown field")
        return self.value

    def get(self, name: str, default: Any = ...) -> "_Field":
        data = self.obj()
        if name not in data:
            if default is ...:
                raise _Field(None, self._child_path(name)).fail("missing")
            return _Field(default, self._child_path(name))
        return _Field(data[name], self._child_path(name))

    def items(self) -> list["_Field"]:
        if not isinstance(self.value, list):
            raise self.fail(f"must be a list, got {type(self.value).__name__}")
        return [_Field(v, self._child_path(i)) for i, v in enumerate(self.value)]

    def str(self, pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail("must be a non-empty string")
        if choices is not None and self.value not in choices:
            raise self.fail("must be " + " or ".join(f'"{c}"' for c in choices))
        if pattern is not None and not pattern.fullmatch(self.value):
            raise self.fail(f"{self.value!r} does not match {pattern.pattern}")
        return self.value

    def int(self, minimum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail("must be an integer")
        if minimum is not None and self.value < minimum:
            raise self.fail(f"must be >= {minimum}")
        return self.value

    def float(self, optional: bool = False) -> float | None:
        if optional and self.value is None:
            return None
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) \
                or not math.isfinite(self.value):
            raise self.fail("must be a finite number")
        return float(self.value)

    def image_id(self) -> str:
        return self.str(IMAGE_ID_PATTERN)


def _unique(fields: list[_Field], key: str, values: list[str]) -> None:
    seen: set[str] = set()
    for f, value in zip(fields, values):
        if value in seen:
            raise _Field(None, f"{f.path}.{key}").fail(f"duplicate {value!r}")
        seen.add(value)


def _parse_pair(f: _Field) -> QueryPair:
    f.obj({"id", "unit", "base_image", "image_a", "image_b", "correct", "activation_base",
           "activation_max", "activation_min", "occluder_a", "occluder_b", "note"})

    def occluder(name: str) -> Occluder:
        o = f.get(name)
        o.obj({"x", "y", "size"})
        return Occluder(o.get("x").int(0), o.get("y").int(0), o.get("size").int(1))

    is_catch = f.path.startswith("catch_trials")
    return QueryPair(
        id=f.get("id").str(NAME_PATTERN), unit=f.get("unit").str(),
        base_image=f.get("base_image").image_id(), image_a=f.get("image_a").image_id(),
        image_b=f.get("image_b").image_id(), correct=f.get("correct").str(choices=("a", "b")),
        activation_base=f.get("activation_base").float(),
        activation_max=f.get("activation_max").float(),
        activation_min=f.get("activation_min").float(optional=is_catch),
        occluder_a=occluder("occluder_a"), occluder_b=occluder("occluder_b"),
        note=f.get("note").str() if f.get("note", "").value != "" else "")


def _parse(root: _Field) -> Manifest:
    root.obj({"schema", "schema_version", "study", "networks", "units", "conditions",
              "references", "query_pairs", "practice_trials", "catch_trials", "protocol",
              "images", "provenance", "condition_methods", "analysis"})
    root.get("schema").str(choices=(SCHEMA_NAME,))
    version = root.get("schema_version").int()
    if version != SCHEMA_VERSION:
        raise root.get("schema_version").fail(
            f"unsupported version {version} (this code reads version {SCHEMA_VERSION})")

    networks = []
    net_fields = root.get("networks").items()
    for f in net_fields:
        f.obj({"key", "timm_name", "weights", "num_classes", "input_size"})
        networks.append(Network(f.get("key").str(NAME_PATTERN), f.get("timm_name").str(),
                                f.get("weights").str(), f.get("num_classes", 1000).int(1),
                                f.get("input_size", 224).int(1)))
    if not networks:
        raise root.get("networks").fail("must not be empty")
    _unique(net_fields, "key", [n.key for n in networks])

    units = []
    unit_fields = root.get("units").items()
    for f in unit_fields:
        f.obj({"key", "network", "class_index", "label"})
        units.append(Unit(f.get("key").str(), f.get("network").str(),
                          f.get("class_index").int(0), f.get("label").str()))
    _unique(unit_fields, "key", [u.key for u in units])

    cond_fields = root.get("conditions").items()
    conditions = [f.str(NAME_PATTERN) for f in cond_fields]
    for f, c in zip(cond_fields, conditions):
        if len(c) > CONDITION_NAME_LENGTH:
            raise f.fail(f"at most {CONDITION_NAME_LENGTH} characters")
    if not conditions:
        raise root.get("conditions").fail("must not be empty")
    seen_conditions: set[str] = set()
    for f, c in zip(cond_fields, conditions):
        if c in seen_conditions:
            raise f.fail(f"duplicate {c!r}")
        seen_conditions.add(c)

    methods_field = root.get("condition_methods", None)
    condition_methods = {}
    if methods_field.value is None:  # a bundle from before declared conditions: the paper's
        for f, c in zip(cond_fields, conditions):
            if c not in PAPER_CONDITIONS:
                raise f.fail(f"{c!r} is not one of the paper's conditions and condition_methods is missing")
    else:
        if sorted(methods_field.obj()) != sorted(conditions):
            raise methods_field.fail("must name exactly the conditions")
        for name in conditions:
            f = methods_field.get(name)
            f.obj({"method", "settings"})
            condition_methods[name] = ConditionMethod(f.get("method").str(), dict(f.get("settings", {}).obj()))

    analysis_field = root.get("analysis", {})
    analysis_field.obj({"reference_condition", "contrasts"})
    if analysis_field.get("reference_condition", conditions[0]).str() not in conditions:
        raise analysis_field.get("reference_condition").fail("not a condition of the study")
    for f in analysis_field.get("contrasts", []).items():
        f.str()

    references = []
    for f in root.get("references").items():
        f.obj({"network", "unit", "condition", "seeds", "images", "source_images", "activations", "pool_files"})
        source, activations, files = (f.get(k, None) for k in ("source_images", "activations", "pool_files"))
        references.append(ReferenceSet(
            network=f.get("network").str(), unit=f.get("unit").str(),
            condition=f.get("condition").str(),
            seeds=[s.int() for s in f.get("seeds").items()],
            images=[i.image_id() for i in f.get("images").items()],
            source_images=None if source.value is None else [i.image_id() for i in source.items()],
            activations=None if activations.value is None else [a.float() for a in activations.items()],
            pool_files=None if files.value is None else [p.str() for p in files.items()]))

    pairs = {name: [_parse_pair(f) for f in root.get(name).items()]
             for name in ("query_pairs", "practice_trials", "catch_trials")}

    p = root.get("protocol", {})
    p.obj({"main_trials_per_participant", "max_practice_rounds", "practice_trials_per_round"})
    main_n = p.get("main_trials_per_participant", None)
    per_round = p.get("practice_trials_per_round", None)
    protocol = Protocol(None if main_n.value is None else main_n.int(1),
                        p.get("max_practice_rounds", 3).int(1),
                        None if per_round.value is None else per_round.int(1))

    images = {}
    images_field = root.get("images")
    for image_id, info in images_field.obj().items():
        key_field = _Field(image_id, f"images.{image_id}")
        key_field.image_id()
        f = _Field(info, f"images.{image_id}")
        f.obj({"width", "height"})
        images[image_id] = ImageInfo(f.get("width").int(1), f.get("height").int(1))

    prov = root.get("provenance")
    prov.obj()
    prov.get("created_at").str()
    prov.get("config").obj()
    for name, value in prov.get("software").obj().items():
        _Field(value, f"provenance.software.{name}").str()

    return Manifest(
        study=root.get("study").str(NAME_PATTERN), networks=networks, units=units,
        conditions=conditions, condition_methods=condition_methods, analysis=dict(analysis_field.value),
        references=references, query_pairs=pairs["query_pairs"],
        practice_trials=pairs["practice_trials"], catch_trials=pairs["catch_trials"],
        images=images, protocol=protocol, provenance=prov.value, schema_version=version)


def _check_consistency(m: Manifest) -> None:
    networks = {n.key: n for n in m.networks}
    for i, u in enumerate(m.units):
        if u.network not in networks:
            raise ManifestError(f"units[{i}].network: unknown network {u.network!r}")
        if u.class_index >= networks[u.network].num_classes:
            raise ManifestError(f"units[{i}].class_index: {u.class_index} out of range for "
                                f"{u.network} ({networks[u.network].num_classes} classes)")
        if u.key != f"{u.network}:{u.class_index}":
            raise ManifestError(f"units[{i}].key: must be {u.network}:{u.class_index!s}, got {u.key!r}")
    units = {u.key: u for u in m.units}

    ref_sets: dict[tuple[str, str], ReferenceSet] = {}
    for i, ref in enumerate(m.references):
        where = f"references[{i}]"
        if ref.unit not in units:
            raise ManifestError(f"{where}.unit: unknown unit {ref.unit!r}")
        if ref.network != units[ref.unit].network:
            raise ManifestError(f"{where}.network: unit {ref.unit} belongs to "
                                f"{units[ref.unit].network}, not {ref.network!r}")
        if ref.condition not in m.conditions:
            raise ManifestError(f"{where}.condition: {ref.condition!r} is not a study condition")
        if not m.shows_references(ref.condition):
            raise ManifestError(f"{where}.condition: {ref.condition!r} has no references")
        if (ref.unit, ref.condition) in ref_sets:
            raise ManifestError(f"{where}: duplicate reference set for {ref.unit} / {ref.condition}")
        if not ref.images:
            raise ManifestError(f"{where}.images: must not be empty")
        method = m.condition_method(ref.condition)
        natural = method.method == NATURAL_METHOD
        if len(ref.seeds) != (0 if natural else len(ref.images)):
            raise ManifestError(f"{where}.seeds: {len(ref.seeds)} seeds for {len(ref.images)} images "
                                "(natural exemplars have none)")
        for name in ("activations", "pool_files"):
            values = getattr(ref, name)
            if (values is not None) != natural or (values is not None and len(values) != len(ref.images)):
                raise ManifestError(f"{where}.{name}: one per image for natural exemplars, and only there")
        if ref.activations is not None and ref.activations != sorted(ref.activations, reverse=True):
            raise ManifestError(f"{where}.activations: natural exemplars come most activating first")
        if (ref.source_images is not None) != bool(method.settings.get("mask")):
            raise ManifestError(f"{where}.source_images: required for a masked condition and only there")
        if ref.source_images is not None and len(ref.source_images) != len(ref.images):
            raise ManifestError(f"{where}.source_images: one per image")
        ref_sets[(ref.unit, ref.condition)] = ref
    for i, ref in enumerate(m.references):
        # a masked condition and an unmasked one of the same method and settings show the same images
        method = m.condition_method(ref.condition)
        unmasked = ConditionMethod(method.method, {k: v for k, v in method.settings.items() if k != "mask"})
        for other in m.conditions:
            plain = ref_sets.get((ref.unit, other))
            if ref.source_images is not None and plain is not None and m.condition_method(other) == unmasked \
                    and ref.source_images != plain.images:
                raise ManifestError(f"references[{i}].source_images: must equal the {other} images of "
                                    f"{ref.unit} ({other} and {ref.condition} show the same images)")

    ids: set[str] = set()
    for name in KIND_FIELDS.values():
        for i, pair in enumerate(getattr(m, name)):
            where = f"{name}[{i}]"
            if pair.id in ids:
                raise ManifestError(f"{where}.id: duplicate {pair.id!r}")
            ids.add(pair.id)
            if pair.unit not in units:
                raise ManifestError(f"{where}.unit: unknown unit {pair.unit!r}")
            if len({pair.base_image, pair.image_a, pair.image_b}) != 3:
                raise ManifestError(f"{where}: base_image, image_a and image_b must differ")
            if pair.activation_min is not None and pair.activation_max < pair.activation_min:
                raise ManifestError(f"{where}.activation_max: smaller than activation_min")
            for condition in m.conditions:
                if m.shows_references(condition) and (pair.unit, condition) not in ref_sets:
                    raise ManifestError(f"{where}.unit: {pair.unit} has no {condition} references")
            base = m.images.get(pair.base_image)
            for side in ("a", "b"):
                occ: Occluder = getattr(pair, f"occluder_{side}")
                if base is not None and (occ.x + occ.size > base.width or occ.y + occ.size > base.height):
                    raise ManifestError(f"{where}.occluder_{side}: outside the "
                                        f"{base.width}x{base.height} base image")
    if not m.query_pairs:
        raise ManifestError("query_pairs: must not be empty")
    _check_practice_rounds(m)
    main_per_participant = min(m.protocol.main_trials_per_participant or len(m.query_pairs), len(m.query_pairs))
    if len(m.catch_trials) > main_per_participant:
        # the server puts each catch trial right after a main trial of its own (study_server.plan)
        raise ManifestError(f"catch_trials: {len(m.catch_trials)} catch trials but {main_per_participant} main "
                            "trials per participant: a catch trial is never the first trial nor follows "
                            "another, so there can be no more catch than main trials")
    _check_no_image_shared_between_kinds(m)

    referenced = m.referenced_images()
    missing = sorted(referenced - set(m.images))
    if missing:
        raise ManifestError(f"images: referenced image {missing[0]} is not listed")


def _check_practice_rounds(m: Manifest) -> None:
    """Fresh pictures in every practice round: the rounds fill practice_trials exactly and share no image."""
    per_round, rounds = m.protocol.practice_trials_per_round, m.protocol.max_practice_rounds
    if per_round is None:
        return
    if len(m.practice_trials) != per_round * rounds:
        raise ManifestError(f"practice_trials: {len(m.practice_trials)} pairs, but protocol asks for "
                            f"{rounds} rounds of {per_round} (practice_trials_per_round x max_practice_rounds)")
    round_of: dict[str, int] = {}
    for r in range(1, rounds + 1):
        for pair in m.protocol.practice_round(m.practice_trials, r):
            for image in (pair.base_image, pair.image_a, pair.image_b):
                if round_of.setdefault(image, r) != r:
                    raise ManifestError(f"practice_trials: {pair.id} (round {r}) shows image {image[:12]}, "
                                        f"which round {round_of[image]} shows too: each round needs new pictures")


def _check_no_image_shared_between_kinds(m: Manifest) -> None:
    """A query image (base, a or b) in trials of two kinds would let practice feedback answer a
    catch or main trial: the participant sees the same picture again and remembers its side."""
    kind_of: dict[str, tuple[str, str]] = {}  # image -> (kind, pair id) of its first trial
    for kind, pair in m.all_query_pairs():
        for image in (pair.base_image, pair.image_a, pair.image_b):
            first_kind, first_pair = kind_of.setdefault(image, (kind, pair.id))
            if first_kind != kind:
                raise ManifestError(f"{KIND_FIELDS[kind]}: {pair.id} shows image {image[:12]}, which "
                                    f"{first_kind} trial {first_pair} shows too (no image may be shared "
                                    "between practice, main and catch trials)")


# ---------------------------------------------------------------------------
# reading and writing bundles
def png_size(data: bytes) -> ImageInfo:
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ManifestError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return ImageInfo(width, height)


