"""The stimulus build: stages, resumable pieces, shards, and the final bundle.

Work is cut into *pieces*, each finished piece written atomically and
recorded as ``BUNDLE/.build/<stage>/<piece>.json`` (after its images are in
``BUNDLE/images/``). A build that is stopped at any moment, ``kill -9``
included, resumes by skipping recorded pieces; since every piece is
deterministic, the resumed bundle equals an uninterrupted one.

Stages and pieces:
1. ``pool``: one piece per (network, chunk of ``pool.chunk_size`` images):
   that chunk's top-k per unit. Merging chunks is exact (see pool.py).
2. ``references``: one piece per (network, method, seed, group of
   ``units_per_run`` units): one optimisation run.
3. ``queries``: one piece per (network, unit, rank < top_k): the occlusion
   query pair of the unit's rank-th image. Needs every pool piece.
4. finalize: practice and catch trials, then ``manifest.json``.

Sharding (``--shard i/n``, or torchrun's RANK/WORLD_SIZE): shard i takes
pieces i, i+n, i+2n... of every stage, in the same bundle folder (a shared
file system). Before stage 3 a shard waits for the other shards' pool pieces,
doing its reference pieces first; shard 0 then waits for every piece and
writes the manifest. A job array whose shards cannot all run at once still
completes: run the build once more without ``--shard`` at the end, it only
does what is missing.

Practice and catch trials come from each unit's *spare* images (ranks
``per_unit..top_k-1``), never from the images of the main trials:
- practice: the spare pairs with the largest relative activation difference
  (the easiest), one per unit before any unit is used twice;
- catch: a spare pair of unit u whose wrong image is replaced, as in
  Zimmermann et al. (2021), by an occluded image of *another* unit's image
  (that unit's argmin-occluded image, of a different photo; never an image a practice or main
  trial shows: `stimuli check` refuses a bundle sharing an image between trial kinds), chosen so that
  unit u's activation on it is below its activation on the correct image.
  The correct answer is then the only option that is a copy of the base
  image: answerable in every condition, `none` included, by anyone who
  looks; the instructions tell participants that both options are normally
  copies of the base image.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from maco.device import DeviceError, resolve_device, runtime_provenance
from maco.images import to_pil

from . import manifest as mf
from .config import StimuliError, StudyConfig
from .models import StudyModel, load_study_model
from .occlusion import occluder_side, query_pair
from .pool import Pool, TopK, list_pool, load_image, pool_topk
from .quality import summarize, unit_record
from .references import from_pil, masked, resolve_spectrum, visualize

WORK_DIR = ".build"
PLAN_FILE = "plan.json"
RUNTIME_DIR = "runtime"  # one record per process that worked on the bundle


@dataclass(frozen=True)
class Piece:
    stage: str  # "pool", "references" or "queries"
    network: str
    chunk: int = 0  # pool
    unit: int = -1  # queries
    rank: int = -1  # queries
    method: str = ""  # references
    seed: int = 0  # references
    units: tuple[int, ...] = ()  # references

    @property
    def name(self) -> str:
        if self.stage == "pool":
            return f"{self.network}-{self.chunk:06d}"
        if self.stage == "queries":
            return f"{self.network}-{self.unit:04d}-{self.rank:03d}"
        return f"{self.network}-{self.method}-{self.seed:04d}-{self.units[0]:04d}"


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        """`i/n` from --shard, else torchrun's RANK/WORLD_SIZE, else the whole build."""
        if text is None:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise StimuliError(f"--shard: expected i/n (e.g. 0/4), got {text!r}") from None
        if not 0 <= index < count:
            raise StimuliError(f"--shard: need 0 <= i < n, got {text!r}")
        return cls(index, count)

    def mine(self, pieces: list[Piece]) -> list[Piece]:
        return pieces[self.index::self.count]


def plan_pieces(config: StudyConfig, pool_size: int) -> dict[str, list[Piece]]:
    chunks = math.ceil(pool_size / config.pool.chunk_size)
    refs = config.references
    return {
        "pool": [Piece("pool", n.key, chunk=c) for n in config.networks for c in range(chunks)],
        "references": [
            Piece("references", n.key, method=method, seed=refs.first_seed + j,
                  units=tuple(n.units[g:g + refs.units_per_run]))
            for n in config.networks for method in config.visualized_methods
            for j in range(refs.per_trial) for g in range(0, len(n.units), refs.units_per_run)],
        "queries": [Piece("queries", n.key, unit=u, rank=r)
                    for n in config.networks for u in n.units for r in range(config.query.top_k)],
    }


def network_input_size(network) -> int:
    """The input size a network will be run at, known without loading weights."""
    import timm
    from maco.models import ModelError, resolve_name

    try:
        timm_name = resolve_name(network.model)
    except ModelError as exc:
        raise StimuliError(f"networks.{network.key}.model: {exc}") from None
    if network.input_size is not None:
        return network.input_size
    cfg = timm.models.get_pretrained_cfg(timm_name)
    return int(cfg.input_size[-1]) if cfg is not None else 224


def plan_rows(config: StudyConfig, pool_size: int) -> list[tuple[str, int, int, int]]:
    """(stage, pieces, forward image passes, backward image passes) for --dry-run."""
    pieces = plan_pieces(config, pool_size)
    positions = 0
    for network in config.networks:
        size = network_input_size(network)
        side = occluder_side(size, config.query.occluder_fraction)
        per_axis = (size - side) // config.query.stride + 1
        positions += len(network.units) * config.query.top_k * (per_axis ** 2 + 1)
    reference_passes = sum(
        getattr(config.references, method).steps * (getattr(config.references, method).crops or 1)
        * len(n.units) * config.references.per_trial
        for n in config.networks for method in config.visualized_methods)
    return [
        ("pool", len(pieces["pool"]), pool_size * len(config.networks), 0),
        ("references", len(pieces["references"]), reference_passes, reference_passes),
        ("queries", len(pieces["queries"]), positions, 0),
        ("finalize", 0, config.catch.trials, 0),  # catch distractors, checked in finalize
    ]


def describe_plan(config: StudyConfig, shard: Shard | None = None) -> str:
    pool = list_pool(config.pool.source)
    check_pool_size(config, len(pool.files))
    units = sum(len(n.units) for n in config.networks)
    lines = [f"study {config.name}: {len(config.networks)} networks, {units} units, "
             f"conditions {', '.join(config.conditions)}, pool {len(pool.files)} images",
             f"{'stage':<12}{'pieces':>10}{'forward passes':>18}{'backward passes':>18}"]
    rows = plan_rows(config, len(pool.files))
    for stage, count, forward, backward in rows:
        lines.append(f"{stage:<12}{count:>10,}{forward:>18,}{backward:>18,}")
    lines.append(f"{'total':<12}{sum(r[1] for r in rows):>10,}{sum(r[2] for r in rows):>18,}"
                 f"{sum(r[3] for r in rows):>18,}")
    lines.append("(passes count images through the network: occlusion positions, crops x steps)")
    if shard is not None and shard.count > 1:
        pieces = plan_pieces(config, len(pool.files))
        mine = sum(len(shard.mine(p)) for p in pieces.values())
        lines.append(f"shard {shard.index}/{shard.count}: {mine} of "
                     f"{sum(len(p) for p in pieces.values())} pieces")
    return "\n".join(lines)


def check_pool_size(config: StudyConfig, pool_size: int) -> None:
    if pool_size < config.query.top_k:
        raise StimuliError(f"pool.source: {pool_size} images, fewer than query.top_k = "
                           f"{config.query.top_k}")


def pair_side(seed: int, pair_id: str) -> str:
    """Which of a/b holds the correct image: a seeded coin per pair, balanced over a study."""
    return "ab"[hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()[0] & 1]


# ---------------------------------------------------------------------------
@dataclass
class Builder:
    config: StudyConfig
    out: Path
    shard: Shard = field(default_factory=Shard)
    device: str = "cpu"
    progress: bool = True
    stall_seconds: float = 3600.0  # give up waiting when the other shards finish nothing for this long
    poll_seconds: float = 2.0
    compute_dtype: torch.dtype = torch.float32  # the networks' forward precision (maco.models.Model)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.work = self.out / WORK_DIR
        self.models: dict[str, StudyModel] = {}

    # -- records --------------------------------------------------------
    def record_path(self, piece: Piece) -> Path:
        return self.work / piece.stage / f"{piece.name}.json"

    def done(self, piece: Piece) -> bool:
        return self.record_path(piece).is_file()

    def read(self, piece: Piece) -> dict[str, Any]:
        return json.loads(self.record_path(piece).read_text())

    def write(self, piece: Piece, record: dict[str, Any]) -> None:
        mf.atomic_write(self.record_path(piece), json.dumps(record, sort_keys=True).encode())

    def add_image(self, image: torch.Tensor) -> str:
        return mf.add_image(self.out, to_pil(image))

    def _bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, disable=not self.progress, file=sys.stderr,
                    dynamic_ncols=True, unit="it")

    # -- the whole build --------------------------------------------------
    def run(self) -> Path | None:
        """Do this shard's pieces; shard 0 then writes the manifest (returned)."""
        pool = list_pool(self.config.pool.source)
        check_pool_size(self.config, len(pool.files))
        for network in self.config.networks:
            network_input_size(network)  # unknown names fail here, before loading anything
        self.models = {n.key: load_study_model(n, self.config.seed, self.device, self.compute_dtype)
                       for n in self.config.networks}
        self._claim_bundle(pool)
        self._record_runtime()
        pieces = plan_pieces(self.config, len(pool.files))
        self._pool_stage(pool, self.shard.mine(pieces["pool"]))
        self._references_stage(self.shard.mine(pieces["references"]), pieces["references"])
        self._wait(pieces["pool"], "pool pieces")
        topk = self._merged_topk(pieces["pool"], len(pool.files))
        self._queries_stage(pool, topk, self.shard.mine(pieces["queries"]))
        if self.shard.index != 0:
            return None
        self._wait([p for stage in pieces.values() for p in stage], "pieces")
        return self.finalize(pool, topk, pieces)

    def _claim_bundle(self, pool: Pool) -> None:
        """Start a bundle in an empty folder, or resume one made from the same config."""
        plan = {"fingerprint": self.config.fingerprint(), "pool_files": len(pool.files),
                "pool_listing": hashlib.sha256("\n".join(pool.files).encode()).hexdigest()}
        plan_file = self.work / PLAN_FILE
        if not plan_file.is_file():
            foreign = self.out.exists() and any(p.name != WORK_DIR for p in self.out.iterdir())
            # re-checked: a concurrent shard writes the plan before anything else
            if foreign and not plan_file.is_file():
                raise StimuliError(f"{self.out}: folder is not empty and holds no stimulus build")
            if not plan_file.is_file():
                mf.atomic_write(plan_file, json.dumps(plan).encode())
        if json.loads(plan_file.read_text()) != plan:
            raise StimuliError(f"{self.out}: this bundle was started from a different config or "
                               "pool; build into a new --out folder")

    def _record_runtime(self) -> None:
        """Record this process's device and settings; a bundle keeps the precision it started with."""
        runtime = runtime_provenance(self.device, self.compute_dtype)
        earlier = {record["dtype"] for record in self._runtimes()}
        if earlier - {runtime["dtype"]}:
            raise StimuliError(f"--dtype: this bundle was started in {min(earlier)}, not {runtime['dtype']}; "
                               "resume it with that --dtype or build into a new --out folder")
        name = f"shard{self.shard.index}-{os.getpid()}-{time.time_ns()}.json"
        mf.atomic_write(self.work / RUNTIME_DIR / name, json.dumps(runtime, sort_keys=True).encode())

    def _runtimes(self) -> list[dict[str, Any]]:
        """The distinct runtime records of every process that worked on the bundle."""
        texts = {path.read_text() for path in (self.work / RUNTIME_DIR).glob("*.json")}
        return [json.loads(text) for text in sorted(texts)]

    def _wait(self, pieces: list[Piece], what: str) -> None:
        missing = [p for p in pieces if not self.done(p)]
        if missing and self.shard.count == 1:
            raise StimuliError(f"{len(missing)} {what} missing after this build's own work")
        if missing:
            print(f"shard {self.shard.index}/{self.shard.count}: waiting for {len(missing)} {what} "
                  "of the other shards", file=sys.stderr)
        last_progress = time.monotonic()
        while missing:
            time.sleep(self.poll_seconds)
            still_missing = [p for p in missing if not self.done(p)]
            if len(still_missing) < len(missing):
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.stall_seconds:
                # a shard that crashed never writes its pieces: stop rather than wait forever
                raise StimuliError(
                    f"shard {self.shard.index}/{self.shard.count}: the other shards finished none of "
                    f"{len(still_missing)} {what} (e.g. {still_missing[0].name}) in {self.stall_seconds:g} s; "
                    "rerun the shards that stopped (the build resumes where it was) or raise --stall-timeout")
            missing = still_missing

    # -- stage 1 ----------------------------------------------------------
    def _pool_stage(self, pool: Pool, pieces: list[Piece]) -> None:
        todo = [p for p in pieces if not self.done(p)]
        size = self.config.pool.chunk_size

        def chunk(piece: Piece) -> range:
            return range(piece.chunk * size, min((piece.chunk + 1) * size, len(pool.files)))

        for network in self.config.networks:
            mine = [p for p in todo if p.network == network.key]
            with self._bar(sum(len(chunk(p)) for p in mine), f"pool {network.key}") as bar:
                for piece in mine:
                    best = pool_topk(self.models[network.key], list(network.units), pool, chunk(piece),
                                     self.config.query.top_k, self.config.pool.batch_size,
                                     self.config.pool.workers, bar)
                    self.write(piece, {"values": best.values.tolist(), "indices": best.indices.tolist(),
                                       "unreadable": best.unreadable})

    def _merged_topk(self, pieces: list[Piece], pool_size: int) -> dict[str, TopK]:
        merged = {}
        for network in self.config.networks:
            parts = []
            for piece in (p for p in pieces if p.network == network.key):
                record = self.read(piece)
                parts.append(TopK(np.array(record["values"], dtype=np.float64).reshape(len(network.units), -1),
                                  np.array(record["indices"], dtype=np.int64).reshape(len(network.units), -1),
                                  record["unreadable"]))
            merged[network.key] = TopK.merged(parts, self.config.query.top_k)
            readable = pool_size - len(merged[network.key].unreadable)
            if readable < self.config.query.top_k:
                raise StimuliError(f"pool.source: only {readable} readable images "
                                   f"({len(merged[network.key].unreadable)} unreadable), fewer than "
                                   f"query.top_k = {self.config.query.top_k}")
        return merged

    # -- stage 2 ----------------------------------------------------------
    def _spectrum(self, pieces: list[Piece]) -> Any:
        """Resolved once per process; a resumed build must find the spectrum it started with."""
        spectrum = resolve_spectrum(self.config)
        earlier = {self.read(p)["spectrum_source"] for p in pieces if p.method == "maco" and self.done(p)}
        if earlier - {spectrum.source}:
            raise StimuliError(f"references.spectrum: this build started with the spectrum "
                               f"{sorted(earlier)[0]!r} but now gets {spectrum.source!r}; set "
                               "references.spectrum to a file (maco-study spectrum) to pin it")
        return spectrum

    def _references_stage(self, pieces: list[Piece], all_pieces: list[Piece]) -> None:
        todo = [p for p in pieces if not self.done(p)]
        with_mask = "maco_mask" in self.config.conditions
        spectrum = self._spectrum(all_pieces) if any(p.method == "maco" for p in todo) else None
        with self._bar(len(todo), "references") as bar:
            for piece in todo:
                model = self.models[piece.network]
                vizs = visualize(model, self.config, piece.method, list(piece.units), piece.seed, spectrum)
                study_units = next(n.units for n in self.config.networks if n.key == piece.network)
                images, quality = {}, {}
                for unit, viz in zip(piece.units, vizs):
                    images[str(unit)] = {"image": self.add_image(viz.image)}
                    if piece.method == "maco" and with_mask:
                        images[str(unit)]["masked"] = self.add_image(masked(viz))
                    quality[str(unit)] = unit_record(model, viz, piece.method, study_units)
                self.write(piece, {"images": images, "quality": quality, "algorithm": vizs[0].algorithm,
                                   "spectrum_source": vizs[0].spectrum_source})
                bar.update()

    # -- stage 3 ----------------------------------------------------------
    def _queries_stage(self, pool: Pool, topk: dict[str, TopK], pieces: list[Piece]) -> None:
        todo = [p for p in pieces if not self.done(p)]
        with self._bar(len(todo), "queries") as bar:
            for piece in todo:
                model = self.models[piece.network]
                network = next(n for n in self.config.networks if n.key == piece.network)
                index = int(topk[piece.network].indices[network.units.index(piece.unit), piece.rank])
                image = load_image(pool.path(index), model.preprocessing)
                result = query_pair(model, image, piece.unit, self.config.query.occluder_fraction,
                                    self.config.query.stride, self.config.query.batch_size)
                self.write(piece, {
                    "file": pool.files[index], "pool_index": index,
                    "base_image": self.add_image(image), "max_image": self.add_image(result.max_image),
                    "min_image": self.add_image(result.min_image),
                    "activation_base": result.activation_base, "activation_max": result.activation_max,
                    "activation_min": result.activation_min,
                    "relative_difference": result.relative_difference,
                    "max_position": list(result.max_position), "min_position": list(result.min_position),
                    "side": result.side})
                bar.update()

    # -- stage 4 ----------------------------------------------------------
    def finalize(self, pool: Pool, topk: dict[str, TopK], pieces: dict[str, list[Piece]]) -> Path:
        config = self.config
        queries = {(p.network, p.unit, p.rank): self.read(p) for p in pieces["queries"]}
        main = [self._pair(f"q-{n}-{u}-{r}", n, u, q) for (n, u, r), q in queries.items()
                if r < config.query.per_unit]
        # spare pairs whose photo is no main trial's base image (a photo can rank high for several units)
        main_files = {q["file"] for key, q in queries.items() if key[2] < config.query.per_unit}
        spare = {key: q for key, q in queries.items()
                 if key[2] >= config.query.per_unit and q["file"] not in main_files}
        if len(spare) < config.practice.trials + config.catch.trials:
            raise StimuliError(
                f"query.top_k: {len(spare)} spare images that no main trial shows, but practice.trials "
                f"+ catch.trials = {config.practice.trials + config.catch.trials}; raise query.top_k")
        practice_keys = select_practice(spare, config.practice.trials)
        practice = [self._pair(f"practice-{n}-{u}-{r}", n, u, spare[(n, u, r)]) for n, u, r in practice_keys]
        # a catch trial's photo is no practice or main trial's photo (their base image would be the same)
        shown_files = main_files | {spare[k]["file"] for k in practice_keys}
        shown_images = {i for pair in main + practice for i in (pair.base_image, pair.image_a, pair.image_b)}
        catch = self._catch_trials({k: q for k, q in spare.items() if q["file"] not in shown_files}, queries,
                                   shown_files, shown_images)
        manifest = mf.Manifest(
            study=config.name, networks=self._networks(), units=self._units(),
            conditions=list(config.conditions), references=self._reference_sets(pieces["references"]),
            query_pairs=main, practice_trials=practice, catch_trials=catch,
            protocol=mf.Protocol(config.main_trials_per_participant, config.practice.max_rounds),
            provenance=self._provenance(pool, topk, pieces["references"]))
        path = mf.write_manifest(self.out, manifest)
        for stale in (self.out / mf.IMAGES_DIR).glob(".*.tmp"):  # left by a killed build
            stale.unlink(missing_ok=True)
        return path

    def _pair(self, pair_id: str, network: str, unit: int, q: dict[str, Any],
              wrong: tuple[str, list[int], float | None] | None = None, note: str = "") -> mf.QueryPair:
        """A QueryPair from a query record; `wrong` replaces the argmin image (catch trials)."""
        wrong_image, wrong_position, wrong_activation = wrong or (
            q["min_image"], q["min_position"], q["activation_min"])
        right = (q["max_image"], mf.Occluder(q["max_position"][1], q["max_position"][0], q["side"]))
        other = (wrong_image, mf.Occluder(wrong_position[1], wrong_position[0], q["side"]))
        if len({q["base_image"], right[0], other[0]}) < 3:
            raise StimuliError(f"query pair {pair_id}: unit {network}:{unit} gives {q['file']} the same "
                               "occluded image at its argmax and argmin (a flat activation map); "
                               "check the network's weights")
        correct = pair_side(self.config.seed, pair_id)
        (image_a, occluder_a), (image_b, occluder_b) = (right, other) if correct == "a" else (other, right)
        return mf.QueryPair(pair_id, f"{network}:{unit}", q["base_image"], image_a, image_b, correct,
                            activation_base=q["activation_base"], activation_max=q["activation_max"],
                            activation_min=wrong_activation, occluder_a=occluder_a,
                            occluder_b=occluder_b, note=note)

    def _catch_trials(self, candidates: dict[tuple, dict[str, Any]], queries: dict[tuple, dict[str, Any]],
                      shown_files: set[str], shown_images: set[str]) -> list[mf.QueryPair]:
        """Catch trials from `candidates`; a distractor is never one of `shown_images` (those of the
        main and practice trials), and comes from a photo outside `shown_files` when there is one."""
        rng = np.random.default_rng([self.config.seed, 7])
        keys = sorted(k for k in candidates
                      if any(o[0] == k[0] and o[1] != k[1] for o in queries))  # another unit exists
        keys = [keys[i] for i in rng.permutation(len(keys))]
        trials = []
        for network, unit, rank in keys:
            if len(trials) == self.config.catch.trials:
                break
            q = candidates[(network, unit, rank)]
            others = sorted(k for k in queries if k[0] == network and k[1] != unit
                            and queries[k]["file"] != q["file"] and queries[k]["min_image"] not in shown_images)
            # distractors from photos no other trial shows, when there are any
            others = [k for k in others if queries[k]["file"] not in shown_files] or others
            model = self.models[network]
            for k in (others[i] for i in rng.permutation(len(others))):
                distractor = queries[k]
                with Image.open(mf.image_path(self.out, distractor["min_image"])) as png:
                    image = from_pil(png)
                activation = float(model.logits(image[None])[0, unit])
                if activation < q["activation_max"]:
                    trials.append(self._pair(
                        f"catch-{network}-{unit}-{rank}", network, unit, q,
                        wrong=(distractor["min_image"], distractor["min_position"], activation),
                        note=f"catch: the wrong image is an occluded image of unit {network}:{k[1]}"))
                    break
        if len(trials) < self.config.catch.trials:
            raise StimuliError(f"catch.trials: only {len(trials)} catch trials could be built; "
                               "raise query.top_k or lower catch.trials")
        return sorted(trials, key=lambda t: t.id)

    def _networks(self) -> list[mf.Network]:
        from maco.models import resolve_name

        return [mf.Network(n.key, resolve_name(n.model), self.models[n.key].weights,
                           self.models[n.key].num_classes, self.models[n.key].input_size)
                for n in self.config.networks]

    def _units(self) -> list[mf.Unit]:
        return [mf.Unit(f"{n.key}:{u}", n.key, u, class_label(u, self.models[n.key].num_classes))
                for n in self.config.networks for u in n.units]

    def _reference_sets(self, pieces: list[Piece]) -> list[mf.ReferenceSet]:
        images: dict[tuple[str, int, str], list[tuple[int, str, str | None]]] = {}
        for piece in pieces:
            for unit, entry in self.read(piece)["images"].items():
                images.setdefault((piece.network, int(unit), piece.method), []).append(
                    (piece.seed, entry["image"], entry.get("masked")))
        sets = []
        for n in self.config.networks:
            for u in n.units:
                for condition in self.config.conditions:
                    if condition == "none":
                        continue
                    runs = sorted(images[(n.key, u, "olah" if condition == "olah" else "maco")])
                    seeds = [seed for seed, _, _ in runs]
                    if condition == "maco_mask":
                        sets.append(mf.ReferenceSet(n.key, f"{n.key}:{u}", condition, seeds,
                                                    [m for _, _, m in runs], [i for _, i, _ in runs]))
                    else:
                        sets.append(mf.ReferenceSet(n.key, f"{n.key}:{u}", condition, seeds,
                                                    [i for _, i, _ in runs]))
        return sets

    def _provenance(self, pool: Pool, topk: dict[str, TopK], reference_pieces: list[Piece]) -> dict[str, Any]:
        import importlib.metadata as md

        software = {}
        for package in ("maco-study", "torch", "timm", "numpy", "pillow", "scikit-image"):
            try:
                software[package] = md.version(package)
            except md.PackageNotFoundError:
                continue
        pieces = [(p, self.read(p)) for p in reference_pieces]
        spectra = sorted({r["spectrum_source"] for p, r in pieces if p.method == "maco" and r.get("spectrum_source")})
        quality: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        for piece, record in pieces:
            for unit, entry in record.get("quality", {}).items():  # absent in pieces built before the gate
                quality.setdefault((piece.network, int(unit), piece.method), []).append(entry)
        return {
            "maco_algorithms": sorted({r["algorithm"] for p, r in pieces if p.method == "maco" and r.get("algorithm")}),
            "quality": summarize(quality, {n.key: n.units for n in self.config.networks},
                                 list(self.config.conditions)),
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": self.config.content(), "config_fingerprint": self.config.fingerprint(),
            "config_toml": self.config.source_text,
            "software": software, "spectrum_sources": spectra, "runtime": self._runtimes(),
            "pool": {"source": self.config.pool.source, "images": len(pool.files),
                     "unreadable": {k: len(t.unreadable) for k, t in topk.items()}},
        }


def select_practice(spare: dict[tuple, dict[str, Any]], count: int) -> list[tuple]:
    """The easiest spare pairs (largest relative difference), one per unit before repeating."""
    ranked = sorted(spare, key=lambda k: (-spare[k]["relative_difference"], k))
    chosen: list[tuple] = []
    used_units: set[tuple] = set()
    for key in ranked:
        if len(chosen) < count and key[:2] not in used_units:
            chosen.append(key)
            used_units.add(key[:2])
    chosen += [k for k in ranked if k not in chosen][:count - len(chosen)]
    return chosen


def class_label(index: int, num_classes: int) -> str:
    if num_classes != 1000:
        return f"class {index}"
    from timm.data import ImageNetInfo

    return ImageNetInfo().index_to_description(index)


def build(config: StudyConfig, out: str | Path, shard: Shard | None = None, device: str | None = None,
          progress: bool = True, stall_seconds: float = Builder.stall_seconds,
          compute_dtype: torch.dtype = torch.float32) -> Path | None:
    shard = shard or Shard.parse(None)
    if device is None:
        local_rank = int(os.environ.get("LOCAL_RANK", shard.index if shard.count > 1 else 0))
        device = f"cuda:{local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    try:
        device = resolve_device(device)
    except DeviceError as exc:
        raise StimuliError(f"--device: {exc}") from None
    if device.type == "cuda":
        # this rank's GPU becomes the current one: otherwise the DataLoader's pin-memory thread
        # (and anything else that says only "cuda") opens a context on GPU 0 in every rank
        torch.cuda.set_device(device)
    return Builder(config, Path(out), shard, str(device), progress, stall_seconds,
                   compute_dtype=compute_dtype).run()


def check_bundle(bundle: str | Path) -> mf.Manifest:
    """Everything `stimuli check` verifies; raises ManifestError naming the problem."""
    manifest = mf.load_manifest(bundle, verify_hashes=True)
    have = {(r.unit, r.condition) for r in manifest.references}
    for unit in manifest.units:
        for condition in manifest.conditions:
            if condition != "none" and (unit.key, condition) not in have:
                raise mf.ManifestError(f"references: unit {unit.key} has no {condition} references")
    return manifest
