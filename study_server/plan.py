"""A participant's trial plan, and the opaque ids under which the browser gets its images.

Practice comes in rounds; each round shows its own pictures (the bundle's practice trials come in
rounds: stimuli.manifest), is drawn afresh (order and sides from the round's own seed) and its images
get ids of their own, so a repeated round cannot be passed by remembering the pictures, the image
URLs or the sides the previous round's feedback showed. Main trials of all networks are
interleaved in a per-participant order, catch trials spread among them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from datetime import timedelta
from typing import Mapping, TypeVar

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from stimuli.manifest import Manifest
from stimuli.manifest import QueryPair as ManifestPair

from .models import Participant, QueryPair, Trial, Unit

T = TypeVar("T")
IMAGE_TOKENS_CACHED = 1 << 16  # per process: ~70 a participant, so those of the last ~1000 participants


@dataclass(frozen=True)
class PairImages:
    """What a trial shows of its query pair (the import never changes it while a server runs)."""

    base_image: str
    image_a: str
    image_b: str
    correct: str  # "a" / "b"
    unit_key: str
    kind: str  # practice / main / catch
    pair_key: str  # the manifest id


@dataclass(frozen=True)
class StudyContext:
    study_id: int
    manifest: Manifest
    timeout: timedelta  # unfinished and silent this long: timed out
    # query pair id -> its images, read once per process: trial pages need no join per request
    pairs: Mapping[int, PairImages]


def load_pairs(session: Session, study_id: int) -> dict[int, PairImages]:
    rows = session.execute(select(QueryPair.id, QueryPair.base_image, QueryPair.image_a, QueryPair.image_b,
                                  QueryPair.correct, Unit.key, QueryPair.kind, QueryPair.pair_key)
                           .join(Unit, QueryPair.unit_id == Unit.id).where(QueryPair.study_id == study_id))
    return {pair_id: PairImages(*images) for pair_id, *images in rows}


def _pairs(ctx: StudyContext, kind: str) -> list[tuple[int, PairImages]]:
    """The study's pairs of `kind` as (id, pair), in the manifest ids' order (Python's, on every
    database): the order a participant's seed shuffles."""
    return sorted(((i, p) for i, p in ctx.pairs.items() if p.kind == kind), key=lambda item: item[1].pair_key)


def _balanced_sides(rng: random.Random, n: int) -> list[str]:
    sides = ["left", "right"] * (n // 2) + ([rng.choice(["left", "right"])] if n % 2 else [])
    rng.shuffle(sides)
    return sides


def _add_trials(session: Session, participant: Participant, plan: list[tuple[str, int]],
                start_position: int, rng: random.Random, practice_round: int | None = None) -> None:
    """The plan's trials (kind, pair id) from `start_position` on, inserted in one Core statement
    (no ORM objects: it runs inside an answer, benchmarks/RESULTS.md issue 28)."""
    session.connection().execute(insert(Trial), [
        {"participant_id": participant.id, "position": start_position + offset, "kind": kind,
         "practice_round": practice_round, "query_pair_id": pair_id, "correct_side": correct_side}
        for offset, ((kind, pair_id), correct_side) in enumerate(zip(plan, _balanced_sides(rng, len(plan))))])


@lru_cache(maxsize=IMAGE_TOKENS_CACHED)
def image_token(secret: bytes, participant_id: int, image_id: str, scope: str = "") -> str:
    """The opaque id under which one participant gets one image: 22 URL-safe characters
    of an HMAC, so it reveals nothing of the content hash and differs between participants
    (and between `scope`s: each practice round and the instructions' example have their own).
    Cached: a trial's page, its preload by the trial before and its answer each ask for the same
    ones (six HMACs were 10 % of a trial request's CPU)."""
    message = f"{participant_id}:{image_id}" if not scope else f"{participant_id}:{scope}:{image_id}"
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


EXAMPLE_SCOPE = "example"


def practice_scope(practice_round: int) -> str:
    return f"practice-{practice_round}"


def image_scope(trial: Trial) -> str:
    return practice_scope(trial.practice_round) if trial.kind == "practice" else ""


def example_pair(manifest: Manifest) -> ManifestPair | None:
    """The instructions' example: the practice pair whose unit's references drive it most clearly,
    by the quality gate's margin recorded at build time (stimuli/quality.py; the smallest over the
    unit's conditions, so it is clear in every condition), so that a new participant first sees the
    clearest unit, not the pair easiest to occlude. The first practice pair of a bundle without
    margins; None without practice trials. One pair for every condition: only the references differ."""
    margins: dict[str, float] = {}
    for row in manifest.provenance.get("quality", []):
        if row.get("margin") is not None:
            margins[row["unit"]] = min(margins.get(row["unit"], math.inf), row["margin"])
    return max(manifest.practice_trials, key=lambda pair: margins.get(pair.unit, -math.inf), default=None)


def example_images(manifest: Manifest, condition: str) -> list[str]:
    """[base, a, b, *references] of the instructions' illustrated example (``example_pair``), its
    side unrevealed ([] without practice trials)."""
    pair = example_pair(manifest)
    if pair is None:
        return []
    return [pair.base_image, pair.image_a, pair.image_b, *manifest.reference_images(pair.unit, condition)]


OPAQUE_PER_TRIAL = 3  # base, left, right


def trial_images(ctx: StudyContext, condition: str, trial: Trial) -> list[str]:
    """[base, left, right, *references] image ids of a trial, as the participant sees them.
    The first OPAQUE_PER_TRIAL go out under the participant's opaque ids (`image_token`), each
    recorded when sent (speed.py); the references are static files (reference_files.py)."""
    pair = ctx.pairs[trial.query_pair_id]
    correct = pair.image_a if pair.correct == "a" else pair.image_b
    wrong = pair.image_b if pair.correct == "a" else pair.image_a
    left, right = (correct, wrong) if trial.correct_side == "left" else (wrong, correct)
    return [pair.base_image, left, right, *ctx.manifest.reference_images(pair.unit_key, condition)]


def start_practice_round(session: Session, ctx: StudyContext, participant: Participant,
                          start_position: int) -> None:
    participant.practice_round += 1
    # this round's pairs: a slice of the bundle's practice trials, new pictures in every round
    wanted = {p.id for p in ctx.manifest.protocol.practice_round(ctx.manifest.practice_trials,
                                                                 participant.practice_round)}
    pairs = [i for i, p in _pairs(ctx, "practice") if p.pair_key in wanted]
    if not pairs:
        start_main(session, ctx, participant, start_position)
        return
    rng = random.Random(f"{participant.plan_seed}:practice:{participant.practice_round}")
    rng.shuffle(pairs)
    _add_trials(session, participant, [("practice", i) for i in pairs], start_position, rng,
                practice_round=participant.practice_round)


def spread_catch(rng: random.Random, main: list[T], catch: list[T]) -> list[tuple[str, T]]:
    """The main trials in their order with the catch trials spread in: the main trials cut into
    len(catch) equal stretches, one catch trial right after a random main trial of each. So a catch
    trial is never the first trial after practice (it would test attention before any was needed,
    and read as a broken first trial), and never follows another one. Needs len(catch) <= len(main)
    (stimuli.manifest refuses a bundle with more)."""
    plan: list[tuple[str, T]] = [("main", p) for p in main]
    for k, pair in reversed(list(enumerate(catch))):  # from the back: earlier indices stay valid
        lo = math.floor(k * len(main) / len(catch))
        hi = math.floor((k + 1) * len(main) / len(catch))
        plan.insert(rng.randint(lo, hi - 1) + 1, ("catch", pair))
    return plan


def main_phase_length(manifest: Manifest) -> int:
    """The main and catch trials one participant answers after practice (start_main's plan)."""
    drawn = manifest.protocol.main_trials_per_participant or len(manifest.query_pairs)
    return min(drawn, len(manifest.query_pairs)) + len(manifest.catch_trials)


def start_main(session: Session, ctx: StudyContext, participant: Participant, start_position: int) -> None:
    """Main trials, all networks interleaved in a per-participant random order, catch trials spread in."""
    rng = random.Random(f"{participant.plan_seed}:main")
    main = [i for i, _ in _pairs(ctx, "main")]
    rng.shuffle(main)
    main = main[: ctx.manifest.protocol.main_trials_per_participant or len(main)]
    catch = [i for i, _ in _pairs(ctx, "catch")]
    rng.shuffle(catch)
    _add_trials(session, participant, spread_catch(rng, main, catch), start_position, rng)


