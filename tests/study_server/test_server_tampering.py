"""Hostile participants: each tampering attempt is refused and leaves the stored data unchanged."""
from __future__ import annotations

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from study_server.client import start_path
from study_server.models import Participant, Trial

from .conftest import prolific_pid


def _row(obj) -> tuple:  # noqa: ANN001
    return tuple(getattr(obj, attribute.key) for attribute in inspect(obj).mapper.column_attrs)


def _stored(app) -> list[tuple]:  # noqa: ANN001
    """Every column of every participant and trial row."""
    with Session(app.extensions["maco"].engine) as session:
        trials = [_row(t) for t in session.scalars(select(Trial).order_by(Trial.participant_id, Trial.position))]
        participants = [_row(p) for p in session.scalars(select(Participant).order_by(Participant.id))]
    return trials + participants


def test_answers_out_of_turn_are_refused(app, walker) -> None:  # noqa: ANN001
    mallory = walker()
    mallory.to_trials()
    current = mallory.current()["position"]
    before = _stored(app)
    for position in (current + 1, current + 5, -1):  # a trial not yet reached, or none
        response = mallory.post("/api/answer", mallory.answer_body(position, "left"))
        assert 400 <= response.status_code < 500
    assert _stored(app) == before


def test_answers_before_the_instructions_are_refused(app, walker) -> None:  # noqa: ANN001
    mallory = walker()
    assert mallory.start().status_code == 302
    before = _stored(app)
    response = mallory.post("/api/answer", mallory.answer_body(0, "left"))
    assert 400 <= response.status_code < 500
    assert _stored(app) == before


def test_nothing_is_accepted_after_completion(app, walker) -> None:  # noqa: ANN001
    mallory = walker()
    mallory.to_trials()
    mallory.answer_all()
    assert mallory.complete().status_code == 200
    before = _stored(app)
    response = mallory.post("/api/answer", mallory.answer_body(0, "left"))
    assert 400 <= response.status_code < 500
    assert mallory.post("/api/consent", {"agree": True}).status_code >= 400
    assert _stored(app) == before


def test_forged_image_ids_are_not_served(app, walker) -> None:  # noqa: ANN001
    mallory = walker()
    mallory.to_trials()
    before = _stored(app)
    for forged in ("forged", "0" * 64, "../../etc/passwd"):
        assert mallory.client.get(f"/img/{forged}").status_code == 404
    assert _stored(app) == before


def _image_urls(value) -> list[str]:  # noqa: ANN001
    if isinstance(value, str):
        return [value] if value.startswith("/img/") else []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [url for item in items for url in _image_urls(item)]


def test_another_participants_image_ids_are_not_served(app, walker) -> None:  # noqa: ANN001
    alice, mallory = walker(), walker()
    alice.to_trials()
    mallory.to_trials()
    urls = _image_urls(alice.current())
    assert urls and all(alice.client.get(url).status_code == 200 for url in urls)
    before = _stored(app)
    assert all(mallory.client.get(url).status_code == 404 for url in urls)
    assert _stored(app) == before


def _answer_ok(walker_, correct: bool = True) -> dict:  # noqa: ANN001
    """Serve the current trial (GET /api/trial, as the page does) and answer it."""
    return walker_.answer_current(correct)


def _rows_of(app, participant_id: int) -> list[tuple]:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return [_row(session.get(Participant, participant_id))] + [_row(t) for t in session.scalars(
            select(Trial).where(Trial.participant_id == participant_id).order_by(Trial.position))]


def _refused(response) -> None:  # noqa: ANN001
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True))


def test_a_second_pid_in_the_same_browser_neither_hands_over_nor_mixes(app, walker) -> None:  # noqa: ANN001
    """Decided behaviour: the latest /start wins. The browser session becomes the second PID's
    participant with a clean session (no trial marked as shown, no admin login); the first
    participant keeps every trial, answer and its position, and resumes from its own link."""
    alice = walker()
    alice.to_trials()
    _answer_ok(alice)
    first = alice.current()
    alice_urls = _image_urls(first)
    alice_rows = _rows_of(app, alice.participant().id)
    browser = alice.client
    assert browser.get(start_path(prolific_pid("secondpid01"), "s1", "x2")).status_code == 302
    # the session now belongs to the new participant, at its own start
    assert browser.get("/api/trial").get_json()["done"] is True  # consent first: no trial yet
    before = _stored(app)
    _refused(browser.post("/api/answer", json=alice.answer_body(first["position"], "left")))  # alice's next trial
    assert all(browser.get(url).status_code == 404 for url in alice_urls)  # alice's images
    assert _stored(app) == before
    bob = type(alice)(app, "secondpid01")
    bob.client = browser
    bob.to_trials()
    bob_first = bob.current()
    assert bob_first["position"] == 0 and not set(_image_urls(bob_first)) & set(alice_urls)
    _answer_ok(bob)
    assert _rows_of(app, alice.participant().id) == alice_rows
    # alice comes back through her link: the same place, her answer kept, bob's untouched
    assert alice.start().status_code == 302
    assert alice.current()["position"] == first["position"]
    assert _rows_of(app, alice.participant().id) == alice_rows


def test_session_cookies_signed_with_another_key_are_refused(app, walker) -> None:  # noqa: ANN001
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    alice = walker()
    alice.to_trials()
    trial = alice.current()
    forger = Flask("forger")
    forger.secret_key = "not-the-server-key"
    serializer = SecureCookieSessionInterface().get_signing_serializer(forger)
    forged_cookie = serializer.dumps({"participant": alice.participant().id, "served": trial["position"]})
    genuine = alice.client.get_cookie("session").value
    tampered = genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")  # a broken signature
    before = _stored(app)
    for cookie in (forged_cookie, tampered):
        mallory = app.test_client()
        mallory.set_cookie("session", cookie)
        assert mallory.get("/api/trial").status_code == 403
        assert mallory.get("/study").status_code == 403
        assert mallory.post("/api/answer", json=alice.answer_body(trial["position"], "left")).status_code == 403
        assert all(mallory.get(url).status_code == 404 for url in _image_urls(trial))
    assert _stored(app) == before


def test_another_participants_answer_id_is_refused(app, walker) -> None:  # noqa: ANN001
    alice, mallory = walker(), walker()
    alice.to_trials()
    mallory.to_trials()
    body = alice.answer_body(0, alice.correct_side(0))
    assert alice.post("/api/answer", body).status_code == 200
    before = _stored(app)
    # the same answer id (and content) from another participant: neither a replay of alice's
    # reply (which would leak her practice feedback) nor an answer of his own
    stolen = mallory.post("/api/answer", body)
    assert stolen.status_code == 409 and "feedback" not in stolen.get_json()
    _refused(mallory.post("/api/answer", {**body, "chosen_side": "right"}))
    assert _stored(app) == before


def test_practice_cannot_be_skipped(app, walker) -> None:  # noqa: ANN001
    mallory = walker()
    mallory.to_trials()
    practice = mallory.current()
    assert practice["practice"]
    before = _stored(app)
    for position in range(practice["position"] + 1, practice["position"] + 8):  # where main trials go
        _refused(mallory.post("/api/answer", mallory.answer_body(position, "left")))
    _refused(mallory.complete())
    _refused(mallory.post("/api/instructions", {}))
    assert _stored(app) == before
    # a failed round starts a new practice round, never the main trials
    while (trial := mallory.current())["practice"] and trial["practice_round"] == 1:
        _answer_ok(mallory, correct=False)
    assert trial["practice"] and trial["practice_round"] == 2
    before = _stored(app)
    _refused(mallory.complete())
    _refused(mallory.post("/api/answer", mallory.answer_body(trial["position"] + 2, "left")))
    assert _stored(app) == before


def test_an_answer_for_a_trial_that_was_never_sent_is_refused(app, walker) -> None:  # noqa: ANN001
    """"Sent" means GET /api/trial returned the trial to this browser session (its signed cookie
    records it): an answer posted without ever fetching the trial (and so its images) is refused."""
    mallory = walker()
    assert mallory.start().status_code == 302
    mallory.post("/api/consent", {"agree": True})
    mallory.post("/api/device", {"window_width": 1280, "window_height": 800, "is_phone": False})
    mallory.post("/api/instructions", {})
    before = _stored(app)
    blind = mallory.post("/api/answer", mallory.answer_body(0, "left"))
    assert blind.status_code == 409 and "not shown yet" in blind.get_json()["error"]
    assert _stored(app) == before
    _answer_ok(mallory)  # served, then answered
    before = _stored(app)
    next_position = 1
    blind = mallory.post("/api/answer", mallory.answer_body(next_position, "left"))  # the next, not fetched
    assert blind.status_code == 409 and "not shown yet" in blind.get_json()["error"]
    # another browser of the same participant (its own cookie) has not been sent the trial either
    other_tab = type(mallory)(app, mallory.pid)
    assert other_tab.start().status_code == 302
    _refused(other_tab.post("/api/answer", other_tab.answer_body(next_position, "left")))
    assert _stored(app) == before
    assert mallory.current()["position"] == next_position
    assert mallory.post("/api/answer", mallory.answer_body(next_position, "left")).status_code == 200


def test_nothing_at_all_is_accepted_after_completion(app, walker) -> None:  # noqa: ANN001
    mallory = walker()
    mallory.to_trials()
    last_body = None
    while (trial := mallory.current()) is not None:
        last_body = mallory.answer_body(trial["position"], mallory.correct_side(trial["position"]))
        assert mallory.post("/api/answer", last_body).status_code == 200
    assert mallory.complete("first").status_code == 200
    before = _stored(app)
    for url, body in (("/api/complete", {"comment": "second"}), ("/api/instructions", {}),
                      ("/api/device", {"window_width": 1280, "window_height": 800, "is_phone": False}),
                      ("/api/device/give-up", {}), ("/api/consent", {"agree": False}),
                      ("/api/answer", {**last_body, "answer_id": "a-new-id-123"}),
                      ("/api/answer", {**last_body, "chosen_side": "left" if last_body["chosen_side"] == "right" else "right"})):
        _refused(mallory.post(url, body))
    assert mallory.start().status_code == 302  # back to the "already completed" page, nothing changed
    assert _stored(app) == before


def test_images_of_trials_not_yet_reached_are_refused_even_under_valid_ids(app, walker) -> None:  # noqa: ANN001
    """Image ids are HMACs only the server can make; even so, an id of a trial further on than the
    next one (which study.js preloads) is refused, e.g. were the key ever to leak."""
    from study_server.flow import participant_trials
    from study_server.plan import image_token, trial_images

    mallory = walker()
    mallory.to_trials()
    while mallory.current()["practice"]:  # into the main trials: their whole plan exists
        _answer_ok(mallory)
    state = app.extensions["maco"]
    current = mallory.current()
    sent = set(_image_urls(current))
    with Session(state.engine) as session:
        participant = session.get(Participant, mallory.participant().id)
        images = {reached: {image for trial in participant_trials(session, participant)
                            if (trial.position <= current["position"] + 1) == reached
                            for image in trial_images(state.study, participant.condition, trial)}
                  for reached in (True, False)}
    # images only trials further on show (a base or reference image may recur)
    urls = {f"/img/{image_token(state.token_secret, participant.id, image)}"
            for image in images[False] - images[True]}
    assert urls
    before = _stored(app)
    assert all(mallory.client.get(url).status_code == 404 for url in urls)
    assert all(mallory.client.get(url).status_code == 200 for url in sent)
    assert _stored(app) == before


def test_nothing_sent_before_the_answer_depends_on_the_correct_side(app, walker, bundle) -> None:  # noqa: ANN001
    """Side channels beyond names (test_server_answers checks those): for every trial the two query
    images have the same byte size and headers, and with the trial's correct side flipped in the
    database the trial JSON and every header are the same, left and right swapped."""
    import io

    import numpy as np
    from PIL import Image
    from sqlalchemy import update

    mallory = walker()
    mallory.to_trials()
    engine = app.extensions["maco"].engine

    def seen() -> tuple[dict, dict]:
        response = mallory.client.get("/api/trial")
        headers = {k: v for k, v in response.headers if k not in ("Date", "Set-Cookie")}
        return response.get_json()["trial"], headers

    def image(url: str):  # noqa: ANN202
        response = mallory.client.get(url)
        # the ETag is the URL's own opaque id: it says nothing the URL does not
        assert response.headers["ETag"] == f'"{url.removeprefix("/img/")}"'
        return response.data, {k: v for k, v in response.headers if k not in ("Date", "ETag")}

    def flip(position: int) -> None:
        side, participant_id = mallory.correct_side(position), mallory.participant().id
        with engine.begin() as conn:
            conn.execute(update(Trial).where(Trial.participant_id == participant_id,
                                             Trial.position == position)
                         .values(correct_side="left" if side == "right" else "right"))

    tokens = app.extensions["maco"].participant_images(mallory.participant().id)
    checked = 0
    while (trial := mallory.current()) is not None:
        (left, left_headers), (right, right_headers) = image(trial["left"]), image(trial["right"])
        assert len(left) == len(right) and left_headers == right_headers  # same Content-Length too
        for url, data in ((trial["left"], left), (trial["right"], right)):  # the same pixels as the bundle's
            image_id, _scope = tokens[url.removeprefix("/img/")]
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))),
                                  np.asarray(Image.open(bundle / "images" / f"{image_id}.png").convert("RGB")))
        first, first_headers = seen()
        flip(trial["position"])
        second, second_headers = seen()
        flip(trial["position"])  # back: the test oracle answers with the real key
        assert first_headers == second_headers
        assert {**second, "left": second["right"], "right": second["left"]} == first
        assert (image(second["left"])[1], image(second["right"])[1]) == (left_headers, right_headers)
        mallory.answer_current()
        checked += 1
    assert checked >= 12


def test_the_plan_behind_the_image_check_is_read_again_only_when_it_grows(app, walker) -> None:  # noqa: ANN001
    """GET /img checks an image against the trials reached (above); the plan it checks against is
    read once per participant and process, and again only when a trial beyond it is sent (the main
    trials after practice), not once per trial, and every image of the grown plan is then served."""
    from sqlalchemy import event

    reads = []
    counting = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        if counting and "FROM trials" in statement:
            reads.append(statement)

    engine = app.extensions["maco"].read_engine  # the engine itself where there is no read-only one
    event.listen(engine, "before_cursor_execute", count)
    try:
        w = walker()
        w.to_first_trial()
        trials_sent = 0
        while not (data := w.study.trial())["done"]:
            trial = data["trial"]
            trials_sent += 1
            counting.append(True)
            w.study.images(trial)  # every image fetched (an answer needs them)
            counting.clear()
            assert "error" not in w.study.answer(w.answer_body(trial["position"], w.correct_side(trial["position"])))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert trials_sent > 10
    # the first load, the last practice trial (what comes next is not created yet), the main trials,
    # a repeated round if any: a handful, not one a trial (trials_sent)
    assert len(reads) <= 4
