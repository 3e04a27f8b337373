"""The researcher's dashboard: login (argon2 hash, CSRF, throttling, idle time-out), overview, export."""
from __future__ import annotations

import io
import time
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from wtforms import PasswordField
from wtforms.validators import DataRequired

from .app import db, state
from .export import effective_status, write_responses
from .models import COMPLETED, IN_PROGRESS, LoginFailure, Participant, Setting, Trial, as_utc, utcnow

admin_bp = Blueprint("admin", __name__, url_prefix="/admin")
PASSWORD_SETTING = "admin_password_hash"
MIN_INSTRUCTION_MS = 15_000  # the protocol's exclusion thresholds (analysis decisions, shown only)
MIN_CATCH_ACCURACY = 2 / 3


class LoginForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired()])


class LogoutForm(FlaskForm):
    pass


def hash_password(password: str) -> str:
    return PasswordHasher().hash(password)


def set_password(session: Session, password: str) -> None:
    """Store the argon2 hash of the admin password (the CLI's `admin set-password`)."""
    setting = session.get(Setting, PASSWORD_SETTING)
    if setting is None:
        session.add(Setting(key=PASSWORD_SETTING, value=hash_password(password)))
    else:
        setting.value = hash_password(password)


def _password_hash() -> str | None:
    configured = current_app.config["ADMIN_PASSWORD_HASH"]
    if configured:
        return configured
    setting = db().get(Setting, PASSWORD_SETTING)
    return None if setting is None else setting.value


def _verify(password: str) -> bool:
    stored = _password_hash()
    if stored is None:
        return False
    try:
        return PasswordHasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


ADMIN_SESSION_KEYS = ("admin", "admin_seen", "admin_since")
LOGOUT_SETTING = "admin_logged_out_at"  # a logout ends every admin session logged in before it


def _end_admin_session() -> None:
    for key in ADMIN_SESSION_KEYS:
        session.pop(key, None)


def _logged_out_at() -> float:
    setting = db().get(Setting, LOGOUT_SETTING)
    return 0.0 if setting is None else float(setting.value)


@admin_bp.before_request
def _require_login():  # noqa: ANN202
    """Idle time-out (ADMIN_SESSION_MIN), an absolute one (ADMIN_SESSION_MAX_H) and logout: the
    session lives in a signed cookie, so a copy of it would outlive a logout unless the server
    remembered when the last one happened."""
    if request.endpoint == "admin.login":
        return None
    seen, since = session.get("admin_seen"), session.get("admin_since")
    cfg = current_app.config
    now = time.time()
    if (not session.get("admin") or seen is None or since is None or now - seen > cfg["ADMIN_SESSION_MIN"] * 60
            or now - since > cfg["ADMIN_SESSION_MAX_H"] * 3600 or since <= _logged_out_at()):
        _end_admin_session()
        return redirect(url_for("admin.login", expired=1 if seen else None))
    session["admin_seen"] = now
    return None


@admin_bp.route("/login", methods=["GET", "POST"])
def login():  # noqa: ANN201
    form = LoginForm()
    cfg = current_app.config
    error = "Your session expired; please log in again." if request.args.get("expired") else None
    if request.method == "POST":
        since = utcnow() - timedelta(minutes=cfg["ADMIN_THROTTLE_MIN"])
        failures = db().scalar(select(func.count()).select_from(LoginFailure).where(
            LoginFailure.remote_addr == (request.remote_addr or ""), LoginFailure.at >= since))
        if failures >= cfg["ADMIN_MAX_FAILED_LOGINS"]:
            return render_template("admin_login.html", form=form,
                                   error="Too many failed attempts; try again later."), 429
        if form.validate_on_submit() and _verify(form.password.data):
            session["admin"] = True
            session["admin_seen"] = session["admin_since"] = time.time()
            return redirect(url_for("admin.dashboard"))
        if form.errors.get("csrf_token"):
            return render_template("admin_login.html", form=form, error="The form expired; reload it."), 400
        db().add(LoginFailure(remote_addr=request.remote_addr or "", at=utcnow()))
        db().commit()
        error = ("Wrong password." if _password_hash()
                 else "No admin password is set: run `maco-study admin set-password --db URL`.")
        return render_template("admin_login.html", form=form, error=error), 401
    return render_template("admin_login.html", form=form, error=error)


@admin_bp.post("/logout")
def logout():  # noqa: ANN201
    if LogoutForm().validate_on_submit():
        _end_admin_session()
        setting = db().get(Setting, LOGOUT_SETTING)
        if setting is None:
            db().add(Setting(key=LOGOUT_SETTING, value=repr(time.time())))
        else:
            setting.value = repr(time.time())
        db().commit()
    return redirect(url_for("admin.login"))


def _dashboard_status(p: Participant, timeout: timedelta, now) -> str:  # noqa: ANN001
    status = effective_status(p, timeout, now)
    if status == IN_PROGRESS and p.stage in ("consent", "device", "instructions"):
        return "started"
    return status.replace("_", " ")


def exclusion_preview(session: Session, participant: Participant) -> dict[str, Any]:
    """The protocol's exclusion criteria for one participant (analysis decisions, never payment)."""
    answered = list(session.scalars(select(Trial).where(Trial.participant_id == participant.id,
                                                        Trial.answer_id.is_not(None))))
    catch = [t for t in answered if t.kind == "catch"]
    catch_acc = sum(t.chosen_side == t.correct_side for t in catch) / len(catch) if catch else None
    sides = {t.chosen_side for t in answered if t.kind != "practice"}
    reasons = []
    if catch_acc is not None and catch_acc < MIN_CATCH_ACCURACY:
        reasons.append("catch trials")
    if participant.instruction_ms is not None and participant.instruction_ms < MIN_INSTRUCTION_MS:
        reasons.append("instructions too fast")
    if len(sides) == 1:
        reasons.append("one side only")
    if participant.practice_flagged:
        reasons.append("practice not passed")
    return {"answered": len(answered), "catch_accuracy": catch_acc, "reasons": reasons}


@admin_bp.get("/")
def dashboard():  # noqa: ANN201
    ctx = state().study
    now = utcnow()
    participants = list(db().scalars(select(Participant).where(
        Participant.study_id == ctx.study_id, Participant.is_preview.is_(False))
        .order_by(Participant.created_at.desc())))
    statuses = ["started", "in progress", "completed", "returned", "timed out"]
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for p in participants:
        counts[p.condition][_dashboard_status(p, ctx.timeout, now)] += 1
    totals = {c: sum(counts[c].values()) for c in ctx.manifest.conditions}
    attrition = {c: (counts[c]["returned"] + counts[c]["timed out"]) / totals[c] if totals[c] else 0.0
                 for c in ctx.manifest.conditions}
    progress = dict(db().execute(
        select(Trial.participant_id, func.count()).where(Trial.answer_id.is_not(None))
        .group_by(Trial.participant_id)).all())
    planned = dict(db().execute(select(Trial.participant_id, func.count()).group_by(Trial.participant_id)).all())
    live = [{"p": p, "answered": progress.get(p.id, 0), "planned": planned.get(p.id, 0),
             "last_seen": as_utc(p.last_seen_at)}
            for p in participants if _dashboard_status(p, ctx.timeout, now) in ("started", "in progress")]
    exclusions = [{"p": p, **exclusion_preview(db(), p)} for p in participants if p.status == COMPLETED]
    return render_template("admin_dashboard.html", conditions=ctx.manifest.conditions, statuses=statuses,
                           counts=counts, totals=totals, attrition=attrition, live=live,
                           exclusions=exclusions, logout=LogoutForm(), study=current_study_name())


def current_study_name() -> str:
    return state().study.manifest.study


@admin_bp.get("/participant/<public_id>")
def participant_detail(public_id: str):  # noqa: ANN201
    p = db().scalar(select(Participant).where(Participant.public_id == public_id,
                                              Participant.study_id == state().study.study_id))
    if p is None:
        abort(404)
    trials = list(db().scalars(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)))
    return render_template("admin_participant.html", p=p, trials=trials, logout=LogoutForm(),
                           status=_dashboard_status(p, state().study.timeout, utcnow()),
                           exclusion=exclusion_preview(db(), p))


@admin_bp.get("/responses.csv")
def download_responses():  # noqa: ANN201
    buffer = io.StringIO()
    write_responses(db(), buffer, current_study_name(), state().study.timeout)
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=responses.csv"})
