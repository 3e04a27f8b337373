"""Fixtures: a tiny bundle, a database per test (SQLite file, and PostgreSQL when
MACO_TEST_POSTGRES_URL is set, as CI does), the app, and a scripted participant (the protocol
client on Flask's test client)."""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from stimuli.testing import build_test_bundle
from study_server.app import create_app
from study_server.bundle import import_bundle
from study_server.client import NO_RETRY, FlaskTransport, StudyClient, answer_body, start_path, step_request
from study_server.db import make_engine, upgrade
from study_server.models import Participant, Trial

POSTGRES_URL = os.environ.get("MACO_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="MACO_TEST_POSTGRES_URL is not set (CI sets it and runs these)"))]


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle")
    build_test_bundle(path, pairs_per_unit=2, n_practice=2, n_catch=2)
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("MACO_TEST_POSTGRES_URL is not set (CI sets it and runs these)")
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


# a test client runs a participant hundreds of times faster than a person: the rate limits stay
# on (their code runs in every test) but out of reach; test_server_limits.py tests the real ones
UNLIMITED = {key: "1000000 per second" for key in
             ("RATE_LIMIT_PARTICIPANT", "RATE_LIMIT_IMAGES", "RATE_LIMIT_START", "RATE_LIMIT_ADMIN_LOGIN")}
# for the same reason the floors on a session's pace are off (MIN_RT_MS stays: the walker reports
# a possible rt_ms); test_server_speed.py tests them at their defaults
PACE_UNCHECKED = {"MIN_ANSWER_MS": 0, "MIN_SESSION_S": 0}


def wait_for_log(log: Path, text: str, timeout_s: float = 20) -> None:
    """Until `text` is in the server's log: Granian writes a request's access line after sending the
    reply, so a client can have the reply before the line is written."""
    import time

    deadline = time.monotonic() + timeout_s
    while text.encode() not in log.read_bytes():
        assert time.monotonic() < deadline, f"{text!r} not in {log} within {timeout_s} s"
        time.sleep(0.05)


def make_app(db_url: str, bundle: Path, **overrides: Any):  # noqa: ANN201
    upgrade(db_url)
    engine = make_engine(db_url)
    with Session(engine) as session:
        import_bundle(session, bundle)
        session.commit()
    engine.dispose()
    config = {"DATABASE_URL": db_url, "BUNDLE_DIR": str(bundle), "SECRET_KEY": "test-secret",
              "TESTING": True, "COMPLETION_CODE": "C0DE123", **UNLIMITED,
              **PACE_UNCHECKED}
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app_factory():  # noqa: ANN201
    return make_app


@pytest.fixture
def live_server_factory(sqlite_url: str, bundle: Path):  # noqa: ANN201
    """live_server_factory(**config) -> (app, base URL): the app served on 127.0.0.1 in a thread
    (the browser tests); stopped after the test."""
    import threading

    from werkzeug.serving import make_server

    started = []

    def serve(**overrides: Any):  # noqa: ANN202
        # Playwright answers the moment the buttons are enabled: no rt_ms floor (test_server_speed.py
        # tests it), unless a test sets one
        app = make_app(sqlite_url, bundle, **{"MIN_RT_MS": 0, **overrides})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((app, server))
        return app, f"http://127.0.0.1:{server.server_port}"

    yield serve
    for app, server in started:
        server.shutdown()
        app.extensions["maco"].engine.dispose()


@pytest.fixture
def app(db_url: str, bundle: Path):  # noqa: ANN201
    app = make_app(db_url, bundle)
    yield app
    app.extensions["maco"].engine.dispose()


def prolific_pid(name: str) -> str:
    """A Prolific-format id (24 lower-case hex digits) for a test's readable participant name."""
    if re.fullmatch(r"[0-9a-f]{24}", name):
        return name
    return hashlib.sha256(name.encode()).hexdigest()[:24]


class Walker:
    """A participant driven through the JSON API by the protocol client (study_server.client) on
    Flask's test client, without retries (a test sees every status); the oracles read the database."""

    def __init__(self, app, pid: str | None = None):  # noqa: ANN001
        self.app = app
        self.study = StudyClient(FlaskTransport(app), NO_RETRY)
        self.pid = secrets.token_hex(12) if pid is None else prolific_pid(pid)

    @property
    def client(self):  # noqa: ANN201
        """Flask's test client (the browser's cookie jar), also for requests outside the protocol."""
        return self.study.transport.client

    @client.setter
    def client(self, client) -> None:  # noqa: ANN001 - another browser walks on
        self.study.transport.client = client

    def start(self):  # noqa: ANN201
        return self.study.request("GET", start_path(self.pid, "s1", "x1"))

    def post(self, url: str, body: Any):  # noqa: ANN201
        return self.study.request("POST", url, json=body)

    def to_trials(self) -> None:
        self.to_first_trial()
        self.current()  # the trials page opens and asks for its first trial, and loads its images

    def to_first_trial(self) -> None:
        """Start, consent, device check and instructions: the trials page is next."""
        assert self.start().status_code == 302
        self.study.consent()
        self.study.device()
        assert self.study.page() == "instructions"
        self.study.instructions()

    def participant(self) -> Participant:
        with Session(self.app.extensions["maco"].engine) as session:
            return session.scalar(select(Participant).where(Participant.prolific_pid == self.pid))

    def correct_side(self, position: int) -> str:
        """Test oracle: read the answer key from the database."""
        with Session(self.app.extensions["maco"].engine) as session:
            return session.scalar(select(Trial.correct_side).join(Participant).where(
                Participant.prolific_pid == self.pid, Trial.position == position))

    def answer_body(self, position: int, side: str, confidence: int = 2, **extra: Any) -> dict[str, Any]:
        # rt_ms below answers.CLOCK_TOLERANCE_MS (possible however fast the test answers after the
        # GET) and above the MIN_RT_MS floor
        return answer_body(position, side, confidence, **{"rt_ms": 240.0, **extra})

    def current(self) -> dict[str, Any] | None:
        """GET /api/trial and, as the browser does, the trial's images (an answer needs them)."""
        data = self.study.trial()
        if data["done"]:
            return None
        self.study.images(data["trial"])
        return data["trial"]

    def answer_current(self, correct: bool = True) -> dict[str, Any]:
        trial = self.current()
        side = self.correct_side(trial["position"])
        if not correct:
            side = "left" if side == "right" else "right"
        return self.study.answer(self.answer_body(trial["position"], side))

    def answer_all(self, correct: bool = True) -> int:
        n = 0
        while self.current() is not None:
            self.answer_current(correct)
            n += 1
        return n

    def complete(self, comment: str = ""):  # noqa: ANN201
        return self.post(*step_request("comment", comment=comment))


@pytest.fixture
def walker(app):  # noqa: ANN001, ANN201
    return lambda pid=None: Walker(app, pid)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def rate_limit_clock(monkeypatch) -> FakeClock:  # noqa: ANN001
    """The counters' clock stands still unless a test moves it: a window of "N per minute" can
    never close in the middle of a test, however slowly a loaded machine runs it."""
    import limits.storage.memory

    clock = FakeClock()
    monkeypatch.setattr(limits.storage.memory, "time", clock)
    return clock
