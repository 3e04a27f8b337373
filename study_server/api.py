"""The participant JSON API. Every write is committed before the reply is sent."""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, abort, current_app, jsonify, request, session, url_for
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from . import answers, flow
from .state import close_read_connection, db, read_connection, state
from .models import Participant, utcnow
from .participant import session_participant

api_bp = Blueprint("api", __name__, url_prefix="/api")
MAX_COMMENT = 5000


def _body(*fields: str) -> dict[str, Any]:
    if not request.is_json:
        abort(415, "send application/json")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "the body must be a JSON object")
    for name in fields:
        if name not in data:
            abort(400, f"{name}: missing")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        abort(400, f"{unknown[0]}: unknown field")
    return data


def _participant(lock: bool = False, read_only: bool = False) -> Participant | Row:
    participant = session_participant(lock, read_only)
    if participant is None:
        abort(403, "no study session: open the study from Prolific")
    if flow.timed_out(participant, state().study.timeout):
        abort(410, flow.TIMED_OUT_MESSAGE)
    return participant


def _mobile_user_agent() -> bool:
    """A phone's user agent ("Mobi"): refused even when the page claims otherwise."""
    return "Mobi" in request.user_agent.string


def _step(action: Callable[[Participant], None]):  # noqa: ANN202
    """Run a stage transition in one transaction; reply with the page to go to."""
    participant = _participant(lock=True)
    try:
        action(participant)
    except flow.FlowError as exc:
        db().rollback()
        return jsonify(error=str(exc)), exc.status
    flow.touch(participant)
    db().commit()
    return jsonify(next=url_for("participant.study"))


def _bool(data: dict[str, Any], name: str) -> bool:
    if not isinstance(data[name], bool):
        abort(400, f"{name}: must be true or false")
    return data[name]


def _int(data: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        abort(400, f"{name}: must be an integer between {lo} and {hi}")
    return value


@api_bp.post("/consent")
def consent():  # noqa: ANN201
    agree = _bool(_body("agree"), "agree")
    return _step(lambda p: flow.give_consent(db(), state().study, p, agree))


@api_bp.post("/device")
def device():  # noqa: ANN201
    data = _body("window_width", "window_height", "is_phone")
    width = _int(data, "window_width", 1, 100_000)
    height = _int(data, "window_height", 1, 100_000)
    # trust either signal: the page's (a phone, or a touch-only device such as a tablet) or the user agent's
    is_phone = _bool(data, "is_phone") or _mobile_user_agent()
    cfg = current_app.config
    return _step(lambda p: flow.check_device(db(), state().study, p, width, height, is_phone,
                                             cfg["MIN_WINDOW_WIDTH"], cfg["MIN_WINDOW_HEIGHT"]))


@api_bp.post("/device/give-up")
def device_give_up():  # noqa: ANN201
    _body()
    return _step(flow.give_up_device)


@api_bp.post("/trials/give-up")
def trials_give_up():  # noqa: ANN201
    """The trials page's window overlay: "I cannot enlarge my window / use a computer"."""
    _body()
    return _step(lambda p: flow.give_up_device(p, "trials"))


@api_bp.post("/instructions")
def instructions():  # noqa: ANN201
    _body()
    return _step(lambda p: flow.finish_instructions(db(), state().study, p))


@api_bp.post("/complete")
def complete():  # noqa: ANN201
    comment = _body("comment")["comment"]
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        abort(400, f"comment: must be text of at most {MAX_COMMENT} characters")
    return _step(lambda p: flow.complete(db(), state().study, p, comment.strip(), state().speed))


@api_bp.get("/trial")
def trial():  # noqa: ANN201
    resume = request.args.get("resume")
    if resume not in (None, "1"):
        abort(400, "resume: must be 1")
    participant = _participant(read_only=True)
    server_state = state()
    payload = flow.trial_payload(server_state.study, server_state.token_secret, participant,
                                 flow.participant_trials(read_connection(), participant),
                                 current_app.config["BREAK_EVERY"])
    if participant.stage != "trials" or payload is None:
        return jsonify(done=True, next=url_for("participant.study"))
    if session.get("served") != payload["position"] or resume:
        # what "the trial's images were sent" means to /api/answer: the signed cookie names the
        # last trial sent to this browser and when (no database write on this read-only path);
        # a reload keeps that time, the end of a pause page (resume) restarts it
        session["served"] = payload["position"]
        session["served_at_ms"] = utcnow().timestamp() * 1000
    if flow.needs_touch(participant):  # a sign of life, written at most once a minute
        close_read_connection()  # the read is done: free its connection before queueing for the write lock
        flow.touch(_participant(lock=True))
        db().commit()
    return jsonify(done=False, trial=payload)


@api_bp.post("/answer")
def answer():  # noqa: ANN201
    participant_id = session.get("participant")
    if participant_id is None:
        abort(403, "no study session: open the study from Prolific")
    if not request.is_json:
        abort(415, "send application/json")
    try:
        clean = answers.validate_answer(request.get_json(silent=True))
        cfg = current_app.config
        answers.check_window(clean, cfg["MIN_WINDOW_WIDTH"], cfg["MIN_WINDOW_HEIGHT"], _mobile_user_agent())
        try:
            return _store_answer(participant_id, clean)
        except IntegrityError:
            # the same answer id committed meanwhile by a concurrent retry: this pass replays it
            return _store_answer(participant_id, clean)
    except flow.FlowError as exc:
        return jsonify(error=str(exc)), exc.status


def _store_answer(participant_id: int, clean: dict[str, Any]):  # noqa: ANN202
    """One transaction on a bare connection (answers.py says why): committed when the block ends,
    rolled back if it raises."""
    server_state = state()
    with server_state.engine.begin() as connection:
        reply = answers.store_answer(connection, server_state.study, participant_id, clean, session.get("served"),
                                     session.get("served_at_ms"), server_state.token_secret, server_state.speed)
    return jsonify(reply)  # only now: the answer is committed
