"""A study of declared conditions: five, one of natural exemplars and one from a plugin method."""
from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from stimuli.testing import build_test_bundle
from study_server.models import Participant

from .conftest import Walker, make_app

FIVE = {"maco": ("maco", {}), "maco_mask": ("maco", {"mask": True}), "natural": ("natural", {}),
        "flat": ("flat", {"level": 0.5}), "none": ("none", {})}


def test_five_declared_conditions_are_assigned_in_balance_and_worded_by_method(tmp_path, sqlite_url):
    bundle = tmp_path / "bundle"
    build_test_bundle(bundle, conditions=tuple(FIVE), methods=FIVE)
    app = make_app(sqlite_url, bundle, PREVIEW_MODE=True)
    for k in range(10):
        assert Walker(app, f"five{k}").start().status_code == 302
    with Session(app.extensions["maco"].engine) as session:
        counts = Counter(session.scalars(select(Participant.condition).where(Participant.is_preview.is_(False))))
    assert counts == Counter(dict.fromkeys(FIVE, 2))
    client = app.test_client()
    wording = {}
    for condition in ("natural", "maco_mask", "flat"):
        client.get(f"/preview?condition={condition}")
        walker = Walker(app)
        walker.client = client
        walker.study.consent()
        walker.study.device()
        wording[condition] = client.get("/study").get_data(as_text=True)
        client = app.test_client()
    assert "photos (from a large collection)" in wording["natural"] and "Faded-out" not in wording["natural"]
    assert "Faded-out parts matter less" in wording["maco_mask"]
    assert "made by a computer" in wording["flat"] and "Faded-out" not in wording["flat"]
