"""Stage 3 and the trials made of it: occlusion query pairs, then the main, practice and catch trials.

Practice and catch trials come from each unit's *spare* images (ranks ``per_unit..top_k-1``),
never from the images of the main trials (the rules: see the package docstring).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import manifest as mf
from ..manifest.schema import KIND_FIELDS
from ..config import StimuliError, StudyConfig
from ..models import StudyModel
from ..occlusion import query_pair
from ..pool import Pool, TopK, load_image
from ..references import from_pil
from .plan import Piece
from .store import PieceStore, progress_bar

QueryRecords = dict[tuple[str, int, int], dict[str, Any]]  # (network, unit, rank) -> a queries piece's record


def run_queries_stage(store: PieceStore, config: StudyConfig, models: dict[str, StudyModel], pool: Pool,
                      topk: dict[str, TopK], pieces: list[Piece], progress: bool) -> None:
    todo = [p for p in pieces if not store.done(p)]
    with progress_bar(len(todo), "queries", progress) as bar:
        for piece in todo:
            model = models[piece.network]
            network = next(n for n in config.networks if n.key == piece.network)
            index = int(topk[piece.network].indices[network.units.index(piece.unit), piece.rank])
            image = load_image(pool.path(index), model.preprocessing)
            result = query_pair(model, image, piece.unit, config.query.occluder_fraction,
                                config.query.stride, config.query.batch_size)
            store.write(piece, {
                "file": pool.files[index], "pool_index": index,
                "base_image": store.add_image(image), "max_image": store.add_image(result.max_image),
                "min_image": store.add_image(result.min_image),
                "activation_base": result.activation_base, "activation_max": result.activation_max,
                "activation_min": result.activation_min,
                "relative_difference": result.relative_difference,
                "max_position": list(result.max_position), "min_position": list(result.min_position),
                "side": result.side})
            bar.update()


def make_trials(out: Path, config: StudyConfig, models: dict[str, StudyModel], queries: QueryRecords
                ) -> tuple[list[mf.QueryPair], list[mf.QueryPair], list[mf.QueryPair]]:
    """The main, practice and catch trials of the bundle in `out`."""
    main = [make_pair(config.seed, f"q-{n}-{u}-{r}", n, u, q) for (n, u, r), q in queries.items()
            if r < config.query.per_unit]
    # spare pairs whose photo is no main trial's base image (a photo can rank high for several units)
    main_files = {q["file"] for key, q in queries.items() if key[2] < config.query.per_unit}
    spare = {key: q for key, q in queries.items()
             if key[2] >= config.query.per_unit and q["file"] not in main_files}
    n_practice = config.practice.trials * config.practice.max_rounds  # new pictures in every round
    if len(spare) < n_practice + config.catch.trials:
        raise StimuliError(
            f"query.top_k: {len(spare)} spare images that no main trial shows, but practice.trials x "
            f"practice.max_rounds + catch.trials = {n_practice + config.catch.trials}; raise query.top_k")
    practice_keys = practice_rounds(select_practice(spare, n_practice), config.practice.max_rounds)
    practice = [make_pair(config.seed, f"practice-{n}-{u}-{r}", n, u, spare[(n, u, r)])
                for n, u, r in practice_keys]
    # a catch trial's photo is no practice or main trial's photo (their base image would be the same)
    shown_files = main_files | {spare[k]["file"] for k in practice_keys}
    shown_images = {i for pair in main + practice for i in (pair.base_image, pair.image_a, pair.image_b)}
    catch = catch_trials(out, config, models, {k: q for k, q in spare.items() if q["file"] not in shown_files},
                         queries, shown_files, shown_images)
    return main, practice, catch


def pair_side(seed: int, pair_id: str) -> str:
    """Which of a/b holds the correct image: a seeded coin per pair, balanced over a study."""
    return "ab"[hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()[0] & 1]


def make_pair(seed: int, pair_id: str, network: str, unit: int, q: dict[str, Any],
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
    correct = pair_side(seed, pair_id)
    (image_a, occluder_a), (image_b, occluder_b) = (right, other) if correct == "a" else (other, right)
    return mf.QueryPair(pair_id, f"{network}:{unit}", q["base_image"], image_a, image_b, correct,
                        activation_base=q["activation_base"], activation_max=q["activation_max"],
                        activation_min=wrong_activation, occluder_a=occluder_a,
                        occluder_b=occluder_b, note=note)


def select_practice(spare: dict[tuple, dict[str, Any]], count: int) -> list[tuple]:
    """The easiest spare pairs (largest relative difference), one per unit before repeating, each
    of its own photo (a photo can rank high for two units; it must not come back in a later round)."""
    ranked = sorted(spare, key=lambda k: (-spare[k]["relative_difference"], k))
    chosen: list[tuple] = []
    used_units: set[tuple] = set()
    used_files: set[str] = set()
    for new_units_only in (True, False):
        for key in ranked:
            if len(chosen) < count and spare[key]["file"] not in used_files and not (
                    new_units_only and key[:2] in used_units):
                chosen.append(key)
                used_units.add(key[:2])
                used_files.add(spare[key]["file"])
    if len(chosen) < count:
        raise StimuliError(f"practice: only {len(chosen)} spare photos for {count} practice trials "
                           "(practice.trials x practice.max_rounds); raise query.top_k")
    return chosen


def practice_rounds(keys: list[tuple], rounds: int) -> list[tuple]:
    """`keys` (easiest first) dealt into `rounds` rounds of equal difficulty, round after round:
    round r gets the r-th, (r + rounds)-th... easiest (the manifest's practice_trials order)."""
    return [key for r in range(rounds) for key in keys[r::rounds]]


def catch_trials(out: Path, config: StudyConfig, models: dict[str, StudyModel], candidates: QueryRecords,
                 queries: QueryRecords, shown_files: set[str], shown_images: set[str]) -> list[mf.QueryPair]:
    """Catch trials from `candidates`; a distractor is never one of `shown_images` (those of the
    main and practice trials), and comes from a photo outside `shown_files` when there is one."""
    rng = np.random.default_rng([config.seed, 7])
    keys = sorted(k for k in candidates
                  if any(o[0] == k[0] and o[1] != k[1] for o in queries))  # another unit exists
    keys = [keys[i] for i in rng.permutation(len(keys))]
    trials = []
    for network, unit, rank in keys:
        if len(trials) == config.catch.trials:
            break
        q = candidates[(network, unit, rank)]
        others = sorted(k for k in queries if k[0] == network and k[1] != unit
                        and queries[k]["file"] != q["file"] and queries[k]["min_image"] not in shown_images)
        # distractors from photos no other trial shows, when there are any
        others = [k for k in others if queries[k]["file"] not in shown_files] or others
        model = models[network]
        for k in (others[i] for i in rng.permutation(len(others))):
            distractor = queries[k]
            with Image.open(mf.image_path(out, distractor["min_image"])) as png:
                image = from_pil(png)
            activation = float(model.logits(image[None])[0, unit])
            if activation < q["activation_max"]:
                trials.append(make_pair(
                    config.seed, f"catch-{network}-{unit}-{rank}", network, unit, q,
                    wrong=(distractor["min_image"], distractor["min_position"], activation),
                    note=f"catch: the wrong image is an occluded image of unit {network}:{k[1]}"))
                break
    if len(trials) < config.catch.trials:
        raise StimuliError(f"catch.trials: only {len(trials)} catch trials could be built; "
                           "raise query.top_k or lower catch.trials")
    return sorted(trials, key=lambda t: t.id)


# What the instructions promise, checked on the pixels by `stimuli check`: in a practice or main trial
# both options are copies of the base photo (they differ from it only under their occluder); in a
# catch trial only the correct one is, the other shows another photo, so the answer is obvious to
# anyone who looks, with or without references (the design: docs/stimuli.md).
COPY_TOLERANCE = 8  # 0-255: PNG rounding of the same pixels stays far below, another photo far above
COPY_FRACTION = 0.95  # of the pixels outside the occluder that must match the base's


def is_copy(base: np.ndarray, image: np.ndarray, occluder: mf.Occluder) -> bool:
    """Whether `image` is `base` with only the square `occluder` changed (HxWx3 uint8 arrays)."""
    if base.shape != image.shape:
        return False
    outside = np.ones(base.shape[:2], dtype=bool)
    outside[occluder.y:occluder.y + occluder.size, occluder.x:occluder.x + occluder.size] = False
    same = np.abs(base.astype(np.int16) - image.astype(np.int16)).max(axis=2) <= COPY_TOLERANCE
    return bool(same[outside].mean() >= COPY_FRACTION) if outside.any() else True


def check_copies(bundle: Path, manifest: mf.Manifest) -> None:
    """ManifestError for a trial whose options break the rule above (naming the trial)."""
    def pixels(image_id: str) -> np.ndarray:
        with Image.open(mf.image_path(bundle, image_id)) as png:
            return np.asarray(png.convert("RGB"))

    for kind, pair in manifest.all_query_pairs():
        where = f"{KIND_FIELDS[kind]}: {pair.id}"
        base = pixels(pair.base_image)
        correct_occluder = pair.occluder_a if pair.correct == "a" else pair.occluder_b
        wrong_occluder = pair.occluder_b if pair.correct == "a" else pair.occluder_a
        if not is_copy(base, pixels(pair.correct_image), correct_occluder):
            raise mf.ManifestError(f"{where}: the correct image is not a copy of the base photo "
                                   "outside its occluder")
        wrong_is_copy = is_copy(base, pixels(pair.wrong_image), wrong_occluder)
        if kind == "catch" and wrong_is_copy:
            raise mf.ManifestError(f"{where}: the wrong image is a copy of the base photo, so the catch "
                                   "trial is not obvious: its wrong image must show another photo")
        if kind != "catch" and not wrong_is_copy:
            raise mf.ManifestError(f"{where}: the wrong image is not a copy of the base photo outside "
                                   "its occluder (only a catch trial shows another photo)")
