"""The researcher's side: login (argon2 hash, CSRF, throttling, idle time-out), the dashboard
(targets and live progress, refreshed by admin.js from /admin/live), the stimulus review, the
participant detail and the export."""
from __future__ import annotations

import io
import time
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import (Blueprint, Response, abort, current_app, redirect, render_template, request, send_from_directory,
                   session, url_for)
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from wtforms import PasswordField
from wtforms.validators import DataRequired

from .state import db, read_db, state
from .export import write_responses
from .models import COMPLETED, LoginFailure, Participant, ServedImage, Setting, Trial, utcnow
from .progress import (STATUS_COLUMNS, attrition, condition_progress, dashboard_status, exclusion_previews,
                       live_participants, main_trials_per_network, network_progress, overall,
                       real_participants)
from .speed import REVIEW_REASONS, signals
from .review import (SORTS, ReviewFilterError, activation_difference, page_count, page_of, parse_filters,
                     review_units)

admin_bp = Blueprint("admin", __name__, url_prefix="/admin")
PASSWORD_SETTING = "admin_password_hash"


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
    # the read-only session: checked on every admin request, it must not queue for SQLite's write lock
    setting = read_db().get(Setting, LOGOUT_SETTING)
    return 0.0 if setting is None else float(setting.value)


def admin_session_active() -> bool:
    """Logged in, and neither idle past ADMIN_SESSION_MIN, older than ADMIN_SESSION_MAX_H nor from
    before the last logout: the session lives in a signed cookie, so a copy of it would outlive a
    logout unless the server remembered when the last one happened."""
    seen, since = session.get("admin_seen"), session.get("admin_since")
    cfg = current_app.config
    now = time.time()
    return bool(session.get("admin") and seen is not None and since is not None
                and now - seen <= cfg["ADMIN_SESSION_MIN"] * 60
                and now - since <= cfg["ADMIN_SESSION_MAX_H"] * 3600 and since > _logged_out_at())


def start_participant_session(participant_id: int) -> None:
    """This browser becomes that participant; nothing of the session before carries over (the trial
    shown, the images reached) except an admin login, so a researcher's preview keeps it."""
    admin = {key: session[key] for key in ADMIN_SESSION_KEYS if key in session}
    session.clear()
    session.update(admin)
    session["participant"] = participant_id


@admin_bp.before_request
def _require_login():  # noqa: ANN202
    if request.endpoint == "admin.login":
        return None
    if not admin_session_active():
        expired = session.get("admin_seen") is not None
        _end_admin_session()
        return redirect(url_for("admin.login", expired=1 if expired else None))
    if request.endpoint != "admin.live":  # the dashboard's own refresh is no sign of a person
        session["admin_seen"] = time.time()
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


def _targets() -> dict[str, int]:
    return current_app.config["TARGET_PER_CONDITION"]


def _live_context() -> dict:
    """What the refreshed part of the dashboard shows (read-only session: never waits for writes)."""
    ctx, now = state().study, utcnow()
    participants = real_participants(read_db(), ctx)
    completed = [p for p in participants if p.status == COMPLETED]
    conditions = condition_progress(participants, ctx, _targets(), now)
    return {"conditions": conditions, "overall": overall(conditions), "statuses": STATUS_COLUMNS,
            "attrition": attrition, "networks": network_progress(read_db(), ctx, _targets()),
            "live": live_participants(read_db(), participants, ctx, now), "completed": completed,
            "exclusions": exclusion_previews(read_db(), completed), "updated": now}


@admin_bp.get("/")
def dashboard():  # noqa: ANN201
    return render_template("admin_dashboard.html", study=current_study_name(), logout=LogoutForm(),
                           refresh_s=current_app.config["ADMIN_REFRESH_S"], **_live_context())


@admin_bp.get("/live")
def live():  # noqa: ANN201
    """The dashboard's live part alone, fetched by admin.js every ADMIN_REFRESH_S seconds."""
    response = Response(render_template("admin_live.html", **_live_context()))
    response.headers["Cache-Control"] = "no-store"
    return response


def current_study_name() -> str:
    return state().study.manifest.study


@admin_bp.get("/participant/<public_id>")
def participant_detail(public_id: str):  # noqa: ANN201
    p = read_db().scalar(select(Participant).where(Participant.public_id == public_id,
                                                   Participant.study_id == state().study.study_id))
    if p is None:
        abort(404)
    trials = list(read_db().scalars(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)))
    images_fetched = read_db().scalar(select(func.count()).select_from(ServedImage)
                                      .where(ServedImage.participant_id == p.id))
    return render_template("admin_participant.html", p=p, trials=trials, logout=LogoutForm(),
                           status=dashboard_status(p, state().study.timeout, utcnow()),
                           exclusion=exclusion_previews(read_db(), [p])[p.id],
                           signals=signals(trials, images_fetched), review_reasons=REVIEW_REASONS)


@admin_bp.get("/review")
def review():  # noqa: ANN201
    manifest = state().study.manifest
    try:
        filters = parse_filters(request.args, manifest)
    except ReviewFilterError as exc:
        return render_template("admin_message.html", title="Stimulus review", text=str(exc),
                               logout=LogoutForm()), 400
    units = review_units(manifest, filters)
    pages = page_count(units)
    if filters.page > pages:
        return redirect(url_for("admin.review", **filters.query(page=pages)))
    return render_template("admin_review.html", manifest=manifest, filters=filters, units=page_of(units, filters.page),
                           n_units=len(units), n_pairs=sum(len(u.pairs) for u in units), pages=pages,
                           per_participant=main_trials_per_network(manifest), logout=LogoutForm(),
                           sorts=SORTS, difference=activation_difference)


@admin_bp.get("/image/<image_id>")
def image(image_id: str):  # noqa: ANN201
    """A bundle image by its content id, as the review page shows it."""
    if image_id not in state().study.manifest.images:
        abort(404)
    return send_from_directory(state().images.folder, f"{image_id}.png", max_age=86400, mimetype="image/png")


@admin_bp.get("/responses.csv")
def download_responses():  # noqa: ANN201
    buffer = io.StringIO()
    write_responses(db(), buffer, current_study_name(), state().study.timeout)
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=responses.csv"})
