"""The answer endpoint: idempotent retries, refusals, validation; and what the browser may learn."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stimuli.manifest import load_manifest
from study_server.models import Trial


def _stored_answers(app) -> int:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return session.scalar(select(func.count()).select_from(Trial).where(Trial.answer_id.is_not(None)))


def test_retry_after_a_lost_reply_is_harmless(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    body = w.answer_body(0, w.correct_side(0))
    first = w.post("/api/answer", body)
    retry = w.post("/api/answer", body)
    assert first.status_code == retry.status_code == 200
    assert first.get_json() == retry.get_json()
    assert _stored_answers(app) == 1
    assert w.current()["position"] == 1


def test_concurrent_retries_of_one_answer_store_it_once(app, walker) -> None:  # noqa: ANN001
    import threading

    w = walker()
    w.to_trials()
    body = w.answer_body(0, w.correct_side(0))
    barrier = threading.Barrier(6)
    replies: list[tuple[int, dict]] = []

    def post() -> None:
        client = w.client.application.test_client()
        with client.session_transaction() as session, w.client.session_transaction() as original:
            session.update(original)
        barrier.wait()
        response = client.post("/api/answer", json=body)
        replies.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [code for code, _ in replies] == [200] * 6
    assert all(reply == replies[0][1] for _, reply in replies)
    assert _stored_answers(app) == 1


def test_a_second_different_answer_is_refused(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    assert w.post("/api/answer", w.answer_body(0, "left")).status_code == 200
    other = w.post("/api/answer", w.answer_body(0, "right"))
    assert other.status_code == 409 and "already answered" in other.get_json()["error"]
    body = w.answer_body(w.current()["position"], "left")
    assert body["position"] == 1 and w.post("/api/answer", body).status_code == 200
    reused = w.post("/api/answer", {**body, "confidence": 3})  # same id, different content
    assert reused.status_code == 409 and "different answer" in reused.get_json()["error"]
    with Session(app.extensions["maco"].engine) as session:
        stored = session.scalar(select(Trial).where(Trial.position == 0))
        assert stored.chosen_side == "left"


def test_only_the_current_trial_is_accepted(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    ahead = w.post("/api/answer", w.answer_body(1, "left"))
    assert ahead.status_code == 409 and "not the current trial" in ahead.get_json()["error"]
    missing = w.post("/api/answer", w.answer_body(999, "left"))
    assert missing.status_code == 409 and "no such trial" in missing.get_json()["error"]
    # the participant reads these messages: no internal trial numbers in them
    assert not re.search(r"\d", ahead.get_json()["error"] + missing.get_json()["error"])
    assert _stored_answers(app) == 0


def test_nothing_is_accepted_after_completion_or_before_the_trials(app, walker) -> None:  # noqa: ANN001
    early = walker()
    early.start()
    assert early.post("/api/answer", early.answer_body(0, "left")).status_code == 409
    w = walker()
    w.to_trials()
    w.answer_all()
    assert w.complete().status_code == 200
    late = w.post("/api/answer", w.answer_body(3, "left"))
    assert late.status_code == 409 and "no answers are accepted" in late.get_json()["error"]
    stranger = walker()  # no session at all
    assert stranger.client.post("/api/answer", json=w.answer_body(0, "left")).status_code == 403


@pytest.mark.parametrize("change, message", [
    ({"chosen_side": "middle"}, 'chosen_side: must be "left" or "right"'),
    ({"confidence": 4}, "confidence: must be between 1 and 3"),
    ({"confidence": True}, "confidence: must be an integer"),
    ({"rt_ms": "fast"}, "rt_ms: must be a number"),
    ({"rt_ms": -1}, "rt_ms: must be between"),
    ({"position": 1.5}, "position: must be an integer"),
    ({"answer_id": "x"}, "answer_id: must be 8-64"),
    ({"blur_count": -2}, "blur_count: must be between"),
    ({"extra": 1}, "extra: unknown field"),
])
def test_fields_are_validated(app, walker, change, message) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    response = w.post("/api/answer", {**w.answer_body(0, "left"), **change})
    assert response.status_code == 400 and message in response.get_json()["error"]
    assert _stored_answers(app) == 0


def test_missing_fields_bodies_and_sizes(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    body = w.answer_body(0, "left")
    del body["rt_ms"]
    assert w.post("/api/answer", body).get_json()["error"] == "rt_ms: missing"
    not_json = w.client.post("/api/answer", data="chosen_side=left")
    assert not_json.status_code == 415
    huge = w.post("/api/answer", w.answer_body(0, "left", answer_id="a" * 40_000))
    assert huge.status_code == 413
    long_comment = w.post("/api/complete", {"comment": "x" * 6000})
    assert long_comment.status_code == 400
    assert _stored_answers(app) == 0


def test_the_browser_cannot_learn_the_correct_side_before_answering(app, walker, bundle) -> None:  # noqa: ANN001
    """Every response a participant receives before each answer: no hash, no pair id, no side."""
    manifest = load_manifest(bundle)
    # a reference image may go under its content id (it carries no side: test_server_reference_files.py)
    secrets = ({i for _, pair in manifest.all_query_pairs() for i in (pair.base_image, pair.image_a, pair.image_b)}
               | {pair.id for _, pair in manifest.all_query_pairs()})
    w = walker()
    seen: list[bytes] = []

    def get(url: str):  # noqa: ANN202
        response = w.client.get(url)
        seen.append(b"\n".join([response.data] + [f"{k}: {v}".encode() for k, v in response.headers]))
        return response

    w.start()
    for page_step in ("/api/consent", "/api/device", "/api/instructions"):
        get("/study")
        body = {"/api/consent": {"agree": True}, "/api/instructions": {},
                "/api/device": {"window_width": 1280, "window_height": 800, "is_phone": False}}[page_step]
        seen.append(w.post(page_step, body).data)
    get("/study")
    get("/static/study.js")
    shapes = set()  # the trial JSON with numbers and ids blanked: one shape for every trial
    while True:
        data = get("/api/trial").get_json()
        if data["done"]:
            break
        trial = data["trial"]
        for url in [trial["base"], trial["left"], trial["right"], *trial["preload"][:3]]:
            assert re.fullmatch(r"/img/[A-Za-z0-9_-]{22}", url)
            image = get(url)
            assert image.status_code == 200 and image.mimetype == "image/png"
            assert not {"Last-Modified", "Content-Disposition"} & set(image.headers.keys())
            assert image.headers["ETag"] == f'"{url.removeprefix("/img/")}"'  # the URL's own id, nothing more
        for url in [*trial["references"], *trial["preload"][3:]]:
            assert re.fullmatch(r"/ref/[0-9a-f]{64}\.png", url) and get(url).status_code == 200
        # the JSON has the same shape and sizes whichever side is correct
        shapes.add(json.dumps({k: [len(u) for u in v] if isinstance(v, list) else len(v)
                               for k, v in trial.items() if k in ("base", "left", "right", "references")}))
        assert set(trial) == {"position", "practice", "practice_round", "progress", "pause", "base", "left",
                              "right", "references", "preload"}
        # before answering: nothing received so far names a stimulus or a side
        everything = b"\n".join(seen).decode("utf-8", "replace")
        for secret in secrets:
            assert secret not in everything
        assert "correct" not in json.dumps(trial)
        side = w.correct_side(trial["position"])
        seen.append(w.post("/api/answer", w.answer_body(trial["position"], side)).data)
    assert len(shapes) == 1


def test_images_are_private_to_their_participant(app, walker) -> None:  # noqa: ANN001
    a, b = walker(), walker()
    a.to_trials()
    b.to_trials()
    url = a.current()["left"]
    assert a.client.get(url).status_code == 200
    assert b.client.get(url).status_code == 404
    assert a.client.get("/img/" + "A" * 22).status_code == 404


def test_an_answer_is_stored_by_four_statements_without_the_orm(app, walker) -> None:  # noqa: ANN001
    """The answer path's SQL (answers.py): the participant's row locked, the plan and answer id in
    one read, the presence count, one UPDATE of the trial; no ORM session at all, whose flush and
    transaction bookkeeping cost more CPU than the SQL (benchmarks/RESULTS.md, issue 28). The
    stored values are the ones sent; a GET /api/trial reads two rows' worth without the ORM too."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session as OrmSession

    w = walker()
    w.to_trials()
    while w.current()["practice"]:
        w.answer_current(True)
    w.answer_current(True)  # into the main trials: the next answer neither starts nor ends a phase
    trial = w.current()
    body = w.answer_body(trial["position"], "right", 3, blur_count=2, input="pointer")
    statements: list[str] = []
    flushes: list[int] = []

    def statement(_conn, _cursor, sql: str, *_args) -> None:  # noqa: ANN001
        statements.append(sql.split()[0] + (" participants" if "FROM participants" in sql else ""))

    def flush(*_args) -> None:  # noqa: ANN002
        flushes.append(1)

    def orm_transaction(*_args) -> None:  # noqa: ANN002
        orm_transactions.append(1)

    orm_transactions: list[int] = []
    engine, read_engine = app.extensions["maco"].engine, app.extensions["maco"].read_engine
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(OrmSession, "before_flush", flush)
    event.listen(OrmSession, "after_begin", orm_transaction)
    try:
        assert w.post("/api/answer", body).status_code == 200
        assert [s for s in statements if s != "BEGIN"] == ["SELECT participants", "SELECT", "SELECT", "UPDATE"]
        if read_engine is not engine:
            event.listen(read_engine, "before_cursor_execute", statement)
        statements.clear()
        assert w.study.trial()["trial"]["position"] == trial["position"] + 1
        assert [s for s in statements if s != "BEGIN"] == ["SELECT participants", "SELECT"]
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        if read_engine is not engine:
            event.remove(read_engine, "before_cursor_execute", statement)
        event.remove(OrmSession, "before_flush", flush)
        event.remove(OrmSession, "after_begin", orm_transaction)
    assert flushes == [] and orm_transactions == []
    with Session(engine) as session:
        stored = session.scalar(select(Trial).where(Trial.answer_id == body["answer_id"]))
    assert (stored.position, stored.chosen_side, stored.confidence, stored.blur_count, stored.answer_input,
            stored.rt_ms, stored.webdriver) == (trial["position"], "right", 3, 2, "pointer", 240.0, False)
    assert stored.server_elapsed_ms is not None and stored.answered_at is not None


def test_a_practice_round_s_last_answer_sent_again_gets_the_same_reply(app, walker) -> None:  # noqa: ANN001
    """An answer reads only its trial's neighbours (answers.py); a practice answer sent again (its
    reply lost) reads the round back, so its feedback is the first reply's, round result included,
    and nothing is stored twice."""
    w = walker()
    w.to_trials()
    while True:
        trial = w.current()
        body = w.answer_body(trial["position"], w.correct_side(trial["position"]))
        first = w.post("/api/answer", body).get_json()
        if first["feedback"]["round_result"] is not None:
            break
    again = w.post("/api/answer", body).get_json()
    assert again == first and first["feedback"]["round_result"] == "passed"
    with Session(app.extensions["maco"].engine) as session:
        assert session.scalar(select(func.count()).select_from(Trial).where(Trial.answer_id == body["answer_id"])) == 1
    assert not w.current()["practice"]  # the main trials started once
