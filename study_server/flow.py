"""The participant's session as database operations: assignment, stages, the trial sent.

The trial plan is in plan.py, answers in answers.py.

Every function runs inside the caller's transaction and leaves committing to
it, except where noted; the API commits before it acknowledges.
"""
from __future__ import annotations

import random
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from . import stages
from .models import COMPLETED, IN_PROGRESS, RETURNED, TIMED_OUT, Participant, Study, Trial, as_utc, utcnow
from .plan import OPAQUE_PER_TRIAL, StudyContext, image_scope, image_token, start_practice_round, trial_images
from .reference_files import reference_url
from .speed import SpeedRules, review_reasons

PROLIFIC_ID = re.compile(r"[A-Za-z0-9]{1,64}")  # always fullmatch ("$" would accept a trailing newline)


class FlowError(Exception):
    """A request the participant's state does not allow; `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


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
        is_preview=pid is None, condition=condition, status=IN_PROGRESS, stage=stages.FIRST,
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
    return as_utc(participant.last_seen_at) < utcnow() - TOUCH_INTERVAL


def touch(participant: Participant) -> None:
    """A sign of life: keeps the slot (never called for a timed-out participant)."""
    participant.last_seen_at = utcnow()


TIMED_OUT_MESSAGE = ("this study session has timed out and its place went to someone else: "
                     "please return the study on Prolific")


def timed_out(participant: Participant, timeout: timedelta) -> bool:
    """Unfinished and silent longer than the time-out (marked or not yet): the slot may already
    be someone else's, so the session is over for good, never silently resumed."""
    return participant.status == TIMED_OUT or (
        participant.status == IN_PROGRESS and as_utc(participant.last_seen_at) < utcnow() - timeout)


def require_not_timed_out(participant: Participant, timeout: timedelta) -> None:
    """FlowError 410 (gone) for a timed-out participant: study.js then opens the time-out page."""
    if timed_out(participant, timeout):
        raise FlowError(TIMED_OUT_MESSAGE, status=410)


# ---------------------------------------------------------------------------
# stage transitions
def _require_stage(participant: Participant, stage: str) -> None:
    if participant.stage != stage:
        raise FlowError(f"this step is not available now (current step: {participant.stage})")


def move(participant: Participant, to: str) -> None:
    """The participant's next stage, as the stage table (stages.py) allows."""
    stages.check_move(participant.stage, to)
    participant.stage = to


def give_consent(session: Session, ctx: StudyContext, participant: Participant, agree: bool) -> None:
    _require_stage(participant, "consent")
    if agree:
        participant.consented_at = utcnow()
        move(participant, "device")
    else:
        _return(participant, "declined consent")


PHONE_REFUSED = ("this study needs a computer: please open the same Prolific link on a computer, "
                 "where you continue from here")
NO_DEVICE = "no suitable device"  # the return reason of a participant who says they have none


def check_device(session: Session, ctx: StudyContext, participant: Participant, width: int, height: int,
                 is_phone: bool, min_width: int, min_height: int) -> None:
    _require_stage(participant, "device")
    participant.window_width, participant.window_height = width, height
    if is_phone:  # not returned: the same Prolific link opened on a computer continues from here
        raise FlowError(PHONE_REFUSED, status=422)
    if width < min_width or height < min_height:
        raise FlowError(f"the browser window is {width}x{height}; at least {min_width}x{min_height} "
                        "is needed: enlarge it and check again", status=422)
    move(participant, "instructions")
    # the instructions page opens right after this reply: their clock starts here, which
    # saves a write per participant (the navigation adds tens of ms to seconds of reading)
    participant.instructions_shown_at = utcnow()


def give_up_device(participant: Participant, stage: str = "device") -> None:
    """"I cannot use a computer / enlarge my window", offered in `stage`: the screen check, or the
    trials page's window overlay (each by its own endpoint, as stages.py lists them)."""
    _require_stage(participant, stage)
    _return(participant, NO_DEVICE)


# the config key of the Prolific code a participant who left this way is given
RETURN_CODE_KEYS = {"declined consent": "NOCONSENT_CODE", NO_DEVICE: "NO_DEVICE_CODE"}


def code_key(participant: Participant) -> str | None:
    """The config key of the Prolific completion code this participant was shown (None: none yet).
    The participant pages show it and `maco-study prolific` matches submissions against it."""
    if participant.status == COMPLETED:  # a session marked for review gets its own code (speed.py)
        return "REVIEW_CODE" if participant.review else "COMPLETION_CODE"
    if participant.status == RETURNED:
        return RETURN_CODE_KEYS.get(participant.return_reason or "", "NO_DEVICE_CODE")
    return None


def _return(participant: Participant, reason: str) -> None:
    participant.status = RETURNED
    move(participant, "returned")
    participant.return_reason = reason


def finish_instructions(session: Session, ctx: StudyContext, participant: Participant) -> None:
    _require_stage(participant, "instructions")
    shown = as_utc(participant.instructions_shown_at) or utcnow()
    participant.instruction_ms = (utcnow() - shown).total_seconds() * 1000
    move(participant, "trials")
    start_practice_round(session, ctx, participant, start_position=0)


def complete(session: Session, ctx: StudyContext, participant: Participant, comment: str,
             rules: SpeedRules) -> None:
    """The session ends: completed, and marked for review if it trips a speed rule (speed.py)."""
    _require_stage(participant, "comment")
    trials = participant_trials(session.connection(), participant)
    unanswered = sum(t.answer_id is None for t in trials)
    if unanswered:  # cannot happen through the API; guards the completion code
        raise FlowError(f"{unanswered} trials are still unanswered")
    participant.comment = comment or None
    participant.completed_at = utcnow()
    participant.status = COMPLETED
    participant.review = ";".join(review_reasons(participant, trials, rules))
    move(participant, "done")


# ---------------------------------------------------------------------------
# the trial sent
# The hot paths (every trial page, every answer) read the participant and their whole plan as Core
# rows on a bare connection (no ORM session): attributes named as the models' columns, read-only,
# without the ORM's identity map, instance state and unit of work (most of an answer's own CPU;
# benchmarks/RESULTS.md, issue 28). The plan is a few dozen rows; StudyContext.pairs has their images, so no
# join. The statements are built once and run with parameters: building a select and its cache key
# on every request was a measurable share of a trial's CPU too.
PARTICIPANT_ROW = select(*Participant.__table__.c).where(Participant.id == bindparam("participant_id"))
_PARTICIPANT_ROW_LOCKED = PARTICIPANT_ROW.with_for_update()
PLAN = (select(*Trial.__table__.c).where(Trial.participant_id == bindparam("participant_id"))
        .order_by(Trial.position))


def participant_row(connection: Connection, participant_id: int, lock: bool = False) -> Row | None:
    """The participant's row (row-locked with `lock`, for the rest of the transaction), or None."""
    return connection.execute(_PARTICIPANT_ROW_LOCKED if lock else PARTICIPANT_ROW,
                              {"participant_id": participant_id}).first()


def participant_trials(connection: Connection, participant: Participant | Row) -> list[Row]:
    return list(connection.execute(PLAN, {"participant_id": participant.id}))


def first_unanswered(trials: list[Row]) -> Row | None:
    return next((t for t in trials if t.answer_id is None), None)


def pause_before(trials: list[Row], current: Row, break_every: int) -> str | None:
    """"main" before the first main trial (after practice), "break" before every
    `break_every`-th further one (0: no breaks), else None."""
    if current.kind == "practice":
        return None
    done = sum(t.answer_id is not None for t in trials if t.kind != "practice")
    if done == 0:
        return "main" if any(t.kind == "practice" for t in trials) else None
    return "break" if break_every and done % break_every == 0 else None


def trial_payload(ctx: StudyContext, secret: bytes, participant: Participant | Row, trials: list[Row],
                  break_every: int = 0) -> dict[str, Any] | None:
    """What the browser gets for the current trial (None when all are answered):
    opaque image URLs for the base and queries, the references' static URLs
    (reference_files.py), nothing about the pair. `pause` asks study.js to show the
    pause page first (it then asks again with resume, which restarts the server's clock)."""
    current = first_unanswered(trials)
    if current is None:
        return None

    def urls(trial: Row) -> list[str]:
        images = trial_images(ctx, participant.condition, trial)
        return ([f"/img/{image_token(secret, participant.id, i, image_scope(trial))}"
                 for i in images[:OPAQUE_PER_TRIAL]] + [reference_url(i) for i in images[OPAQUE_PER_TRIAL:]])

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
        "pause": pause_before(trials, current, break_every),
        "base": base,
        "left": left,
        "right": right,
        "references": references,
        "preload": [] if upcoming is None else urls(upcoming),
    }
