"""Answers: the body checked field by field, stored once (idempotent on its id), and what comes next.

Two clocks time a trial. The browser's `rt_ms` runs from the images on screen to the key press;
the server's `server_elapsed_ms` from GET /api/trial sending the trial to the answer arriving. The
browser's interval lies inside the server's, so an `rt_ms` longer than `server_elapsed_ms` (beyond
CLOCK_TOLERANCE_MS) cannot come from study.js: such an answer is refused, never stored.
An answer to a trial whose images the server never sent, or with an `rt_ms` below MIN_RT_MS,
is refused too (speed.py).
"""
from __future__ import annotations

import math
import re
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Row, bindparam, or_, select, update
from sqlalchemy.orm import Session

from .flow import (PHONE_REFUSED, FlowError, move, needs_touch, participant_row, participant_trials,
                   require_not_timed_out)
from .models import COMPLETED, Participant, Trial, utcnow
from .plan import OPAQUE_PER_TRIAL, StudyContext, image_scope, image_token, start_main, start_practice_round, trial_images
from .speed import SpeedRules, served_count

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
INPUTS = ("key", "pointer")  # what gave the answer: a digit key, or a click or tap
ANSWER_ID = re.compile(r"[A-Za-z0-9-]{8,64}")  # always fullmatch ("$" would accept a trailing newline)
# timer rounding in the browser, and wall clocks of two server machines a little apart
CLOCK_TOLERANCE_MS = 250


def validate_answer(data: Any) -> dict[str, Any]:
    """The answer body, checked field by field; FlowError(400) names the first bad one."""
    if not isinstance(data, dict):
        raise FlowError("the body must be a JSON object", 400)
    expected = set(ANSWER_FIELDS) | {"answer_id", "chosen_side", "webdriver", "input"}
    for name in sorted(set(data) ^ expected):
        raise FlowError(f"{name}: {'unknown field' if name in data else 'missing'}", 400)
    if not isinstance(data["answer_id"], str) or not ANSWER_ID.fullmatch(data["answer_id"]):
        raise FlowError("answer_id: must be 8-64 letters, digits or dashes", 400)
    if data["chosen_side"] not in ("left", "right"):
        raise FlowError('chosen_side: must be "left" or "right"', 400)
    if not isinstance(data["webdriver"], bool):
        raise FlowError("webdriver: must be true or false", 400)
    if data["input"] not in INPUTS:
        raise FlowError('input: must be "key" or "pointer"', 400)
    clean = {"answer_id": data["answer_id"], "chosen_side": data["chosen_side"],
             "webdriver": data["webdriver"], "input": data["input"]}
    for name, (kind, lo, hi) in ANSWER_FIELDS.items():
        value = data[name]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (kind is int and not float(value).is_integer()) or not math.isfinite(value):
            raise FlowError(f"{name}: must be {'an integer' if kind is int else 'a number'}", 400)
        if not lo <= value <= hi:
            raise FlowError(f"{name}: must be between {lo:g} and {hi:g}", 400)
        clean[name] = kind(value)
    return clean


WINDOW_TOO_SMALL = ("the browser window is {width}x{height}; at least {min_width}x{min_height} is needed: "
                    "enlarge it to answer")


def check_window(answer: dict[str, Any], min_width: int, min_height: int, phone: bool) -> None:
    """The window rule on every answer: one given in a window below the minimum, or from a phone,
    is refused (422) and nothing is stored; study.js covers the trial before that can happen."""
    if phone:
        raise FlowError(PHONE_REFUSED, 422)
    width, height = answer["window_width"], answer["window_height"]
    if width < min_width or height < min_height:
        raise FlowError(WINDOW_TOO_SMALL.format(width=width, height=height, min_width=min_width,
                                                min_height=min_height), 422)


def _answer_reply(stage: str, trial: Row | SimpleNamespace, round_result: str | None) -> dict[str, Any]:
    reply: dict[str, Any] = {"stored": True, "position": trial.position,
                             "next": "trial" if stage == "trials" else "page"}
    if trial.kind == "practice":  # feedback only for practice, only once the answer is stored
        reply["feedback"] = {"correct": trial.chosen_side == trial.correct_side,
                             "correct_side": trial.correct_side, "round_result": round_result}
    return reply


# The answer is read, checked and stored with Core statements on a bare connection (no ORM session),
# in one transaction: the participant's row locked, one read of the trial and its neighbours, the
# presence count, one UPDATE of the trial (and of last_seen_at at most once a minute). The ORM's unit of work (instance state,
# change tracking, flush) cost more CPU than the SQL; it runs only where the plan grows (_advance).
_TRIAL_ANSWERED = update(Trial).where(Trial.id == bindparam("trial_id"))  # SET: the parameters' columns
_TOUCH = update(Participant).where(Participant.id == bindparam("participant_id"))
# One round trip: the answered position's trial and its two neighbours, and whichever trial
# (anyone's) already holds this answer id. Answers are only ever stored for the first unanswered
# trial (checked below), so the answered trials are always a prefix of the plan: the trial is the
# current one exactly when it is unanswered and the one before it is answered, and the plan ends
# with it when there is none after it. The whole plan (a few dozen rows) is read only when it is
# needed: at the end of a phase, and for a practice answer sent again (its round's result).
_NEIGHBOURS_AND_ANSWER = (select(*Trial.__table__.c)
                          .where(or_((Trial.participant_id == bindparam("participant_id"))
                                     & Trial.position.between(bindparam("before"), bindparam("after")),
                                     Trial.answer_id == bindparam("answer_id")))
                          .order_by(Trial.position))
_STORED_FIELDS = ("window_width", "window_height", "device_pixel_ratio", "blur_count", "fullscreen_exit_count",
                  "webdriver")


def store_answer(connection: Connection, ctx: StudyContext, participant_id: int, answer: dict[str, Any],
                 served_position: int | None, served_at_ms: float | None, secret: bytes,
                 rules: SpeedRules) -> dict[str, Any]:
    """Store one answer (idempotent on answer_id) and advance, in the transaction of `connection`;
    the caller commits, then replies.

    `served_position` is the last trial GET /api/trial sent to this browser session and
    `served_at_ms` when (epoch ms, server clock), both kept in its signed cookie: a new answer
    is accepted only for the trial sent, once GET /img sent its base and both query images (their
    tokens under `secret`; the references are static files the server may never see fetched,
    reference_files.py), and only with a possible `rt_ms`."""
    participant = participant_row(connection, participant_id, lock=True)
    if participant is None:
        raise FlowError("no study session", 403)
    position = answer["position"]
    rows = connection.execute(_NEIGHBOURS_AND_ANSWER, {
        "participant_id": participant.id, "answer_id": answer["answer_id"], "before": position - 1,
        "after": position + 1}).all()
    previous = next((t for t in rows if t.answer_id == answer["answer_id"]), None)
    if previous is not None:
        same = (previous.participant_id == participant.id and previous.position == position
                and previous.chosen_side == answer["chosen_side"]
                and previous.confidence == answer["confidence"])
        if not same:
            raise FlowError("this answer id was already used for a different answer")
        round_result = (_round_result(participant_trials(connection, participant), previous)
                        if previous.kind == "practice" else None)
        return _answer_reply(participant.stage, previous, round_result)
    require_not_timed_out(participant, ctx.timeout)
    if participant.status == COMPLETED or participant.stage != "trials":
        raise FlowError("no answers are accepted now (the trials are over)")
    # the messages below reach the participant's screen: no internal trial numbers in them
    own = {t.position: t for t in rows if t.participant_id == participant.id}
    trial = own.get(position)
    if trial is None:
        raise FlowError("there is no such trial: reload the page")
    if trial.answer_id is not None:
        raise FlowError("this trial is already answered: reload the page")
    if position > 0 and (position - 1 not in own or own[position - 1].answer_id is None):
        raise FlowError("this is not the current trial: reload the page")
    if served_position != trial.position:
        raise FlowError("this trial was not shown yet: reload the page")
    tokens = {image_token(secret, participant.id, image, image_scope(trial))
              for image in trial_images(ctx, participant.condition, trial)[:OPAQUE_PER_TRIAL]}
    if served_count(connection, participant.id, tokens) < len(tokens):
        raise FlowError("the pictures of this trial were not loaded: reload the page")
    if answer["rt_ms"] < rules.min_rt_ms:
        raise FlowError("that answer came faster than the pictures can be seen: please look at them, "
                        "then answer", 422)
    now = utcnow()
    elapsed_ms = None if served_at_ms is None else max(0.0, now.timestamp() * 1000 - served_at_ms)
    if elapsed_ms is not None and answer["rt_ms"] > elapsed_ms + CLOCK_TOLERANCE_MS:
        raise FlowError(f"rt_ms: {answer['rt_ms']:.0f} ms is longer than the trial has been on screen "
                        f"({elapsed_ms:.0f} ms): reload the page", 422)
    stored = {"answer_id": answer["answer_id"], "chosen_side": answer["chosen_side"],
              "confidence": answer["confidence"], "rt_ms": answer["rt_ms"], "server_elapsed_ms": elapsed_ms,
              "answered_at": now, "shown_at": now - timedelta(milliseconds=answer["rt_ms"]),
              "answer_input": answer["input"], **{name: answer[name] for name in _STORED_FIELDS}}
    # an answer id another participant's concurrent answer took raises IntegrityError (api.py replays)
    connection.execute(_TRIAL_ANSWERED, {"trial_id": trial.id, **stored})
    if needs_touch(participant):  # the answer itself shows life; the slot's clock is kept per minute
        connection.execute(_TOUCH, {"participant_id": participant.id, "last_seen_at": now})
    answered = SimpleNamespace(**{**trial._asdict(), **stored})  # the trial's row as it now reads
    round_result, stage = None, participant.stage
    if position + 1 not in own:  # the plan ends with this answer: the next phase, or the comment
        round_result, stage = _advance(connection, ctx, participant, answered,
                                       participant_trials(connection, participant))
    return _answer_reply(stage, answered, round_result)


def _round_trials(trials: list[Row], practice_round: int) -> list[Row]:
    return [t for t in trials if t.practice_round == practice_round]


def _round_result(trials: list[Row], trial: Row) -> str | None:
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


def _advance(connection: Connection, ctx: StudyContext, participant: Row, trial: SimpleNamespace,
             trials: list[Row]) -> tuple[str | None, str]:
    """After `trial`, the last of the plan (`trials`, read after its answer), got its answer: the
    next practice round, the main trials, or the comment. Returns the round's result and the
    participant's stage after it. Only here, a few times per participant, does an ORM session (on
    the same connection and transaction, which it leaves to the caller to commit) load the (already
    locked) participant and add trials or move on."""
    with Session(bind=connection) as session:
        return _advance_plan(session, ctx, session.get(Participant, participant.id), trial, trials)


def _advance_plan(session: Session, ctx: StudyContext, model: Participant, trial: SimpleNamespace,
                  trials: list[Row]) -> tuple[str | None, str]:
    next_position = trial.position + 1
    result = None
    if trial.kind == "practice":
        round_trials = _round_trials(trials, trial.practice_round)
        if all(t.chosen_side == t.correct_side for t in round_trials):
            start_main(session, ctx, model, next_position)
            result = "passed"
        elif model.practice_round < ctx.manifest.protocol.max_practice_rounds:
            start_practice_round(session, ctx, model, next_position)
            result = "repeat"
        else:
            model.practice_flagged = True
            start_main(session, ctx, model, next_position)
            result = "continue"
    else:
        move(model, "comment")
    session.flush()
    return result, model.stage
