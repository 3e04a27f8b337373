"""Participant pages: entry from Prolific, one page per stage, and the images.

Pages are rendered by the server; study.js (served by the app) posts each
step to the JSON API and follows its `next`.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for

from sqlalchemy import Row

from . import flow, stages
from .admin import admin_session_active, start_participant_session
from .state import db, read_connection, state
from .models import COMPLETED, TIMED_OUT, Participant
from .limits import too_many
from .opaque_images import FAILURE, RETRY_AFTER
from .reference_files import reference_url
from .plan import EXAMPLE_SCOPE, OPAQUE_PER_TRIAL, example_images, image_token, main_phase_length

participant_bp = Blueprint("participant", __name__)

PROLIFIC_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")


def session_participant(lock: bool = False, read_only: bool = False) -> Participant | Row | None:
    """The participant of this browser session (row-locked for writes with `lock`); with
    `read_only`, their row (flow.participant_row) from the read-only connection."""
    participant_id = session.get("participant")
    if participant_id is None:
        return None
    if read_only:
        return flow.participant_row(read_connection(), participant_id)
    return db().get(Participant, participant_id, with_for_update=lock or None)


def _message(title: str, text: str, status: int = 200) -> tuple[str, int]:
    return render_template("message.html", title=title, text=text), status


@participant_bp.get("/")
def index():  # noqa: ANN201
    return _message("MACO study", "Please open this study from Prolific.")


@participant_bp.get("/start")
def start():  # noqa: ANN201
    values = {name: request.args.get(name, "") for name in PROLIFIC_PARAMS}
    bad = [name for name, value in values.items() if not flow.PROLIFIC_ID.fullmatch(value)]
    if bad:
        return _message("This link is incomplete",
                        "The study link must carry your Prolific details "
                        f"({', '.join(bad)} {'is' if len(bad) == 1 else 'are'} missing or malformed). "
                        "Please open the study again from Prolific.", 400)
    if not re.fullmatch(current_app.config["PROLIFIC_PID_PATTERN"], values["PROLIFIC_PID"]):
        # nothing is created: an id in another shape would start a participant no recruiter pays
        return _message("This is not a Prolific ID",
                        "The participant id in the study link (PROLIFIC_PID) is not in the recruiter's "
                        "format (Prolific IDs are 24 characters, digits and the letters a to f). "
                        "Please open the study from Prolific, without changing the link.", 400)
    ctx = state().study
    participant = flow.start(db(), ctx, values["PROLIFIC_PID"], values["STUDY_ID"],
                             values["SESSION_ID"], request.user_agent.string)
    if flow.timed_out(participant, ctx.timeout):
        participant.status = TIMED_OUT  # marked now if no newcomer's start has marked it yet
    elif participant.status != COMPLETED and flow.needs_touch(participant):
        flow.touch(participant)
    db().commit()
    if session.get("participant") != participant.id:
        # another PID in this browser: it becomes that participant, and nothing of the session
        # before (the trial shown, an admin login) carries over; the same PID keeps its session
        session.clear()
    session.permanent = True
    session["participant"] = participant.id
    return redirect(url_for("participant.study"))


@participant_bp.get("/preview")
def preview():  # noqa: ANN201
    """A researcher's walk-through (?condition=... or a random one): a participant marked preview,
    never counted or exported. Only for a logged-in admin, whose login it keeps, unless
    PREVIEW_MODE or PUBLIC_PREVIEW opens it to anyone."""
    cfg = current_app.config
    if not (cfg["PREVIEW_MODE"] or cfg["PUBLIC_PREVIEW"] or admin_session_active()):
        return _message("Preview needs an admin login",
                        "Log in at /admin/ and open the preview from the dashboard.", 403)
    ctx = state().study
    condition = request.args.get("condition")
    if condition is not None and condition not in ctx.manifest.conditions:
        return _message("Unknown condition", f"There is no condition {condition!r}; "
                        f"this study has {', '.join(ctx.manifest.conditions)}.", 400)
    participant = flow.start(db(), ctx, None, None, None, request.user_agent.string,
                             preview_condition=condition)
    db().commit()
    start_participant_session(participant.id)
    return redirect(url_for("participant.study"))


def _completion(participant: Participant, code: str) -> dict[str, Any]:
    """The Prolific code of an outcome and its redirect URL (none for a preview or an unset code)."""
    url = None if participant.is_preview or not code else current_app.config["COMPLETION_URL"].format(code=code)
    return {"code": code, "completion_url": url}


def _page_context(participant: Participant) -> dict[str, Any]:
    cfg, manifest = current_app.config, state().study.manifest
    context: dict[str, Any] = {
        "participant": participant, "condition": participant.condition,
        # the wording follows how the condition's references are made (the manifest's condition_methods)
        "condition_method": manifest.condition_method(participant.condition),
        "min_width": cfg["MIN_WINDOW_WIDTH"], "min_height": cfg["MIN_WINDOW_HEIGHT"],
        "n_references": len(manifest.reference_images(manifest.units[0].key, participant.condition)),
        "max_rounds": manifest.protocol.max_practice_rounds, "inter_trial_ms": cfg["INTER_TRIAL_MS"],
    }
    if participant.stage == "instructions":
        example = example_images(manifest, participant.condition)
        context["example"] = [url_for("participant.image", token=image_token(
            state().token_secret, participant.id, i, EXAMPLE_SCOPE)) for i in example[:OPAQUE_PER_TRIAL]]
        context["example"] += [reference_url(i) for i in example[OPAQUE_PER_TRIAL:]]
        context["n_main"] = main_phase_length(manifest)
        context["break_every"] = cfg["BREAK_EVERY"]
        context["fresh_practice"] = manifest.protocol.practice_trials_per_round is not None
    elif participant.stage in ("done", "returned"):
        context.update(_completion(participant, cfg[flow.code_key(participant)]))
    return context


@participant_bp.get("/study")
def study():  # noqa: ANN201
    participant = session_participant(read_only=True)
    if participant is None:
        return _message("No study session", "Please open the study from Prolific.", 403)
    if flow.timed_out(participant, state().study.timeout):
        # their slot may be someone else's by now: a page that says so, never a silent resume
        template = "timed_out.html"
    else:
        template = stages.stage(participant.stage).template
    response = current_app.make_response(render_template(template, **_page_context(participant)))
    # Back or a restored tab always asks for the page of where the participant is now
    response.headers["Cache-Control"] = "no-store"
    return response


@participant_bp.get("/img/<token>")
def image(token: str):  # noqa: ANN201
    """Reached only for an image OpaqueImages (opaque_images.py), which sends every image it lets out,
    refused: over the images limit, an error while recording or sending it, else not this
    participant's to see now (404)."""
    session.accessed = True  # the refusal depends on the session cookie, as the image does (Vary: Cookie)
    failure = request.environ.get(FAILURE)
    if failure is not None:
        raise failure
    retry_after = request.environ.get(RETRY_AFTER)
    if retry_after is not None:
        return too_many(retry_after)
    abort(404)
