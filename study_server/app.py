"""The Flask application factory.

`create_app()` reads the configuration (see study_server.config), connects to
the database, which must already be upgraded and hold the bundle's study
(`maco-study serve` does both), and registers the participant, api and admin
blueprints. `maco-study serve` runs it under Granian through
`study_server.cli:create_app_when_database_answers`: a worker that starts while
the database is down waits for it instead of making Granian stop every worker.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from stimuli.manifest import load_manifest

from . import logs
from .cookies import VerifiedOnceSessionInterface
from .config import check_codes, check_send_images, condition_targets, load_config, pid_pattern, require_secret_key
from .db import make_engine, make_sessionmaker
from .formatting import register_filters
from .headers import SecurityHeaders
from .models import Setting, Study
from .opaque_images import OpaqueImages
from .plan import StudyContext, load_pairs
from .reference_files import ReferenceFiles, reference_ids
from .speed import SpeedRules
from .state import ServerState, init_state


def get_or_create_setting(sessions: sessionmaker[Session], key: str, make_value) -> str:  # noqa: ANN001
    """A server-wide value; the first worker to need it creates it, the others read it."""
    with sessions() as session:
        setting = session.get(Setting, key)
        if setting is None:
            session.add(Setting(key=key, value=make_value()))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # another worker won the race: use its value
            setting = session.get(Setting, key)
        return setting.value


class WholeBody:
    """WSGI middleware: the reply's body as one bytes object in a list.

    Flask hands the server an iterator, which Granian drains from Rust chunk by chunk while holding
    the GIL (8 % of the workers' GIL time under load, benchmarks/RESULTS.md, issue 28: the server
    stack); a list is written in one call. Every reply here is small (pages, JSON, images of a few
    tens of kB) and none streams."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        body = self.app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()


class JSONProvider(DefaultJSONProvider):
    """A body nested too deep for the parser is malformed JSON like any other (a 400, not a 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    config = load_config(overrides)
    require_secret_key(config)
    check_codes(config)
    check_send_images(config)
    pid_pattern(config)
    if not config["BUNDLE_DIR"]:
        raise RuntimeError("no bundle configured: set MACO_BUNDLE_DIR (or use maco-study serve --bundle)")
    logs.install()  # before the first log line: no request can forge one (logs.py)
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.session_interface = VerifiedOnceSessionInterface()
    app.config.update(config)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(config["COOKIE_SECURE"]),
        PERMANENT_SESSION_LIFETIME=timedelta(days=2),
        # the cookie is re-signed only when the session changes, not on every image and trial
        # fetch (its 2 days from /start outlast any participant's session)
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_TIME_LIMIT=None,  # the admin session time-out bounds it
    )
    engine = make_engine(config["DATABASE_URL"])
    sessions = make_sessionmaker(engine)
    read_engine = engine
    if engine.dialect.name == "sqlite":
        read_engine = make_engine(config["DATABASE_URL"], read_only=True)
    manifest = load_manifest(config["BUNDLE_DIR"])
    with sessions() as session:
        study = session.scalar(select(Study).where(Study.name == manifest.study))
        pairs = {} if study is None else load_pairs(session, study.id)
    if study is None or study.fingerprint != manifest.fingerprint():
        raise RuntimeError(f"the bundle {config['BUNDLE_DIR']} is not imported in this database "
                           "(or another bundle of that study is): run maco-study serve --bundle ... --db ...")
    # only in preview mode or tests may the key be missing (require_secret_key): then one is kept in the DB
    app.secret_key = config["SECRET_KEY"] or get_or_create_setting(
        sessions, "secret_key", lambda: secrets.token_hex(32))
    server_state = ServerState(
        engine, sessions, read_engine, make_sessionmaker(read_engine),
        StudyContext(study.id, manifest, timedelta(minutes=config["PARTICIPANT_TIMEOUT_MIN"]), pairs),
        Path(config["BUNDLE_DIR"]), token_secret=app.secret_key.encode(), speed=SpeedRules.from_config(config),
        sent_images_dir=Path(config["SENT_IMAGES_DIR"]) if config["SEND_IMAGES"] != "app" else None)
    init_state(app, server_state)

    app.config["TARGET_PER_CONDITION"] = condition_targets(config["TARGET_PER_CONDITION"], manifest.conditions)
    register_filters(app)
    untrained = [f"{n.key} ({n.timm_name})" for n in manifest.networks if n.weights == "random"]
    # the demo's networks: a checkpoint that says it was trained on a task of its own (stimuli's provenance)
    trained_here = [f"{n.key} ({n.timm_name})" for n in manifest.networks
                    if "task" in manifest.provenance.get("network_training", {}).get(n.key, {})]

    @app.context_processor
    def _demo_networks_notice() -> dict[str, Any]:
        # demo and test bundles: every page says what their networks are
        return {"random_weight_networks": untrained, "task_trained_networks": trained_here}

    from .admin import admin_bp
    from .api import api_bp
    from .limits import init_rate_limits
    from .participant import participant_bp

    csrf = CSRFProtect(app)
    # The JSON API is not a form target: it only accepts application/json,
    # which a cross-site page cannot send without CORS, and cookies are SameSite=Lax.
    csrf.exempt(api_bp)
    app.register_blueprint(participant_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(admin_bp)
    rate_limits = init_rate_limits(app)
    # the trials' images answered before Flask, behind ProxyFix (the limit's client address)
    app.wsgi_app = SecurityHeaders(OpaqueImages(app.wsgi_app, app, server_state, rate_limits))
    if config["PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config["PROXIES"], x_proto=config["PROXIES"])
    # reference images answered before Flask: no session, rate limit or database (reference_files.py)
    app.wsgi_app = WholeBody(ReferenceFiles(app.wsgi_app, server_state.images.folder, reference_ids(manifest)))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # noqa: ANN202
        if request.path.startswith("/api/"):
            return jsonify(error=exc.description), exc.code
        return exc

    return app
