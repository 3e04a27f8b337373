"""The session cookie verified once per value (study_server/cookies.py): a browser's repeated
cookie costs one signature check, and every guarantee of Flask's signed cookie stays: a tampered
cookie is no session, an old one expires, and no request sees another's changes."""
from __future__ import annotations

from itsdangerous import URLSafeTimedSerializer

import study_server.cookies as cookies

from .conftest import Walker


def _cookie(w: Walker) -> str:
    return w.client.get_cookie("session").value


def test_a_repeated_cookie_is_verified_once(app, monkeypatch) -> None:  # noqa: ANN001
    w = Walker(app)
    w.to_first_trial()
    trial = w.study.trial()["trial"]
    calls = []
    original = URLSafeTimedSerializer.loads
    monkeypatch.setattr(URLSafeTimedSerializer, "loads", lambda *a, **k: calls.append(1) or original(*a, **k))
    for _ in range(3):
        assert w.client.get(trial["base"]).status_code == 200
        assert w.study.trial()["trial"]["position"] == trial["position"]
    assert len(calls) <= 1  # Flask alone checks the signature on each of the 6 requests


def test_a_tampered_or_expired_cookie_is_no_session(app, monkeypatch) -> None:  # noqa: ANN001
    w = Walker(app)
    w.to_first_trial()
    assert w.client.get("/api/trial").status_code == 200
    value = _cookie(w)
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    w.client.set_cookie("session", forged)
    assert w.client.get("/api/trial").status_code == 403
    w.client.set_cookie("session", value)
    assert w.client.get("/api/trial").status_code == 200  # cached now
    lifetime = app.permanent_session_lifetime.total_seconds()
    now = cookies.time.time()
    monkeypatch.setattr(cookies.time, "time", lambda: now + lifetime + 5)
    assert w.client.get("/api/trial").status_code == 403  # the cache does not outlive the cookie


def test_no_request_sees_another_s_changes(app) -> None:  # noqa: ANN001
    w = Walker(app)
    w.to_first_trial()
    assert w.client.get("/api/trial").status_code == 200
    value = _cookie(w)
    interface = app.session_interface
    with app.test_request_context(headers={"Cookie": f"session={value}"}) as ctx:
        first = interface.open_session(app, ctx.request)
        first["served"] = 999
        first["participant"] = -1
        second = interface.open_session(app, ctx.request)
    assert second["served"] != 999 and second["participant"] == w.participant().id
