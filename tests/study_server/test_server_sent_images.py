"""How GET /img sends a trial's images (SEND_IMAGES, study_server/images.py): by the app with an
ETag per opaque id, or by a web server in front (X-Accel-Redirect, X-Sendfile) from files the
server wrote. In every mode the server checks the participant and records the image as sent before
anything leaves, the reply names nothing of the image, and an answer needs the trial's images."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.config import ConfigError
from study_server.images import SENT_FILE_MTIME, SENT_IMAGES_LOCATION, uncompressed_png
from study_server.models import ServedImage

from .conftest import Walker, make_app


def _first_trial(app) -> tuple[Walker, dict]:  # noqa: ANN001
    w = Walker(app)
    w.to_first_trial()
    return w, w.study.trial()["trial"]


def _served_tokens(app, w: Walker) -> set[str]:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return set(session.scalars(select(ServedImage.token).where(ServedImage.participant_id == w.participant().id)))


def _token(url: str) -> str:
    return url.removeprefix("/img/")


def _expected_bytes(app, bundle: Path, image_id: str) -> bytes:  # noqa: ANN001
    original = bundle / "images" / f"{image_id}.png"
    return uncompressed_png(original) if image_id in app.extensions["maco"].images.queries else original.read_bytes()


@pytest.mark.parametrize("mode", ["x-accel-redirect", "x-sendfile"])
def test_a_web_server_sends_the_file_and_the_server_still_records_it(sqlite_url: str, bundle: Path, tmp_path: Path,
                                                                      mode: str) -> None:
    sent = tmp_path / "sent"
    app = make_app(sqlite_url, bundle, SEND_IMAGES=mode, SENT_IMAGES_DIR=str(sent))
    w, trial = _first_trial(app)
    pid = w.participant().id
    header = {"x-accel-redirect": "X-Accel-Redirect", "x-sendfile": "X-Sendfile"}[mode]
    sizes = {}
    for key in ("base", "left", "right"):
        token = _token(trial[key])
        image_id, _ = app.extensions["maco"].participant_images(pid)[token]
        assert token not in _served_tokens(app, w)
        reply = w.client.get(trial[key])
        assert reply.status_code == 200 and reply.data == b"" and reply.mimetype == "image/png"
        assert reply.headers["Cache-Control"].startswith("private")
        target = reply.headers[header]
        path = sent / f"{image_id}.png"
        assert target == (SENT_IMAGES_LOCATION + path.name if mode == "x-accel-redirect" else str(path.resolve()))
        # the file holds what the app itself would send; one modification time for all (no Last-Modified tells)
        assert path.read_bytes() == _expected_bytes(app, bundle, image_id)
        assert path.stat().st_mtime == SENT_FILE_MTIME
        # the header is for the web server, which removes it; nothing else in the reply names the file
        others = " ".join(v for k, v in reply.headers.items() if k != header) + reply.get_data(as_text=True)
        assert image_id not in others and str(sent) not in others and "ETag" not in reply.headers
        assert token in _served_tokens(app, w)  # recorded before the web server sends anything
        sizes[key] = path.stat().st_size
    assert sizes["left"] == sizes["right"]  # the queries' files say nothing of the side
    # the recorded images let the answer through, as when the app sends them
    answer = w.study.answer(w.answer_body(trial["position"], w.correct_side(trial["position"])))
    assert "error" not in answer
    # an image of a trial not reached yet: refused, and no header names its file
    later = [t for t, (_, scope) in app.extensions["maco"].participant_images(pid).items()
             if scope == "" and t not in _served_tokens(app, w)]
    refused = [w.client.get(f"/img/{t}") for t in later]
    assert any(r.status_code == 404 for r in refused)
    assert all(header not in r.headers for r in refused if r.status_code == 404)
    app.extensions["maco"].engine.dispose()


def test_the_app_sends_the_bytes_with_an_etag_that_is_the_opaque_id(app, bundle: Path) -> None:  # noqa: ANN001
    w, trial = _first_trial(app)
    for key in ("base", "left", "right"):
        token = _token(trial[key])
        image_id, _ = app.extensions["maco"].participant_images(w.participant().id)[token]
        reply = w.client.get(trial[key])
        assert reply.status_code == 200 and reply.data == _expected_bytes(app, bundle, image_id)
        assert reply.headers["ETag"] == f'"{token}"' and reply.headers["Cache-Control"].startswith("private")
        assert "Last-Modified" not in reply.headers and "X-Accel-Redirect" not in reply.headers
        revalidated = w.client.get(trial[key], headers={"If-None-Match": reply.headers["ETag"]})
        assert revalidated.status_code == 304 and revalidated.data == b""
        partial = w.client.get(trial[key], headers={"Range": "bytes=0-9"})  # as send_file answers one
        assert partial.status_code == 206 and partial.data == reply.data[:10]
        assert app.test_client().get(trial[key]).status_code == 404  # another browser: nothing


def test_a_web_server_mode_needs_its_folder(sqlite_url: str, bundle: Path) -> None:
    with pytest.raises(ConfigError, match="needs SENT_IMAGES_DIR"):
        make_app(sqlite_url, bundle, SEND_IMAGES="x-accel-redirect")
    with pytest.raises(ConfigError, match="SEND_IMAGES must be one of app, x-accel-redirect, x-sendfile"):
        make_app(sqlite_url, bundle, SEND_IMAGES="nginx")


SECURITY = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def test_an_image_is_answered_before_flask_and_a_refusal_by_its_view(sqlite_url: str, bundle: Path,
                                                                      tmp_path: Path) -> None:
    """GET /img, the app's most frequent request, costs no Flask request (opaque_images.py): no hook
    runs for an image sent, and its reply carries what Flask's did (the security headers, `Vary:
    Cookie`); a refusal is Flask's own 404 page, through every hook."""
    from flask import request

    app = make_app(sqlite_url, bundle, SEND_IMAGES="x-accel-redirect", SENT_IMAGES_DIR=str(tmp_path / "sent"))
    through_flask: list[str] = []
    app.before_request(lambda: through_flask.append(request.path))
    w, trial = _first_trial(app)
    for key in ("base", "left", "right"):
        reply = w.client.get(trial[key])
        assert reply.status_code == 200 and reply.headers["X-Accel-Redirect"].startswith(SENT_IMAGES_LOCATION)
        assert reply.headers["Vary"] == "Cookie" and "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
        assert {k: reply.headers[k] for k in SECURITY} == SECURITY
        assert reply.headers.get("Set-Cookie") is None  # an image never changes the session
    assert not [path for path in through_flask if path.startswith("/img/")]
    assert _served_tokens(app, w) == {_token(trial[key]) for key in ("base", "left", "right")}
    for url in ("/img/" + "A" * 22, "/img/" + "B" * 22):
        refused = w.client.get(url)
        assert refused.status_code == 404 and refused.mimetype == "text/html" and "X-Accel-Redirect" not in refused.headers
        assert {k: refused.headers[k] for k in SECURITY} == SECURITY and refused.headers["Vary"] == "Cookie"
        assert through_flask[-1] == url
    app.extensions["maco"].engine.dispose()


def test_an_error_while_recording_an_image_is_flask_s_500_and_sends_nothing(sqlite_url: str, bundle: Path,
                                                                            tmp_path: Path) -> None:
    app = make_app(sqlite_url, bundle, SEND_IMAGES="x-accel-redirect", SENT_IMAGES_DIR=str(tmp_path / "sent"))
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: Flask logs it and answers 500
    w, trial = _first_trial(app)
    state = app.extensions["maco"]
    recorded = state.record_served

    def database_down(participant_id: int, token: str) -> None:
        raise OSError("the database is down")

    state.record_served = database_down
    try:
        reply = w.client.get(trial["base"])
    finally:
        state.record_served = recorded
    assert reply.status_code == 500 and "X-Accel-Redirect" not in reply.headers
    assert {k: reply.headers[k] for k in SECURITY} == SECURITY
    assert _served_tokens(app, w) == set()
    assert w.client.get(trial["base"]).status_code == 200  # the database back: sent and recorded
    assert _served_tokens(app, w) == {_token(trial["base"])}
    app.extensions["maco"].engine.dispose()
