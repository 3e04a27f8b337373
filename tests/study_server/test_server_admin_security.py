"""The admin under attack: every admin URL needs a login, every form its CSRF token, sessions
end (idle, absolute, logout, forged), and password guessing is throttled across workers."""
from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from sqlalchemy.orm import Session

from maco_study import main as maco_study
from study_server.models import LoginFailure

from .conftest import make_app
from .test_server_export_admin import ADMIN_PASSWORD as PASSWORD
from .test_server_export_admin import _csrf, _login
from .test_server_tampering import _stored



@pytest.fixture
def admin_app(db_url: str, bundle: Path):  # noqa: ANN201
    result = CliRunner().invoke(maco_study, ["admin", "set-password", "--db", db_url, "--password-stdin"],
                                input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    app = make_app(db_url, bundle)
    app.config["WTF_CSRF_ENABLED"] = True
    yield app
    app.extensions["maco"].engine.dispose()


def _admin_urls(app) -> list[tuple[str, set[str]]]:  # noqa: ANN001
    """Every admin URL but the login form, with placeholder arguments."""
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin.") and rule.endpoint != "admin.login":
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: "p-00000000", rule.rule)
            urls.append((path, set(rule.methods) - {"HEAD", "OPTIONS"}))
    assert {"/admin/", "/admin/live", "/admin/review", "/admin/image/p-00000000", "/admin/responses.csv",
            "/admin/logout"} <= {u for u, _ in urls}
    return urls


def _locked_out(client, app) -> None:  # noqa: ANN001
    """No admin URL answers anything but a redirect to the login form, and /preview is refused."""
    before = _stored(app)
    assert client.get("/preview?condition=maco").status_code == 403
    assert _stored(app) == before
    for path, methods in _admin_urls(app):
        for method in methods:
            response = client.open(path, method=method)
            assert response.status_code in (302, 400), (method, path, response.status_code)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/admin/login"), (method, path)
            assert b"participant_id" not in response.data and b"<table" not in response.data


def test_no_admin_url_is_reachable_without_a_login(admin_app, walker) -> None:  # noqa: ANN001
    participant = walker()  # a participant's own session is no admin session either
    participant.to_trials()
    _locked_out(admin_app.test_client(), admin_app)
    _locked_out(participant.client, admin_app)
    client = admin_app.test_client()
    assert _login(client).status_code == 302
    for path, methods in _admin_urls(admin_app):
        if "GET" in methods and "p-00000000" not in path:
            assert client.get(path).status_code == 200, path


def test_forged_admin_cookies_are_refused(admin_app) -> None:  # noqa: ANN001
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    forger = Flask("forger")
    forger.secret_key = "guessed-key"
    now = time.time()
    forged = SecureCookieSessionInterface().get_signing_serializer(forger).dumps(
        {"admin": True, "admin_seen": now, "admin_since": now})
    client = admin_app.test_client()
    client.set_cookie("session", forged)
    _locked_out(client, admin_app)


def test_every_admin_form_needs_its_csrf_token(admin_app) -> None:  # noqa: ANN001
    client = admin_app.test_client()
    assert _login(client).status_code == 302
    posts = [path for path, methods in _admin_urls(admin_app) if "POST" in methods] + ["/admin/login"]
    for path in posts:
        for token in (None, "forged-token"):
            data = {"password": PASSWORD} if token is None else {"password": PASSWORD, "csrf_token": token}
            assert client.post(path, data=data).status_code == 400, (path, token)
    assert client.get("/admin/").status_code == 200  # the refused logout did not log out
    other = admin_app.test_client()  # a token from another session is no good either
    stolen = _csrf(client, "/admin/")
    assert other.post("/admin/login", data={"password": PASSWORD, "csrf_token": stolen}).status_code == 400
    assert other.get("/admin/").status_code == 302


def test_admin_sessions_end_idle_after_their_lifetime_and_at_logout(admin_app) -> None:  # noqa: ANN001
    cfg = admin_app.config
    client = admin_app.test_client()
    assert _login(client).status_code == 302
    # active all along, but logged in longer ago than ADMIN_SESSION_MAX_H
    with client.session_transaction() as session:
        session["admin_since"] -= cfg["ADMIN_SESSION_MAX_H"] * 3600 + 1
    assert client.get("/admin/").status_code == 302
    _locked_out(client, admin_app)
    # idle longer than ADMIN_SESSION_MIN
    assert _login(client).status_code == 302
    with client.session_transaction() as session:
        session["admin_seen"] -= cfg["ADMIN_SESSION_MIN"] * 60 + 1
    assert client.get("/admin/").status_code == 302
    # logout: a copy of the cookie taken before it (another tab, a thief) is dead too
    assert _login(client).status_code == 302
    copy = admin_app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)
    assert copy.get("/admin/").status_code == 200
    assert client.post("/admin/logout", data={"csrf_token": _csrf(client, "/admin/")}).status_code == 302
    _locked_out(client, admin_app)
    _locked_out(copy, admin_app)
    assert _login(client).status_code == 302 and client.get("/admin/").status_code == 200  # a new login works


def test_password_guessing_is_throttled_per_address_in_every_worker(admin_app, db_url: str, bundle: Path) -> None:  # noqa: ANN001
    worker2 = make_app(db_url, bundle)  # a second server worker: the failures are in the database
    worker2.config["WTF_CSRF_ENABLED"] = True
    attacker, attacker2 = admin_app.test_client(), worker2.test_client()
    for client in (attacker, attacker2, attacker, attacker2):
        assert _login(client, "guess").status_code == 401
    assert _login(attacker, "guess").status_code == 401  # the 5th failure
    before = _stored(admin_app)
    assert _login(attacker2).status_code == 429  # even the right password, from any worker
    assert _login(attacker).status_code == 429
    assert attacker.get("/admin/").status_code == 302
    assert _stored(admin_app) == before
    researcher = admin_app.test_client()  # another address is not locked out
    researcher.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    assert _login(researcher).status_code == 302
    # once the failures are older than ADMIN_THROTTLE_MIN the address may try again
    with Session(admin_app.extensions["maco"].engine) as session:
        session.execute(update(LoginFailure).values(
            at=LoginFailure.at - timedelta(minutes=admin_app.config["ADMIN_THROTTLE_MIN"] + 1)))
        session.commit()
    assert _login(attacker).status_code == 302
    worker2.extensions["maco"].engine.dispose()


def test_login_posts_are_rate_limited_per_address(db_url: str, bundle: Path, rate_limit_clock) -> None:  # noqa: ANN001
    """On top of the failure count: a burst of logins (e.g. parallel guesses racing the count)
    is cut by RATE_LIMIT_ADMIN_LOGIN, and the login form itself stays free. The counters' clock
    stands still (rate_limit_clock), so the minute cannot end mid-test."""
    app = make_app(db_url, bundle, RATE_LIMIT_ADMIN_LOGIN="3 per minute", ADMIN_MAX_FAILED_LOGINS=100)
    client = app.test_client()
    app.config["WTF_CSRF_ENABLED"] = True
    for _ in range(3):
        assert _login(client, "guess").status_code == 401
    assert _login(client, "guess").status_code == 429
    assert _login(client).status_code == 429  # the right password too, until the minute is over
    assert client.get("/admin/login").status_code == 200
    app.extensions["maco"].engine.dispose()
