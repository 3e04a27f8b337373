"""The window rule on every answer, leaving from the trials page, and the time-out page (issue 23)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from study_server.models import Participant, Trial, utcnow


def _answered(app, pid: str) -> int:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return session.scalar(select(func.count()).select_from(Trial).join(Participant)
                              .where(Participant.prolific_pid == pid, Trial.answer_id.is_not(None)))


def test_an_answer_from_a_small_window_is_refused_and_nothing_stored(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    trial = w.current()
    side = w.correct_side(trial["position"])
    for window in ((700, 450), (939, 800), (1280, 599)):  # the default minimum is 940x600
        reply = w.study.send_answer(w.answer_body(trial["position"], side, window=window))
        assert reply.status_code == 422, window
        assert f"{window[0]}x{window[1]}" in reply.json["error"] and "940x600" in reply.json["error"]
    assert _answered(app, w.pid) == 0
    # enlarged: the same trial is answered, with the window it was given in
    assert w.study.answer(w.answer_body(trial["position"], side, window=(940, 600)))["stored"] is True
    with Session(app.extensions["maco"].engine) as session:
        stored = session.scalar(select(Trial).join(Participant).where(
            Participant.prolific_pid == w.pid, Trial.position == trial["position"]))
        assert (stored.window_width, stored.window_height) == (940, 600)


def test_the_window_minimum_is_the_configured_one(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()  # checked at 1280x800
    app.config["MIN_WINDOW_WIDTH"] = 1300  # as MACO_MIN_WINDOW_WIDTH would set it
    trial = w.current()
    reply = w.study.send_answer(w.answer_body(trial["position"], "left", window=(1280, 800)))
    assert reply.status_code == 422 and "1300x600" in reply.json["error"]
    assert _answered(app, w.pid) == 0


def test_a_phone_after_the_screen_check_stores_no_tap(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()  # the screen check passed on a computer
    trial = w.current()
    w.client.environ_base["HTTP_USER_AGENT"] = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
                                                "Mobile/15E148 Safari/604.1")
    # whatever window it claims
    reply = w.study.send_answer(w.answer_body(trial["position"], w.correct_side(trial["position"])))
    assert reply.status_code == 422 and "computer" in reply.json["error"]
    assert _answered(app, w.pid) == 0


def test_the_trials_page_can_end_the_study_for_want_of_a_device(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    w.answer_current()
    assert w.post("/api/trials/give-up", {}).status_code == 200
    p = w.participant()
    assert (p.status, p.stage, p.return_reason) == ("returned", "returned", "no suitable device")
    assert b"Please return the study" in w.client.get("/study").data
    # only from the trials page: a participant on the comment page (or done) cannot
    done = walker()
    done.to_trials()
    done.answer_all()
    assert done.post("/api/trials/give-up", {}).status_code == 409
    assert done.participant().status == "in_progress"
    # and the screen check's endpoint is the screen check's only
    w = walker()
    w.to_trials()
    assert w.post("/api/device/give-up", {}).status_code == 409
    assert w.participant().stage == "trials"


def _silence(app, pid: str, hours: float) -> None:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        session.execute(update(Participant).where(Participant.prolific_pid == pid)
                        .values(last_seen_at=utcnow() - timedelta(hours=hours)))
        session.commit()


def test_a_participant_back_after_the_time_out_gets_the_time_out_page(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    w.answer_current()
    trial = w.current()
    _silence(app, w.pid, 2)  # PARTICIPANT_TIMEOUT_MIN is 90
    # the open tab goes on: nothing is accepted, the reply is 410 (study.js then opens /study)
    refused = w.study.send_answer(w.answer_body(trial["position"], w.correct_side(trial["position"])))
    assert refused.status_code == 410 and "timed out" in refused.json["error"]
    assert w.study.request("GET", "/api/trial").status_code == 410
    assert _answered(app, w.pid) == 1
    page = w.client.get("/study").data.decode()
    assert "This study session has timed out" in page and "return the submission" in page
    assert 'data-page="trials"' not in page
    # the Prolific link again: the same page, the status marked, never a silent resume
    assert w.start().status_code == 302
    assert "This study session has timed out" in w.client.get("/study").data.decode()
    assert w.participant().status == "timed_out"
    assert w.post("/api/trials/give-up", {}).status_code == 410
    assert w.participant().status == "timed_out"


def test_a_silence_shorter_than_the_time_out_resumes(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    _silence(app, w.pid, 1)
    assert w.start().status_code == 302
    assert b'data-page="trials"' in w.client.get("/study").data
    assert w.answer_current()["stored"] is True
    assert w.participant().status == "in_progress"
