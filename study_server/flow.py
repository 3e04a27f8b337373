"""The participant's session as database operations: assignment, trial plan, answers.

Every function runs inside the caller's transaction and leaves committing to
it, except where noted; the API commits before it acknowledges.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, lazyload

from stimuli.manifest import Manifest

from .models import (
    COMPLETED,
    IN_PROGRESS,
    RETURNED,
    TIMED_OUT,
    Participant,
    QueryPair,
    Study,
    Trial,
    Unit,
    as_utc,
    utcnow,
)

PROLIFIC_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


class FlowError(Exception):
    """A request the participant's state does not allow; `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PairImages:
    """What a trial shows of its query pair (the import never changes it while a server runs)."""

    base_image: str
    image_a: str
    image_b: str
    correct: str  # "a" / "b"
    unit_key: str


@dataclass(frozen=True)
class StudyContext:
    study_id: int
    manifest: Manifest
    timeout: timedelta  # unfinished and silent this long: timed out
    # query pair id -> its images, read once per process: trial pages need no join per request
    pairs: Mapping[int, PairImages]


def load_pairs(session: Session, study_id: int) -> dict[int, PairImages]:
    rows = session.execute(select(QueryPair.id, QueryPair.base_image, QueryPair.image_a, QueryPair.image_b,
                                  QueryPair.correct, Unit.key).join(Unit, QueryPair.unit_id == Unit.id)
                           .where(QueryPair.study_id == study_id))
    return {pair_id: PairImages(*images) for pair_id, *images in rows}


# ---------------------------------------------------------------------------
# assignment
def active_filter(cutoff: datetime):  # noqa: ANN201 - SQL expression
    """Participants that hold a slot: completed, or in progress and seen since cutoff."""
    return or_(Participant.status == COMPLETED,
               (Participant.status == IN_PROGRESS) & (Participant.last_seen_at >= cutoff))


def expire_stale(session: Session, ctx: StudyContext) -> None:
    session.execute(update(Participant)
                    .where(Participant.study_id == ctx.study_id, Participant.status == IN_PROGRESS,
                           Participant.last_seen_at < utcnow() - ctx.timeout)
                    .values(status=TIMED_OUT))


def find_participant(session: Session, ctx: StudyContext, pid: str) -> Participant | None:
    return session.scalar(select(Participant).where(Participant.study_id == ctx.study_id,
                                                    Participant.prolific_pid == pid))


def start(session: Session, ctx: StudyContext, pid: str | None, prolific_study_id: str | None,
          prolific_session_id: str | None, user_agent: str, preview_condition: str | None = None
          ) -> Participant:
    """The participant for this Prolific PID, created with a balanced condition if new.

    `pid=None` makes a preview participant (never counted, never exported).
    The least-filled condition is chosen under a lock on the study row (on
    SQLite the whole transaction is BEGIN IMMEDIATE), so concurrent starts
    see each other's inserts.
    """
    if pid is not None and (existing := find_participant(session, ctx, pid)) is not None:
        return existing
    public_id = _new_public_id(session)
    if pid is not None:
        expire_stale(session, ctx)  # needs no lock: keep the locked part below short
    # FOR NO KEY UPDATE: serializes assignments, yet does not block the KEY SHARE locks that
    # foreign-key checks of other participants' writes take on the study row (FOR UPDATE would)
    session.execute(select(Study.id).where(Study.id == ctx.study_id).with_for_update(key_share=True))
    if pid is not None and (existing := find_participant(session, ctx, pid)) is not None:
        return existing
    conditions = ctx.manifest.conditions
    if pid is None:
        condition = preview_condition if preview_condition in conditions else random.choice(conditions)
    else:
        counts = dict(session.execute(
            select(Participant.condition, func.count())
            .where(Participant.study_id == ctx.study_id, Participant.is_preview.is_(False),
                   active_filter(utcnow() - ctx.timeout))
            .group_by(Participant.condition)).all())
        least = min(counts.get(c, 0) for c in conditions)
        condition = random.choice([c for c in conditions if counts.get(c, 0) == least])
    now = utcnow()
    participant = Participant(
        public_id=public_id, study_id=ctx.study_id, prolific_pid=pid,
        prolific_study_id=prolific_study_id, prolific_session_id=prolific_session_id,
        is_preview=pid is None, condition=condition, status=IN_PROGRESS, stage="consent",
        plan_seed=secrets.randbelow(2**31), created_at=now, last_seen_at=now,
        user_agent=user_agent[:400], practice_round=0, practice_flagged=False)
    session.add(participant)
    session.flush()
    return participant


def _new_public_id(session: Session) -> str:
    while True:
        public_id = f"p-{secrets.token_hex(4)}"
        if session.scalar(select(Participant.id).where(Participant.public_id == public_id)) is None:
            return public_id


TOUCH_INTERVAL = timedelta(minutes=1)


def needs_touch(participant: Participant) -> bool:
    return participant.status == TIMED_OUT or as_utc(participant.last_seen_at) < utcnow() - TOUCH_INTERVAL


def touch(participant: Participant) -> None:
    """A sign of life: keeps the slot, and brings a timed-out participant back."""
    participant.last_seen_at = utcnow()
    if participant.status == TIMED_OUT:
        participant.status = IN_PROGRESS


# ---------------------------------------------------------------------------
# stage transitions
def _require_stage(participant: Participant, stage: str) -> None:
    if participant.stage != stage:
        raise FlowError(f"this step is not available now (current step: {participant.stage})")


def give_consent(session: Session, ctx: StudyContext, participant: Participant, agree: bool) -> None:
    _require_stage(participant, "consent")
    if agree:
        participant.consented_at = utcnow()
        participant.stage = "device"
    else:
        _return(participant, "declined consent")


def check_device(session: Session, ctx: StudyContext, participant: Participant, width: int, height: int,
                 is_phone: bool, min_width: int, min_height: int) -> None:
    _require_stage(participant, "device")
    participant.window_width, participant.window_height = width, height
    if is_phone:
        _return(participant, "phone")
    elif width < min_width or height < min_height:
        raise FlowError(f"the browser window is {width}x{height}; at least {min_width}x{min_height} "
                        "is needed: enlarge it and check again", status=422)
    else:
        participant.stage = "instructions"
        # the instructions page opens right after this reply: their clock starts here, which
        # saves a write per participant (the navigation adds tens of ms to seconds of reading)
        participant.instructions_shown_at = utcnow()


def give_up_device(participant: Participant) -> None:
    _require_stage(participant, "device")
    _return(participant, "window too small")


def _return(participant: Participant, reason: str) -> None:
    participant.status = RETURNED
    participant.stage = "returned"
    participant.return_reason = reason


def finish_instructions(session: Session, ctx: StudyContext, participant: Participant) -> None:
    _require_stage(participant, "instructions")
    shown = as_utc(participant.instructions_shown_at) or utcnow()
    participant.instruction_ms = (utcnow() - shown).total_seconds() * 1000
    participant.stage = "trials"
    _start_practice_round(session, ctx, participant, start_position=0)


def complete(session: Session, ctx: StudyContext, participant: Participant, comment: str) -> None:
    _require_stage(participant, "comment")
    unanswered = session.scalar(select(func.count()).select_from(Trial).where(
        Trial.participant_id == participant.id, Trial.answer_id.is_(None)))
    if unanswered:  # cannot happen through the API; guards the completion code
        raise FlowError(f"{unanswered} trials are still unanswered")
    participant.comment = comment or None
    participant.completed_at = utcnow()
    participant.status = COMPLETED
    participant.stage = "done"


# ---------------------------------------------------------------------------
# trial plan
def _pairs(session: Session, ctx: StudyContext, kind: str) -> list[QueryPair]:
    return list(session.scalars(select(QueryPair).where(QueryPair.study_id == ctx.study_id,
                                                        QueryPair.kind == kind)
                                .order_by(QueryPair.pair_key)))


def _balanced_sides(rng: random.Random, n: int) -> list[str]:
    sides = ["left", "right"] * (n // 2) + ([rng.choice(["left", "right"])] if n % 2 else [])
    rng.shuffle(sides)
    return sides


def _add_trials(session: Session, participant: Participant, plan: list[tuple[str, QueryPair]],
                start_position: int, rng: random.Random, practice_round: int | None = None) -> None:
    for offset, ((kind, pair), correct_side) in enumerate(zip(plan, _balanced_sides(rng, len(plan)))):
        session.add(Trial(participant_id=participant.id, position=start_position + offset, kind=kind,
                          practice_round=practice_round, query_pair_id=pair.id, correct_side=correct_side))
    session.flush()


def image_token(secret: bytes, participant_id: int, image_id: str) -> str:
    """The opaque id under which one participant gets one image: 22 URL-safe characters
    of an HMAC, so it reveals nothing of the content hash and differs between participants."""
    digest = hmac.new(secret, f"{participant_id}:{image_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def trial_images(ctx: StudyContext, condition: str, trial: Trial) -> list[str]:
    """[base, left, right, *references] image ids of a trial, as the participant sees them."""
    pair = ctx.pairs[trial.query_pair_id]
    correct = pair.image_a if pair.correct == "a" else pair.image_b
    wrong = pair.image_b if pair.correct == "a" else pair.image_a
    left, right = (correct, wrong) if trial.correct_side == "left" else (wrong, correct)
    return [pair.base_image, left, right, *ctx.manifest.reference_images(pair.unit_key, condition)]


def _start_practice_round(session: Session, ctx: StudyContext, participant: Participant,
                          start_position: int) -> None:
    participant.practice_round += 1
    pairs = _pairs(session, ctx, "practice")
    if not pairs:
        _start_main(session, ctx, participant, start_position)
        return
    rng = random.Random(f"{participant.plan_seed}:practice:{participant.practice_round}")
    rng.shuffle(pairs)
    _add_trials(session, participant, [("practice", p) for p in pairs], start_position, rng,
                practice_round=participant.practice_round)


def _start_main(session: Session, ctx: StudyContext, participant: Participant, start_position: int) -> None:
    """Main trials, all networks interleaved in a per-participant random order, catch trials spread in."""
    rng = random.Random(f"{participant.plan_seed}:main")
    main = _pairs(session, ctx, "main")
    rng.shuffle(main)
    main = main[: ctx.manifest.protocol.main_trials_per_participant or len(main)]
    plan: list[tuple[str, QueryPair]] = [("main", p) for p in main]
    catch = _pairs(session, ctx, "catch")
    rng.shuffle(catch)
    # one catch trial at a random place in each of len(catch) equal stretches
    for k, pair in reversed(list(enumerate(catch))):
        lo = math.floor(k * len(main) / len(catch))
        hi = math.floor((k + 1) * len(main) / len(catch))
        plan.insert(rng.randint(lo, hi), ("catch", pair))
    _add_trials(session, participant, plan, start_position, rng)


# ---------------------------------------------------------------------------
# trials and answers
# The hot paths (every trial page, every answer) read the participant's whole plan in one query
# without joining the query pairs (StudyContext.pairs has their images); the plan is a few dozen rows.
def participant_trials(session: Session, participant: Participant) -> list[Trial]:
    return list(session.scalars(select(Trial).options(lazyload(Trial.query_pair))
                                .where(Trial.participant_id == participant.id).order_by(Trial.position)))


def _first_unanswered(trials: list[Trial]) -> Trial | None:
    return next((t for t in trials if t.answer_id is None), None)


def trial_payload(ctx: StudyContext, secret: bytes, participant: Participant, trials: list[Trial]
                  ) -> dict[str, Any] | None:
    """What the browser gets for the current trial (None when all are answered):
    opaque image URLs only, nothing about the pair."""
    current = _first_unanswered(trials)
    if current is None:
        return None

    def urls(trial: Trial) -> list[str]:
        return [f"/img/{image_token(secret, participant.id, i)}"
                for i in trial_images(ctx, participant.condition, trial)]

    practice = current.kind == "practice"
    phase = [t for t in trials if (t.practice_round == current.practice_round if practice
                                   else t.kind != "practice")]
    upcoming = next((t for t in trials if t.position == current.position + 1), None)
    base, left, right, *references = urls(current)
    return {
        "position": current.position,
        "practice": practice,
        "practice_round": current.practice_round,
        "progress": {"done": sum(t.answer_id is not None for t in phase), "total": len(phase)},
        "base": base,
        "left": left,
        "right": right,
        "references": references,
        "preload": [] if upcoming is None else urls(upcoming),
    }


ANSWER_FIELDS: dict[str, tuple[type, float, float]] = {
    # name: (type, minimum, maximum)
    "position": (int, 0, 100_000),
    "confidence": (int, 1, 3),
    "rt_ms": (float, 0, 3_600_000),
    "window_width": (int, 1, 100_000),
    "window_height": (int, 1, 100_000),
    "device_pixel_ratio": (float, 0.1, 20),
    "blur_count": (int, 0, 100_000),
    "fullscreen_exit_count": (int, 0, 100_000),
}
ANSWER_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")


def validate_answer(data: Any) -> dict[str, Any]:
    """The answer body, checked field by field; FlowError(400) names the first bad one."""
    if not isinstance(data, dict):
        raise FlowError("the body must be a JSON object", 400)
    expected = set(ANSWER_FIELDS) | {"answer_id", "chosen_side"}
    for name in sorted(set(data) ^ expected):
        raise FlowError(f"{name}: {'unknown field' if name in data else 'missing'}", 400)
    if not isinstance(data["answer_id"], str) or not ANSWER_ID.match(data["answer_id"]):
        raise FlowError("answer_id: must be 8-64 letters, digits or dashes", 400)
    if data["chosen_side"] not in ("left", "right"):
        raise FlowError('chosen_side: must be "left" or "right"', 400)
    clean = {"answer_id": data["answer_id"], "chosen_side": data["chosen_side"]}
    for name, (kind, lo, hi) in ANSWER_FIELDS.items():
        value = data[name]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (kind is int and not float(value).is_integer()) or not math.isfinite(value):
            raise FlowError(f"{name}: must be {'an integer' if kind is int else 'a number'}", 400)
        if not lo <= value <= hi:
            raise FlowError(f"{name}: must be between {lo:g} and {hi:g}", 400)
        clean[name] = kind(value)
    return clean


def _answer_reply(session: Session, participant: Participant, trial: Trial,
                  round_result: str | None) -> dict[str, Any]:
    reply: dict[str, Any] = {"stored": True, "position": trial.position,
                             "next": "trial" if participant.stage == "trials" else "page"}
    if trial.kind == "practice":  # feedback only for practice, only once the answer is stored
        reply["feedback"] = {"correct": trial.chosen_side == trial.correct_side,
                             "correct_side": trial.correct_side, "round_result": round_result}
    return reply


def store_answer(session: Session, ctx: StudyContext, participant_id: int, answer: dict[str, Any],
                 served_position: int | None) -> dict[str, Any]:
    """Store one answer (idempotent on answer_id) and advance; the caller commits, then replies.

    `served_position` is the last trial GET /api/trial sent to this browser session (kept in its
    signed cookie): a new answer is accepted only for a trial whose images were sent."""
    participant = session.scalar(select(Participant).where(Participant.id == participant_id)
                                 .with_for_update())
    if participant is None:
        raise FlowError("no study session", 403)
    # one round trip: the participant's plan, and whichever trial (anyone's) already holds this answer id
    rows = list(session.scalars(select(Trial).options(lazyload(Trial.query_pair))
                                .where(or_(Trial.participant_id == participant.id,
                                           Trial.answer_id == answer["answer_id"]))
                                .order_by(Trial.position)))
    trials = [t for t in rows if t.participant_id == participant.id]
    previous = next((t for t in rows if t.answer_id == answer["answer_id"]), None)
    if previous is not None:
        same = (previous.participant_id == participant.id and previous.position == answer["position"]
                and previous.chosen_side == answer["chosen_side"]
                and previous.confidence == answer["confidence"])
        if not same:
            raise FlowError("this answer id was already used for a different answer")
        return _answer_reply(session, participant, previous, _round_result(trials, previous))
    if participant.status == COMPLETED or participant.stage != "trials":
        raise FlowError("no answers are accepted now (the trials are over)")
    trial = next((t for t in trials if t.position == answer["position"]), None)
    if trial is None:
        raise FlowError(f"there is no trial {answer['position']}")
    if trial.answer_id is not None:
        raise FlowError(f"trial {trial.position} is already answered")
    current = _first_unanswered(trials)
    if current is None or current.position != trial.position:
        raise FlowError(f"trial {trial.position} is not the current trial")
    if served_position != trial.position:
        raise FlowError(f"trial {trial.position} was not shown yet: reload the page")
    now = utcnow()
    trial.answer_id = answer["answer_id"]
    trial.chosen_side = answer["chosen_side"]
    trial.confidence = answer["confidence"]
    trial.rt_ms = answer["rt_ms"]
    trial.answered_at = now
    trial.shown_at = now - timedelta(milliseconds=answer["rt_ms"])
    for name in ("window_width", "window_height", "device_pixel_ratio", "blur_count",
                 "fullscreen_exit_count"):
        setattr(trial, name, answer[name])
    if needs_touch(participant):  # the answer itself shows life; the slot's clock is kept per minute
        touch(participant)
    round_result = _advance(session, ctx, participant, trial, trials)
    session.flush()
    return _answer_reply(session, participant, trial, round_result)


def _round_trials(trials: list[Trial], practice_round: int) -> list[Trial]:
    return [t for t in trials if t.practice_round == practice_round]


def _round_result(trials: list[Trial], trial: Trial) -> str | None:
    """After a round's last practice answer: passed / repeat / continue (flagged); else None.
    `trials` is the participant's whole plan."""
    if trial.kind != "practice":
        return None
    round_trials = _round_trials(trials, trial.practice_round)
    if any(t.answer_id is None for t in round_trials) or trial.position != max(t.position for t in round_trials):
        return None
    if all(t.chosen_side == t.correct_side for t in round_trials):
        return "passed"
    later_round = max(t.practice_round or 0 for t in trials)
    return "repeat" if later_round > trial.practice_round else "continue"


def _advance(session: Session, ctx: StudyContext, participant: Participant, trial: Trial,
             trials: list[Trial]) -> str | None:
    """After `trial` got its answer: the next practice round, the main trials, or the comment."""
    if _first_unanswered(trials) is not None:
        return None
    next_position = trial.position + 1
    if trial.kind == "practice":
        round_trials = _round_trials(trials, trial.practice_round)
        if all(t.chosen_side == t.correct_side for t in round_trials):
            _start_main(session, ctx, participant, next_position)
            return "passed"
        if participant.practice_round < ctx.manifest.protocol.max_practice_rounds:
            _start_practice_round(session, ctx, participant, next_position)
            return "repeat"
        participant.practice_flagged = True
        _start_main(session, ctx, participant, next_position)
        return "continue"
    participant.stage = "comment"
    return None
