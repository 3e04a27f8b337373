"""Speed and presence decided on the server (study_server/speed.py): an answer needs its trial's
images sent, an impossible rt_ms is refused, and a session at a bot's pace finishes with the review
code, never the completion code; a person's pace gets the completion code. Prolific's id format."""
from __future__ import annotations

import csv
import io
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.client import answer_body, start_path
from study_server.config import DEFAULTS, ConfigError
from study_server.models import Participant, ServedImage, Trial, utcnow

from .conftest import Walker, make_app

PACE = {key: DEFAULTS[key] for key in ("MIN_ANSWER_MS", "MIN_SESSION_S")}  # the defaults, not the suite's 0


@pytest.fixture
def paced_app(db_url: str, bundle: Path):  # noqa: ANN201
    app = make_app(db_url, bundle, REVIEW_CODE="REV1EW", **PACE)
    yield app
    app.extensions["maco"].engine.dispose()


def _trials(walker: Walker) -> list[Trial]:
    with Session(walker.app.extensions["maco"].engine) as session:
        return list(session.scalars(select(Trial).join(Participant).where(Participant.prolific_pid == walker.pid)
                                    .order_by(Trial.position)))


def _done_page(walker: Walker) -> str:
    return walker.client.get("/study").data.decode()


def test_scripted_speed_run_without_images_never_completes(paced_app) -> None:  # noqa: ANN001
    bot = Walker(paced_app)
    bot.to_first_trial()  # start link, consent, device check, instructions
    refused = []
    for _ in range(30):  # every trial it is given, answered at once with rt_ms 5, no image fetched
        data = bot.study.trial()
        if data["done"]:
            break
        trial = data["trial"]
        reply = bot.post("/api/answer", answer_body(trial["position"], "left", 3, 5.0))
        refused.append((reply.status_code, reply.get_json()["error"]))
    assert refused == [(409, "the pictures of this trial were not loaded: reload the page")] * 30
    assert all(t.answer_id is None for t in _trials(bot))  # nothing stored
    assert bot.participant().status == "in_progress" and bot.participant().stage == "trials"
    assert bot.complete().status_code == 409
    page = _done_page(bot)
    assert "C0DE123" not in page and "REV1EW" not in page


@pytest.mark.parametrize("missing", ["base", "left", "right"])
def test_an_answer_counts_once_every_opaque_image_of_its_trial_was_sent(paced_app, missing: str) -> None:  # noqa: ANN001
    """Presence is decided on the base and both queries (per-participant ids); the references are
    static files a proxy may serve from its cache, so none of them is required (reference_files.py)."""
    w = Walker(paced_app)
    w.to_first_trial()
    trial = w.study.trial()["trial"]
    urls = [trial[k] for k in ("base", "left", "right") if k != missing]
    for url in urls:
        assert w.client.get(url).status_code == 200
    side = w.correct_side(trial["position"])
    body = w.answer_body(trial["position"], side)
    assert w.post("/api/answer", body).status_code == 409
    assert w.client.get(trial[missing]).status_code == 200  # no reference fetched (the condition may show some)
    assert w.post("/api/answer", body).get_json()["stored"] is True
    with Session(paced_app.extensions["maco"].engine) as session:
        tokens = set(session.scalars(select(ServedImage.token).where(
            ServedImage.participant_id == w.participant().id)))
    assert {url.removeprefix("/img/") for url in urls} <= tokens


def test_rt_ms_below_the_floor_is_refused_and_nothing_stored(paced_app) -> None:  # noqa: ANN001
    w = Walker(paced_app)
    w.to_trials()
    trial = w.current()
    side = w.correct_side(trial["position"])
    for rt_ms in (0, 5, DEFAULTS["MIN_RT_MS"] - 0.1):
        reply = w.post("/api/answer", w.answer_body(trial["position"], side, rt_ms=rt_ms))
        assert reply.status_code == 422 and "faster than the pictures can be seen" in reply.get_json()["error"]
    assert all(t.answer_id is None for t in _trials(w))
    stored = w.post("/api/answer", w.answer_body(trial["position"], side, rt_ms=DEFAULTS["MIN_RT_MS"]))
    assert stored.status_code == 200


def test_bot_that_fetches_images_gets_the_review_code(paced_app) -> None:  # noqa: ANN001
    bot = Walker(paced_app)
    bot.to_trials()
    n = bot.answer_all()
    assert bot.complete().status_code == 200
    page = _done_page(bot)
    assert "REV1EW" in page and "C0DE123" not in page
    assert "https://app.prolific.com/submissions/complete?cc=REV1EW" in page
    p = bot.participant()
    assert (p.status, p.review) == ("completed", "fast_answers;fast_session")  # finishes normally, marked
    trials = _trials(bot)
    assert n == len(trials) and all(t.server_elapsed_ms < 1000 for t in trials)
    assert {(t.webdriver, t.answer_input) for t in trials} == {(False, "key")}


def _later(monkeypatch: pytest.MonkeyPatch, module: str, seconds: float) -> None:
    """`module`'s reading of the server clock `seconds` ahead: the answers' (server_elapsed_ms) or
    the completion's (the session's length), a person's pace without waiting for it."""
    monkeypatch.setattr(f"study_server.{module}.utcnow", lambda: utcnow() + timedelta(seconds=seconds))


def test_a_persons_pace_gets_the_completion_code(paced_app, monkeypatch) -> None:  # noqa: ANN001
    _later(monkeypatch, "answers", 3)
    person = Walker(paced_app)
    person.to_trials()
    while (trial := person.current()) is not None:
        side = person.correct_side(trial["position"])
        person.study.answer(person.answer_body(trial["position"], side, rt_ms=2500.0, input="pointer"))
    _later(monkeypatch, "flow", 5 * 60)
    assert person.complete().status_code == 200
    page = _done_page(person)
    assert "C0DE123" in page and "REV1EW" not in page
    assert person.participant().review == ""
    assert all(t.server_elapsed_ms >= 3000 for t in _trials(person))


def test_automation_and_a_clock_gap_send_a_persons_pace_to_review(paced_app, monkeypatch,  # noqa: ANN001
                                                                   tmp_path: Path) -> None:
    _later(monkeypatch, "answers", 5)
    w = Walker(paced_app)
    w.to_trials()
    while (trial := w.current()) is not None:
        # a script that waits on the server's clock and reports a short rt_ms; one answer from webdriver
        side = w.correct_side(trial["position"])
        w.study.answer(w.answer_body(trial["position"], side, rt_ms=300.0, webdriver=trial["position"] == 3))
    _later(monkeypatch, "flow", 5 * 60)
    assert w.complete().status_code == 200
    assert w.participant().review == "clock_gap;webdriver"
    assert "REV1EW" in _done_page(w)
    client = paced_app.test_client()
    with client.session_transaction() as cookie:  # an admin's session (the login is tested elsewhere)
        cookie["admin"], cookie["admin_seen"] = True, time.time()
        cookie["admin_since"] = cookie["admin_seen"]
    rows = list(csv.DictReader(io.StringIO(client.get("/admin/responses.csv").data.decode())))
    assert {r["review"] for r in rows} == {"clock_gap;webdriver"}
    assert [r["webdriver"] for r in rows].count("1") == 1 and {r["answer_input"] for r in rows} == {"key"}
    assert len({r["images_fetched"] for r in rows}) == 1 and int(rows[0]["images_fetched"]) >= 3 * len(rows)
    detail = client.get(f"/admin/participant/{w.participant().public_id}").data.decode()
    assert "REVIEW code" in detail and "navigator.webdriver" in detail
    live = client.get("/admin/live").data.decode()
    assert "REVIEW</strong>: clock_gap, webdriver" in live


def test_new_answer_fields_are_checked(paced_app) -> None:  # noqa: ANN001
    w = Walker(paced_app)
    w.to_trials()
    trial = w.current()
    for extra, message in (({"webdriver": "no"}, "webdriver: must be true or false"),
                           ({"input": "voice"}, 'input: must be "key" or "pointer"')):
        reply = w.post("/api/answer", w.answer_body(trial["position"], "left", **extra))
        assert (reply.status_code, reply.get_json()["error"]) == (400, message)
    body = w.answer_body(trial["position"], "left")
    del body["webdriver"]
    assert w.post("/api/answer", body).get_json()["error"] == "webdriver: missing"


# --- Prolific's id format ----------------------------------------------------------------------
@pytest.mark.parametrize("pid", ["abc", "5F0C1E2D3B4A59687766554A", "5f0c1e2d3b4a59687766554", "5f0c1e2d3b4a59687766554a0",
                                 "5f0c1e2d3b4a5968776655zz"])
def test_a_pid_not_in_prolifics_format_is_refused(app, pid: str) -> None:  # noqa: ANN001
    reply = app.test_client().get(start_path(pid, "s1", "x1"))
    assert reply.status_code == 400 and b"This is not a Prolific ID" in reply.data
    with Session(app.extensions["maco"].engine) as session:
        assert session.scalar(select(Participant)) is None  # no participant, no condition taken


def test_another_recruiters_id_format(db_url: str, bundle: Path) -> None:
    app = make_app(db_url, bundle, PROLIFIC_PID_PATTERN=r"[A-Z]{3}[0-9]{4}")
    client = app.test_client()
    assert client.get(start_path("ABC1234", "s1", "x1")).status_code == 302
    assert client.get(start_path("5f0c1e2d3b4a59687766554a", "s1", "x1")).status_code == 400
    app.extensions["maco"].engine.dispose()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"PROLIFIC_PID_PATTERN": "[0-9"}, "PROLIFIC_PID_PATTERN is not a regular expression"),
    ({"REVIEW_CODE": "C0DE123"}, "REVIEW_CODE must differ from COMPLETION_CODE")])
def test_configuration_errors(sqlite_url: str, bundle: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app(sqlite_url, bundle, **overrides)
