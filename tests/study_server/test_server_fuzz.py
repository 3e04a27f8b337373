"""Fuzz of the participant endpoints: random bodies (at the consent, in practice and in the main
trials) and random URLs never give a 5xx, and a refused request stores nothing."""
from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.models import Trial

from .conftest import Walker
from .test_server_tampering import _stored

ENDPOINTS = ["/api/consent", "/api/device", "/api/device/give-up", "/api/instructions",
             "/api/answer", "/api/complete"]
FIELDS = ["agree", "window_width", "window_height", "is_phone", "answer_id", "position",
          "chosen_side", "confidence", "rt_ms", "device_pixel_ratio", "blur_count",
          "fullscreen_exit_count", "comment"]
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=50)
           | st.sampled_from(["left", "right", "", "\u202e\x00"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), values, max_size=12) | values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_random_bodies_never_fail_the_server(app, walker, endpoint: str, body) -> None:  # noqa: ANN001
    mallory = walker("fuzz" + "0" * 20)
    mallory.start()
    before = _stored(app)
    response = mallory.post(endpoint, body)
    assert response.status_code < 500, (endpoint, body, response.get_data(as_text=True))
    if response.status_code >= 400:
        assert _stored(app) == before


# --- in the trials: a participant in practice and one in the main trials -------------------
_walkers: dict[tuple[int, str], Walker] = {}  # one participant per app and stage, kept across examples


def _in_stage(walker_: Walker, stage: str) -> bool:
    trial = walker_.current()
    return trial is not None and trial["practice"] == (stage == "practice")


def _participant_in(app, stage: str) -> Walker:  # noqa: ANN001
    """The app's participant in `stage`; a new one when an accepted fuzzed answer moved it on."""
    walker_ = _walkers.get((id(app), stage))
    if walker_ is None or walker_.app is not app or not _in_stage(walker_, stage):  # ids are reused
        walker_ = Walker(app)
        walker_.to_trials()
        while stage == "main" and walker_.current()["practice"]:
            walker_.answer_current()
        _walkers[(id(app), stage)] = walker_
    return walker_


class NearPosition(int):
    """A position relative to the current trial's (strategies must not depend on the app's state)."""


@st.composite
def answer_bodies(draw) -> dict:  # noqa: ANN001
    """A valid answer to the current trial with a few fields replaced, dropped or added."""
    body = {"answer_id": draw(st.from_regex(r"[A-Za-z0-9-]{8,64}", fullmatch=True)), "position": NearPosition(0),
            "chosen_side": draw(st.sampled_from(["left", "right"])), "confidence": draw(st.integers(1, 3)),
            "rt_ms": draw(st.floats(0, 3_600_000)), "window_width": 1280, "window_height": 800,
            "device_pixel_ratio": 1.0, "blur_count": 0, "fullscreen_exit_count": 0}
    for name in draw(st.sets(st.sampled_from(sorted(body)), max_size=3)):
        body[name] = draw(values | st.integers(-3, 3).map(NearPosition))
    for name in draw(st.sets(st.sampled_from(sorted(body)), max_size=2)):
        del body[name]
    body.update(draw(st.dictionaries(st.text(max_size=8), values, max_size=1)))
    return body


def _at(body: dict, position: int) -> dict:
    return {k: position + v if isinstance(v, NearPosition) else v for k, v in body.items()}


@pytest.mark.parametrize("stage", ["practice", "main"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_bodies_in_the_trials_never_fail_the_server(app, stage: str, data) -> None:  # noqa: ANN001
    mallory = _participant_in(app, stage)
    trial = mallory.current()  # the trial is sent, so a valid answer would be accepted
    endpoint = data.draw(st.sampled_from(ENDPOINTS + ["/api/answer"] * 4), label="endpoint")
    body = data.draw(answer_bodies() if endpoint == "/api/answer" else bodies, label="body")
    body = _at(body, trial["position"]) if isinstance(body, dict) else body
    before = _stored(app)
    response = mallory.post(endpoint, body)
    event(f"{endpoint} {response.status_code}")
    assert response.status_code < 500, (endpoint, body, response.get_data(as_text=True))
    if response.status_code >= 400:
        assert _stored(app) == before
    else:  # only a well-formed answer to the current trial gets through, stored as sent
        assert endpoint == "/api/answer" and body["position"] == trial["position"]
        with Session(app.extensions["maco"].engine) as session:
            stored = session.scalar(select(Trial).where(Trial.answer_id == body["answer_id"]))
        assert (stored.chosen_side, stored.confidence) == (body["chosen_side"], body["confidence"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "condition"])
                              | st.text(max_size=5), st.text(max_size=70), max_size=4),
       token=st.text(min_size=1, max_size=40))
def test_random_urls_never_fail_the_server(app, params, token: str) -> None:  # noqa: ANN001
    client = app.test_client()
    before = _stored(app)
    start = client.get("/start", query_string=params)
    assert start.status_code in (302, 400), start.status_code
    if start.status_code == 400:
        assert _stored(app) == before
    for path in (f"/img/{quote(token, safe='')}", f"/api/trial?{urlencode(params)}"):
        response = client.get(path)
        assert response.status_code < 500, (path, response.status_code)
