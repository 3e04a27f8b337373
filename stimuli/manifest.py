"""The stimulus bundle: its manifest schema, writer and validating loader.

A bundle is a directory::

    BUNDLE/manifest.json
    BUNDLE/images/<sha256 of the PNG bytes>.png

This module is the only contract between the stimulus generator (which writes
bundles) and the study server (which reads them). It imports nothing heavy:
Pillow is imported lazily, only to encode images handed over as PIL images
and by the test-bundle helper.

Schema (``schema_version`` 1), all keys required unless marked optional::

    {
      "schema": "maco-study-bundle", "schema_version": 1,
      "study": "maco-2023",                       # study name, [A-Za-z0-9._-]
      "networks": [{"key": "resnet50", "timm_name": "resnet50.a1_in1k",
                    "weights": "pretrained (timm hub)" | "random" | ...,
                    "num_classes": 1000, "input_size": 224}],
      "units": [{"key": "resnet50:417", "network": "resnet50",
                 "class_index": 417, "label": "balloon"}],
      "conditions": ["olah", "maco_mask", "maco", "none"],
      "references": [{"network": "resnet50", "unit": "resnet50:417",
                      "condition": "maco", "seeds": [0, 1, ...],
                      "images": [<image id>, ...],
                      "source_images": [...] }],   # maco_mask only: the MACO images it masks
      "query_pairs": [<query pair>], "practice_trials": [<query pair>],
      "catch_trials": [<query pair>],
      "protocol": {"main_trials_per_participant": null | int,
                   "max_practice_rounds": 3},
      "images": {<image id>: {"width": 224, "height": 224}},
      "provenance": {"created_at": "2026-...Z", "config": {...},
                     "software": {"maco-study": "0.1.0", "torch": ...}, ...}
    }

    query pair = {"id": "q-resnet50-417-0", "unit": "resnet50:417",
                  "base_image": id, "image_a": id, "image_b": id,
                  "correct": "a" | "b",
                  "activation_base": float, "activation_max": float,
                  "activation_min": float,            # may be null in catch trials
                  "occluder_a": {"x": int, "y": int, "size": int},
                  "occluder_b": {"x": int, "y": int, "size": int},
                  "note": str}                         # optional

Rules checked on load: every id unique; every unit's network exists and its
key is ``<network>:<class_index>``; every non-``none`` condition has exactly
one reference set per unit used in any trial, ``none`` has none; a
``maco_mask`` set's ``source_images`` equal the ``maco`` set's images (same
MACO images, masked renderings); no query image (base, a, b) is shown by trials of two
kinds (practice, main, catch); ``activation_max >= activation_min`` for the
correct image being the argmax; occluders lie inside the base image; every
image referenced is listed in ``images``, every listed image exists on disk
(and, with ``verify_hashes=True``, hashes to its id).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

SCHEMA_NAME = "maco-study-bundle"
SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
IMAGES_DIR = "images"
KNOWN_CONDITIONS = ("olah", "maco_mask", "maco", "none")
CONDITIONS_WITHOUT_REFERENCES = ("none",)
_IMAGE_ID = re.compile(r"[0-9a-f]{64}")  # always fullmatch: "$" would let a trailing newline in
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KIND_FIELDS = {"practice": "practice_trials", "main": "query_pairs", "catch": "catch_trials"}  # trial kind -> field


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
class ReferenceSet:
    network: str
    unit: str
    condition: str
    seeds: list[int]
    images: list[str]
    # maco_mask only: the unmasked MACO images these renderings come from
    source_images: list[str] | None = None


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
    protocol: Protocol = field(default_factory=Protocol)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # -- lookups used by the server -------------------------------------
    def network(self, key: str) -> Network:
        return next(n for n in self.networks if n.key == key)

    def unit(self, key: str) -> Unit:
        return next(u for u in self.units if u.key == key)

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
            if ref["source_images"] is None:
                del ref["source_images"]
        return data

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: equal bundles have equal fingerprints."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Any) -> "Manifest":
        manifest = _parse(_Field(data, ""))
        _check_consistency(manifest)
        return manifest


# ---------------------------------------------------------------------------
# validation: a tiny typed reader that knows the path of every value
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
        return self.str(_IMAGE_ID)


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
        id=f.get("id").str(_NAME), unit=f.get("unit").str(),
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
              "images", "provenance"})
    root.get("schema").str(choices=(SCHEMA_NAME,))
    version = root.get("schema_version").int()
    if version != SCHEMA_VERSION:
        raise root.get("schema_version").fail(
            f"unsupported version {version} (this code reads version {SCHEMA_VERSION})")

    networks = []
    net_fields = root.get("networks").items()
    for f in net_fields:
        f.obj({"key", "timm_name", "weights", "num_classes", "input_size"})
        networks.append(Network(f.get("key").str(_NAME), f.get("timm_name").str(),
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
    conditions = [f.str(choices=KNOWN_CONDITIONS) for f in cond_fields]
    if not conditions:
        raise root.get("conditions").fail("must not be empty")
    seen_conditions: set[str] = set()
    for f, c in zip(cond_fields, conditions):
        if c in seen_conditions:
            raise f.fail(f"duplicate {c!r}")
        seen_conditions.add(c)

    references = []
    for f in root.get("references").items():
        f.obj({"network", "unit", "condition", "seeds", "images", "source_images"})
        source = f.get("source_images", None)
        references.append(ReferenceSet(
            network=f.get("network").str(), unit=f.get("unit").str(),
            condition=f.get("condition").str(choices=KNOWN_CONDITIONS),
            seeds=[s.int() for s in f.get("seeds").items()],
            images=[i.image_id() for i in f.get("images").items()],
            source_images=None if source.value is None else [i.image_id() for i in source.items()]))

    pairs = {name: [_parse_pair(f) for f in root.get(name).items()]
             for name in ("query_pairs", "practice_trials", "catch_trials")}

    p = root.get("protocol", {})
    p.obj({"main_trials_per_participant", "max_practice_rounds"})
    main_n = p.get("main_trials_per_participant", None)
    protocol = Protocol(None if main_n.value is None else main_n.int(1),
                        p.get("max_practice_rounds", 3).int(1))

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
        study=root.get("study").str(_NAME), networks=networks, units=units,
        conditions=conditions, references=references, query_pairs=pairs["query_pairs"],
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
        if ref.condition in CONDITIONS_WITHOUT_REFERENCES:
            raise ManifestError(f"{where}.condition: {ref.condition!r} has no references")
        if (ref.unit, ref.condition) in ref_sets:
            raise ManifestError(f"{where}: duplicate reference set for {ref.unit} / {ref.condition}")
        if not ref.images:
            raise ManifestError(f"{where}.images: must not be empty")
        if len(ref.seeds) != len(ref.images):
            raise ManifestError(f"{where}.seeds: {len(ref.seeds)} seeds for {len(ref.images)} images")
        if (ref.source_images is not None) != (ref.condition == "maco_mask"):
            raise ManifestError(f"{where}.source_images: required for maco_mask and only there")
        if ref.source_images is not None and len(ref.source_images) != len(ref.images):
            raise ManifestError(f"{where}.source_images: one per image")
        ref_sets[(ref.unit, ref.condition)] = ref
    for i, ref in enumerate(m.references):
        maco = ref_sets.get((ref.unit, "maco"))
        if ref.condition == "maco_mask" and maco is not None and ref.source_images != maco.images:
            raise ManifestError(f"references[{i}].source_images: must equal the maco images of "
                                f"{ref.unit} (maco and maco_mask show the same MACO images)")

    ids: set[str] = set()
    for name in _KIND_FIELDS.values():
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
                if condition not in CONDITIONS_WITHOUT_REFERENCES and (pair.unit, condition) not in ref_sets:
                    raise ManifestError(f"{where}.unit: {pair.unit} has no {condition} references")
            base = m.images.get(pair.base_image)
            for side in ("a", "b"):
                occ: Occluder = getattr(pair, f"occluder_{side}")
                if base is not None and (occ.x + occ.size > base.width or occ.y + occ.size > base.height):
                    raise ManifestError(f"{where}.occluder_{side}: outside the "
                                        f"{base.width}x{base.height} base image")
    if not m.query_pairs:
        raise ManifestError("query_pairs: must not be empty")
    _check_no_image_shared_between_kinds(m)

    referenced = m.referenced_images()
    missing = sorted(referenced - set(m.images))
    if missing:
        raise ManifestError(f"images: referenced image {missing[0]} is not listed")


def _check_no_image_shared_between_kinds(m: Manifest) -> None:
    """A query image (base, a or b) in trials of two kinds would let practice feedback answer a
    catch or main trial: the participant sees the same picture again and remembers its side."""
    kind_of: dict[str, tuple[str, str]] = {}  # image -> (kind, pair id) of its first trial
    for kind, pair in m.all_query_pairs():
        for image in (pair.base_image, pair.image_a, pair.image_b):
            first_kind, first_pair = kind_of.setdefault(image, (kind, pair.id))
            if first_kind != kind:
                raise ManifestError(f"{_KIND_FIELDS[kind]}: {pair.id} shows image {image[:12]}, which "
                                    f"{first_kind} trial {first_pair} shows too (no image may be shared "
                                    "between practice, main and catch trials)")


# ---------------------------------------------------------------------------
# reading and writing bundles
def _png_size(data: bytes) -> ImageInfo:
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ManifestError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return ImageInfo(width, height)


def image_path(bundle_dir: str | os.PathLike, image_id: str) -> Path:
    return Path(bundle_dir) / IMAGES_DIR / f"{image_id}.png"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + os.replace: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_image(bundle_dir: str | os.PathLike, image: Any) -> str:
    """Store a PNG (bytes, or a PIL image which is encoded as PNG) once; return its id.

    The id is the sha256 of the PNG bytes, so adding the same image twice is free.
    """
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    else:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    _png_size(data)
    image_id = hashlib.sha256(data).hexdigest()
    path = image_path(bundle_dir, image_id)
    if not path.exists():
        _atomic_write(path, data)
    return image_id


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Fill `manifest.images` from the image files, validate, and write atomically."""
    manifest.images = {}
    for image_id in sorted(manifest.referenced_images()):
        path = image_path(bundle_dir, image_id)
        if not path.is_file():
            raise ManifestError(f"images: {image_id} is referenced but {path} does not exist")
        with path.open("rb") as f:
            manifest.images[image_id] = _png_size(f.read(24))
    Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())))  # validate what will be read
    target = Path(bundle_dir) / MANIFEST_FILE
    _atomic_write(target, (json.dumps(manifest.to_dict(), indent=1) + "\n").encode())
    return target


def load_manifest(bundle_dir: str | os.PathLike, verify_hashes: bool = False) -> Manifest:
    """Read and validate a bundle; raise ManifestError naming the broken field.

    Every listed image must exist; `verify_hashes=True` also re-hashes them.
    """
    path = Path(bundle_dir) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest (is this a bundle directory?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    manifest = Manifest.from_dict(data)
    for image_id in manifest.images:
        file = image_path(bundle_dir, image_id)
        if not file.is_file():
            raise ManifestError(f"images.{image_id}: file {file} is missing")
        if verify_hashes and hashlib.sha256(file.read_bytes()).hexdigest() != image_id:
            raise ManifestError(f"images.{image_id}: file content does not match its hash")
    return manifest


# ---------------------------------------------------------------------------
# a tiny valid bundle with generated images, for tests (stimuli and server)
def build_test_bundle(
    bundle_dir: str | os.PathLike,
    study: str = "test-study",
    networks: tuple[str, ...] = ("vgg16", "resnet50"),
    units_per_network: int = 2,
    pairs_per_unit: int = 2,
    conditions: tuple[str, ...] = KNOWN_CONDITIONS,
    n_references: int = 9,
    n_practice: int = 2,
    n_catch: int = 2,
    image_size: int = 32,
    seed: int = 0,
) -> Manifest:
    """Write a small valid bundle of random-colour images and return its manifest."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)

    def random_image() -> Any:
        image = Image.new("RGB", (image_size, image_size),
                          tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = rng.randrange(image_size), rng.randrange(image_size)
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=tuple(rng.randrange(256) for _ in range(3)))
        return image

    occluder_size = max(1, int(image_size * 0.4))

    def make_pair(pair_id: str, unit: str) -> QueryPair:
        base = random_image()
        occluders = []
        images = []
        for _ in range(2):
            occ = Occluder(rng.randrange(image_size - occluder_size + 1),
                           rng.randrange(image_size - occluder_size + 1), occluder_size)
            occluded = base.copy()
            ImageDraw.Draw(occluded).rectangle(
                (occ.x, occ.y, occ.x + occ.size - 1, occ.y + occ.size - 1),
                fill=tuple(rng.randrange(256) for _ in range(3)))
            occluders.append(occ)
            images.append(add_image(bundle_dir, occluded))
        activation_max = rng.uniform(5, 10)
        correct = rng.choice("ab")
        if correct == "b":
            occluders.reverse()
            images.reverse()
        return QueryPair(pair_id, unit, add_image(bundle_dir, base), images[0], images[1], correct,
                         activation_base=activation_max - 1, activation_max=activation_max,
                         activation_min=rng.uniform(0, 4), occluder_a=occluders[0],
                         occluder_b=occluders[1])

    net_list = [Network(key, f"{key}.test", "random", 1000, image_size) for key in networks]
    units = [Unit(f"{n}:{c}", n, c, f"class {c}")
             for n in networks for c in rng.sample(range(1000), units_per_network)]
    references = []
    for unit in units:
        maco_images: list[str] = []
        for condition in ("olah", "maco", "maco_mask"):
            if condition not in conditions:
                continue
            if condition == "maco_mask":
                # masked renderings of the MACO images (generated here if maco is absent)
                source = maco_images or [add_image(bundle_dir, random_image()) for _ in range(n_references)]
                images = [add_image(bundle_dir, random_image()) for _ in source]
                references.append(ReferenceSet(unit.network, unit.key, condition,
                                               list(range(n_references)), images, source))
            else:
                images = [add_image(bundle_dir, random_image()) for _ in range(n_references)]
                if condition == "maco":
                    maco_images = images
                references.append(ReferenceSet(unit.network, unit.key, condition,
                                               list(range(n_references)), images))
    query_pairs = [make_pair(f"q-{u.network}-{u.class_index}-{k}", u.key)
                   for u in units for k in range(pairs_per_unit)]
    practice = [make_pair(f"practice-{k}", units[k % len(units)].key) for k in range(n_practice)]
    catch = [make_pair(f"catch-{k}", units[k % len(units)].key) for k in range(n_catch)]
    manifest = Manifest(
        study=study, networks=net_list, units=units, conditions=list(conditions),
        references=references, query_pairs=query_pairs, practice_trials=practice,
        catch_trials=catch,
        provenance={"created_at": "2026-01-01T00:00:00Z", "config": {"generator": "build_test_bundle",
                    "seed": seed}, "software": {"maco-study": "test"}})
    write_manifest(bundle_dir, manifest)
    return manifest
