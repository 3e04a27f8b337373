"""A tiny valid bundle with generated images, and a generated image pool, for the tests and
benchmarks of stimuli, the server and the demo."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from study_protocol.study import CONDITIONS, PAPER_CONDITIONS

from .manifest import ConditionMethod, Manifest, Network, Occluder, Protocol, QueryPair, ReferenceSet, Unit, add_image, write_manifest


def build_test_bundle(
    bundle_dir: str | os.PathLike,
    study: str = "test-study",
    networks: tuple[str, ...] = ("vgg16", "resnet50"),
    units_per_network: int = 2,
    pairs_per_unit: int = 2,
    conditions: tuple[str, ...] = CONDITIONS,
    n_references: int = 9,
    n_practice: int = 2,
    practice_per_round: int | None = None,
    n_catch: int = 2,
    image_size: int = 32,
    seed: int = 0,
    methods: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> Manifest:
    """Write a small valid bundle of random-colour images and return its manifest.

    With `practice_per_round` the n_practice practice pairs are max_practice_rounds (3) rounds of
    that many (as the build makes them); without, every round shows all of them (older bundles).
    `methods` (condition -> (method, settings)) declares conditions beyond the paper's; without, the
    manifest is one from before declared conditions (the paper's)."""
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

    def make_pair(pair_id: str, unit: str, catch: bool = False) -> QueryPair:
        """Two occluded copies of a new photo; a catch trial's second (wrong) one of another photo."""
        base = random_image()
        occluders = []
        images = []
        for k in range(2):
            occ = Occluder(rng.randrange(image_size - occluder_size + 1),
                           rng.randrange(image_size - occluder_size + 1), occluder_size)
            occluded = random_image() if catch and k == 1 else base.copy()
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
    declared = {c: ConditionMethod(*(methods or PAPER_CONDITIONS)[c]) for c in conditions}
    references = []
    for unit in units:
        plain_images: dict[str, list[str]] = {}  # method -> an unmasked condition's images
        for condition in sorted(conditions, key=lambda c: bool(declared[c].settings.get("mask"))):
            method = declared[condition]
            if method.method == "none":
                continue
            if method.settings.get("mask"):
                # masked renderings of the unmasked images (generated here if no such condition)
                source = plain_images.get(method.method) or [add_image(bundle_dir, random_image())
                                                             for _ in range(n_references)]
                images = [add_image(bundle_dir, random_image()) for _ in source]
                references.append(ReferenceSet(unit.network, unit.key, condition,
                                               list(range(n_references)), images, source))
            elif method.method == "natural":
                images = [add_image(bundle_dir, random_image()) for _ in range(n_references)]
                references.append(ReferenceSet(unit.network, unit.key, condition, [], images,
                                               activations=[float(10 - k) for k in range(n_references)],
                                               pool_files=[f"photo{k}.jpg" for k in range(n_references)]))
            else:
                images = [add_image(bundle_dir, random_image()) for _ in range(n_references)]
                plain_images.setdefault(method.method, images)
                references.append(ReferenceSet(unit.network, unit.key, condition,
                                               list(range(n_references)), images))
    query_pairs = [make_pair(f"q-{u.network}-{u.class_index}-{k}", u.key)
                   for u in units for k in range(pairs_per_unit)]
    practice = [make_pair(f"practice-{k}", units[k % len(units)].key) for k in range(n_practice)]
    catch = [make_pair(f"catch-{k}", units[k % len(units)].key, catch=True) for k in range(n_catch)]
    manifest = Manifest(
        study=study, networks=net_list, units=units, conditions=list(conditions),
        condition_methods=declared if methods else {},
        references=references, query_pairs=query_pairs, practice_trials=practice,
        catch_trials=catch, protocol=Protocol(practice_trials_per_round=practice_per_round),
        provenance={"created_at": "2026-01-01T00:00:00Z", "config": {"generator": "build_test_bundle",
                    "seed": seed}, "software": {"maco-study": "test"}})
    write_manifest(bundle_dir, manifest)
    return manifest


def write_pool(folder: Path, count: int, size: int = 40, seed: int = 0) -> list[Path]:
    """`count` random smooth RGB images, in two class sub-folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size + i % 7, size), Image.Resampling.BILINEAR)
        path = Path(folder) / f"class{i % 2}" / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        paths.append(path)
    return paths


def install_plugin(project_dir: Path, site: Path, monkeypatch: Any) -> None:
    """The package in ``project_dir`` as an installer leaves it: importable, with a dist-info in
    ``site`` holding the entry points its pyproject.toml declares (what `pip install` writes), both
    on sys.path through ``monkeypatch`` (pytest's) until it is undone."""
    import tomllib

    project = tomllib.loads((Path(project_dir) / "pyproject.toml").read_text())["project"]
    info = Path(site) / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
        for group, points in project["entry-points"].items()))
    monkeypatch.syspath_prepend(str(project_dir))
    monkeypatch.syspath_prepend(str(site))
