"""Rate limits: a script is cut off with a 429 that stores nothing; a real participant's pace never is.
And the secret key: required outside preview mode and tests."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stimuli.testing import build_test_bundle
from study_server.client import start_path
from study_server.config import DEFAULTS, ConfigError

from .conftest import FakeClock, Walker, make_app, prolific_pid
from .test_server_tampering import _stored

pytestmark = pytest.mark.usefixtures("rate_limit_clock")

DEFAULT_LIMITS = {key: DEFAULTS[key] for key in ("RATE_LIMIT_PARTICIPANT", "RATE_LIMIT_IMAGES",
                                                 "RATE_LIMIT_START", "RATE_LIMIT_ADMIN_LOGIN")}


def _assert_too_many(response) -> None:  # noqa: ANN001
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    if response.is_json:  # the API: a message study.js shows while it waits and retries
        assert response.get_json()["retry_after_s"] >= 1 and "too many requests" in response.get_json()["error"]


def test_a_participant_flooding_the_api_is_limited(sqlite_url: str, bundle: Path) -> None:
    app = make_app(sqlite_url, bundle, RATE_LIMIT_PARTICIPANT="12 per minute")
    mallory, alice = Walker(app), Walker(app)
    mallory.to_trials()  # start is not counted; consent, device, /study, instructions, trial: 5
    trial = mallory.current()
    for _ in range(6):
        assert mallory.client.get("/api/trial").status_code == 200
    before = _stored(app)
    answer = mallory.post("/api/answer", mallory.answer_body(trial["position"], "left"))
    _assert_too_many(answer)
    _assert_too_many(mallory.client.get("/study"))  # the pages share the participant's budget
    assert _stored(app) == before  # the refused answer is not stored
    alice.to_trials()  # every participant has a budget of their own
    assert alice.post("/api/answer", alice.answer_body(0, "left")).status_code == 200


def test_image_floods_are_limited_per_participant(sqlite_url: str, bundle: Path) -> None:
    app = make_app(sqlite_url, bundle, RATE_LIMIT_IMAGES="5 per minute")
    mallory = Walker(app)
    mallory.to_first_trial()
    url = mallory.study.trial()["trial"]["base"]
    for _ in range(5):
        assert mallory.client.get(url).status_code == 200
    _assert_too_many(mallory.client.get(url))


def test_new_participants_are_limited_per_address(sqlite_url: str, bundle: Path) -> None:
    app = make_app(sqlite_url, bundle, RATE_LIMIT_START="3 per minute")
    script = app.test_client()
    for n in range(3):
        assert script.get(start_path(prolific_pid(f"bot{n}"), "s", "x")).status_code == 302
    before = _stored(app)
    _assert_too_many(script.get(start_path(prolific_pid("bot9"), "s", "x")))
    _assert_too_many(script.get("/preview"))  # the same budget
    assert _stored(app) == before  # no participant created
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert elsewhere.get(start_path(prolific_pid("human1"), "s", "x")).status_code == 302


def test_a_fast_real_participant_is_never_limited(sqlite_url: str, tmp_path: Path, rate_limit_clock: FakeClock) -> None:
    """The default limits against the fastest plausible person, on a clock the test moves: one answer
    a second for over a minute, every image (and the next trial's) fetched as study.js does with
    no HTTP cache, a reload every 7 trials (page, trial, the kept answer sent again), and a retry
    of every answer as after a lost reply."""
    clock = rate_limit_clock
    bundle = tmp_path / "bundle"  # 64 main trials: more than a minute at one answer a second
    build_test_bundle(bundle, pairs_per_unit=16, n_practice=2, n_catch=2)
    app = make_app(sqlite_url, bundle, **DEFAULT_LIMITS)
    person = Walker(app)

    def ok(response):  # noqa: ANN001, ANN202
        assert response.status_code not in (429, 500), (response.request.path, response.status_code)
        return response

    ok(person.start())
    for url, body in (("/api/consent", {"agree": True}),
                      ("/api/device", {"window_width": 1280, "window_height": 800, "is_phone": False}),
                      ("/api/instructions", {})):
        ok(person.client.get("/study"))
        ok(person.post(url, body))
        clock.now += 1
    ok(person.client.get("/study"))
    page_images: set[str] = set()  # study.js's image cache lives as long as the page
    answered = 0
    while True:
        data = ok(person.client.get("/api/trial")).get_json()
        if data["done"]:
            break
        trial = data["trial"]
        for url in [trial["base"], trial["left"], trial["right"], *trial["references"], *trial["preload"]]:
            if url not in page_images:
                page_images.add(url)
                ok(person.client.get(url))
        body = person.answer_body(trial["position"], person.correct_side(trial["position"]))
        ok(person.post("/api/answer", body))
        ok(person.post("/api/answer", body))  # the reply was lost: the same answer again
        answered += 1
        if answered % 7 == 0:  # a reload: the page, its trial, its pending answer
            page_images.clear()
            ok(person.client.get("/study"))
            ok(person.post("/api/answer", body))
        clock.now += 1  # the fastest person: one answer a second
    assert answered > 60 and clock.now - 1_000_000 > 60
    ok(person.client.get("/study"))
    assert ok(person.complete()).status_code == 200


def test_the_secret_key_is_required_outside_preview_mode(sqlite_url: str, bundle: Path, monkeypatch) -> None:  # noqa: ANN001
    from maco_study import main as maco_study
    from study_server.app import create_app

    make_app(sqlite_url, bundle)  # upgraded, bundle imported
    base = {"DATABASE_URL": sqlite_url, "BUNDLE_DIR": str(bundle)}
    with pytest.raises(ConfigError, match="no secret key configured: set MACO_SECRET_KEY"):
        create_app(base)
    assert create_app({**base, "PREVIEW_MODE": 1}).secret_key  # a trial run: generated, kept in the DB
    assert create_app({**base, "SECRET_KEY": "k" * 64}).secret_key == "k" * 64
    monkeypatch.delenv("MACO_SECRET_KEY", raising=False)
    monkeypatch.delenv("MACO_PREVIEW_MODE", raising=False)
    result = CliRunner().invoke(maco_study, ["serve", "--bundle", str(bundle), "--db", sqlite_url])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no secret key configured" in lines[0], result.output



def test_memory_storage_sweeps_at_most_once_per_interval(monkeypatch) -> None:  # noqa: ANN001
    """limits' memory storage replaces its finished expiry timer on the next hit: a new thread and a
    sweep of every counter per request under load. Ours keeps one timer per sweep_interval_s (the
    clock frozen here: within one interval), and its counts stay exact."""
    from limits.storage import MemoryStorage

    from study_server import limits

    monkeypatch.setattr(limits.time, "monotonic", lambda: 1000.0)

    def timers_used(storage: MemoryStorage) -> int:
        seen: list = []  # the timers themselves (an id could be reused once one is freed)
        for n in range(1, 6):
            storage.timer.join()  # the sweep ran and its thread ended, as 10 ms after each hit
            assert storage.incr("participant:1", 60) == n
            timer = getattr(storage.timer, "_timer", storage.timer)
            if not any(timer is t for t in seen):
                seen.append(timer)
        return len(seen)

    assert timers_used(MemoryStorage()) == 5  # the library: a new thread for every hit
    assert timers_used(limits.LockedMemoryStorage()) == 1


def test_a_limit_that_does_not_parse_stops_the_start(sqlite_url: str, bundle: Path) -> None:
    with pytest.raises(ConfigError, match="RATE_LIMIT_IMAGES is not a list of limits .*'lots'"):
        make_app(sqlite_url, bundle, RATE_LIMIT_IMAGES="lots")
