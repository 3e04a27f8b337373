"""Data quality at the server: whole-string ids, deep JSON, the server's clock beside rt_ms, pause
points, and practice rounds that cannot be passed from the previous round's feedback."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study_server import answers, api
from stimuli.testing import build_test_bundle
from study_server.models import Participant, QueryPair, Trial, utcnow

from .conftest import Walker


def _count(app, model) -> int:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def _stored(app, walker_: Walker, position: int) -> Trial:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return session.scalar(select(Trial).where(Trial.participant_id == walker_.participant().id,
                                                  Trial.position == position))


@pytest.mark.parametrize("field", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
def test_a_trailing_newline_in_a_prolific_parameter_is_refused(app, field: str) -> None:  # noqa: ANN001
    client = app.test_client()
    params = {"PROLIFIC_PID": "5f0c1e2d3b4a59687766554a", "STUDY_ID": "s1", "SESSION_ID": "x1"}
    assert client.get("/start", query_string=params).status_code == 302
    for bad in ("\n", "\r\n", "%0A"):
        response = client.get("/start", query_string={**params, field: params[field] + bad})
        assert response.status_code == 400 and field in response.get_data(as_text=True)
    assert _count(app, Participant) == 1  # no second identity for "abc"


def test_deeply_nested_json_is_a_400_on_every_post_endpoint(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    deep = "[" * 5000 + "]" * 5000
    posts = sorted(rule.rule for rule in app.url_map.iter_rules() if "POST" in rule.methods)
    api_posts = [path for path in posts if path.startswith("/api/")]
    assert {"/api/answer", "/api/consent", "/api/device", "/api/complete"} <= set(api_posts)
    for path in posts:
        response = w.client.post(path, data=deep, content_type="application/json")
        assert response.status_code == 400 if path in api_posts else response.status_code < 500, path
        if path in api_posts:
            assert response.get_json()["error"]


def test_an_impossible_reaction_time_is_refused(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()  # GET /api/trial sent the first trial just now
    side = w.correct_side(0)
    hour = w.post("/api/answer", w.answer_body(0, side, rt_ms=3_600_000))
    assert hour.status_code == 422 and "longer than the trial has been on screen" in hour.get_json()["error"]
    assert _stored(app, w, 0).answer_id is None
    ok = w.post("/api/answer", w.answer_body(0, side))
    assert ok.status_code == 200
    stored = _stored(app, w, 0)
    assert stored.server_elapsed_ms is not None and stored.rt_ms <= stored.server_elapsed_ms + 250


def test_both_clocks_are_stored_and_shown_at_is_never_before_the_trial_was_sent(app, walker, monkeypatch) -> None:  # noqa: ANN001
    w = walker()
    sent = utcnow()
    w.to_trials()
    # the answer arrives 10 s after the trial was sent (the server's clock, moved on)
    monkeypatch.setattr(answers, "utcnow", lambda: utcnow() + timedelta(seconds=10))
    assert w.post("/api/answer", w.answer_body(0, w.correct_side(0), rt_ms=9_000)).status_code == 200
    stored = _stored(app, w, 0)
    assert stored.rt_ms == 9_000 and 10_000 <= stored.server_elapsed_ms < 10_000 + 60_000
    assert stored.shown_at.replace(tzinfo=sent.tzinfo) >= sent


def test_the_pause_page_restarts_the_servers_clock(app_factory, db_url: str, bundle, monkeypatch) -> None:  # noqa: ANN001
    app = app_factory(db_url, bundle, BREAK_EVERY=3)
    w = Walker(app)
    w.to_trials()
    while w.current()["practice"]:
        assert w.current()["pause"] is None
        w.answer_current()
    first_main = w.current()
    assert first_main["pause"] == "main"
    assert w.client.get("/api/trial?resume=2").status_code == 400
    # the participant reads the pause page for a minute, then continues (resume)
    monkeypatch.setattr(api, "utcnow", lambda: utcnow() + timedelta(minutes=1))
    resumed = w.client.get("/api/trial?resume=1").get_json()["trial"]
    assert resumed["position"] == first_main["position"]
    monkeypatch.setattr(answers, "utcnow", lambda: utcnow() + timedelta(minutes=1, seconds=2))
    assert w.post("/api/answer", w.answer_body(resumed["position"], "left", rt_ms=1_500)).status_code == 200
    assert 2_000 <= _stored(app, w, resumed["position"]).server_elapsed_ms < 60_000  # not the minute
    monkeypatch.undo()
    pauses = []
    while (trial := w.current()) is not None:
        pauses.append(trial["pause"])
        w.answer_current()
    assert pauses == [None, None, "break", None, None, "break", None, None, "break"]  # after 3, 6, 9
    app.extensions["maco"].engine.dispose()


def test_a_repeated_practice_round_has_fresh_image_ids(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    first_round = []
    while (trial := w.current())["practice_round"] == 1:
        first_round.append(trial)
        w.answer_current(correct=False)
    second_round = []
    while (trial := w.current())["practice_round"] == 2:
        second_round.append(trial)
        w.answer_current()
    # the pictures that carry the task; the references are the unit's grid under their content ids,
    # the same in every round (they carry no side: test_server_reference_files.py)
    urls = lambda trials: {u for t in trials for u in (t["base"], t["left"], t["right"])}  # noqa: E731
    assert len(first_round) == len(second_round) == 2
    assert not urls(first_round) & urls(second_round)  # nothing to recognise from round 1's URLs
    assert all(w.client.get(url).status_code == 200 for url in urls(second_round))


def test_every_practice_round_shows_new_pictures(app_factory, sqlite_url: str, tmp_path) -> None:  # noqa: ANN001
    """A bundle built as the stimuli build makes it: 3 rounds of 2 practice pairs. A participant
    who fails rounds 1 and 2 sees 6 different photos, never one again (no passing from memory)."""
    manifest = build_test_bundle(tmp_path / "bundle", n_practice=6, practice_per_round=2)
    app = app_factory(sqlite_url, tmp_path / "bundle")
    w = Walker(app)
    w.to_trials()
    shown: dict[int, list[bytes]] = {}
    while (trial := w.current())["practice"]:
        shown.setdefault(trial["practice_round"], []).extend(
            w.client.get(trial[slot]).data for slot in ("base", "left", "right"))
        w.answer_current(correct=trial["practice_round"] == 3 or len(shown[trial["practice_round"]]) > 3)
    assert sorted(shown) == [1, 2, 3] and all(len(images) == 6 for images in shown.values())
    pictures = [image for images in shown.values() for image in images]
    assert len(set(pictures)) == len(pictures) == 18  # no photo, no occluded copy comes back
    # round r shows the r-th slice of the bundle's practice trials
    with Session(app.extensions["maco"].engine) as session:
        rows = session.execute(select(Trial.practice_round, QueryPair.pair_key).join(QueryPair)
                               .where(Trial.kind == "practice")).all()
    rounds = {r: {key for round_, key in rows if round_ == r} for r in (1, 2, 3)}
    assert rounds == {r: {p.id for p in manifest.practice_trials[2 * (r - 1): 2 * r]} for r in (1, 2, 3)}
    app.extensions["maco"].engine.dispose()


def test_the_instructions_example_is_the_practice_pair_whose_references_drive_their_unit_most_clearly(
        bundle) -> None:  # noqa: ANN001
    """By the gate's margin recorded at build time, the smallest over the unit's conditions: a unit
    clear under one method and faint under another is not the example (the demo's faint ViT unit)."""
    from dataclasses import replace

    from stimuli.manifest import load_manifest
    from study_server.plan import example_images, example_pair

    manifest = load_manifest(bundle)
    first, clearest = manifest.practice_trials[0], next(p for p in manifest.practice_trials
                                                       if p.unit != manifest.practice_trials[0].unit)
    rows = [{"unit": u.key, "condition": c, "margin": 1.0} for u in manifest.units for c in ("maco", "olah")]
    for row in rows:
        if row["unit"] == first.unit:  # the largest margin of all, and the smallest
            row["margin"] = 50.0 if row["condition"] == "maco" else 0.1
        elif row["unit"] == clearest.unit:
            row["margin"] = 3.0 if row["condition"] == "maco" else 2.0
    graded = replace(manifest, provenance={**manifest.provenance, "quality": rows})
    assert example_pair(graded) == clearest
    for condition in manifest.conditions:  # one pair for every condition, the condition's references
        assert example_images(graded, condition) == [clearest.base_image, clearest.image_a, clearest.image_b,
                                                     *manifest.reference_images(clearest.unit, condition)]
    assert example_pair(manifest) == first  # a bundle without margins: the first practice pair
    assert example_pair(replace(manifest, practice_trials=[])) is None


def test_the_instructions_example_is_the_first_practice_pair_under_ids_of_its_own(app, walker) -> None:  # noqa: ANN001
    import re

    w = walker()
    w.start()
    w.post("/api/consent", {"agree": True})
    w.post("/api/device", {"window_width": 1280, "window_height": 800, "is_phone": False})
    page = w.client.get("/study").get_data(as_text=True)
    example = re.findall(r'src="(/img/[^"]+)"', page)
    references = re.findall(r'src="(/ref/[^"]+)"', page)  # the grid under content ids (reference_files.py)
    assert len(example) == 3 and len(set(example)) == 3
    assert len(references) == (0 if w.participant().condition == "none" else 9)
    assert all(w.client.get(url).status_code == 200 for url in example + references)  # before any trial was sent
    w.post("/api/instructions", {})
    trial = w.current()
    assert not set(example) & {trial["base"], trial["left"], trial["right"]}
