"""The participant's whole session through the API, on SQLite and PostgreSQL."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.models import Participant, Trial

from .conftest import Walker


def _trials(app, participant_id: int) -> list[Trial]:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return list(session.scalars(select(Trial).where(Trial.participant_id == participant_id)
                                    .order_by(Trial.position)))


def test_full_session_with_a_repeated_practice(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    # practice round 1 with a wrong answer: feedback, then the round repeats
    first = w.answer_current(correct=False)
    assert first["feedback"]["correct"] is False and first["feedback"]["round_result"] is None
    last = w.answer_current(correct=True)
    assert last["feedback"] == {"correct": True, "correct_side": w.correct_side(1), "round_result": "repeat"}
    assert w.current()["practice_round"] == 2
    # round 2 all right: on to the main trials, which give no feedback
    w.answer_current()
    assert w.answer_current()["feedback"]["round_result"] == "passed"
    main = w.answer_current()
    assert "feedback" not in main and main["next"] == "trial"
    n = w.answer_all()
    assert n == 8 + 2 - 1  # 8 main pairs + 2 catch trials, one already answered
    assert w.client.get("/api/trial").get_json()["done"] is True
    assert w.client.get("/study").status_code == 200  # the comment page
    assert w.complete("fine <b>study</b>").status_code == 200
    done = w.client.get("/study")
    assert b"https://app.prolific.com/submissions/complete?cc=C0DE123" in done.data

    p = w.participant()
    assert (p.status, p.stage, p.practice_round, p.practice_flagged) == ("completed", "done", 2, False)
    assert p.instruction_ms is not None and p.comment == "fine <b>study</b>"
    trials = _trials(app, p.id)
    assert [t.position for t in trials] == list(range(14))
    assert [t.kind for t in trials[:4]] == ["practice"] * 4
    assert [t.practice_round for t in trials[:4]] == [1, 1, 2, 2]
    assert sorted(t.kind for t in trials[4:]) == ["catch"] * 2 + ["main"] * 8
    assert all(t.answer_id is not None for t in trials)
    # sides are balanced by the server: 5 left, 5 right among the 10 main+catch trials
    assert sorted(t.correct_side for t in trials[4:]) == ["left"] * 5 + ["right"] * 5
    # every network appears among the main trials, interleaved in a random order
    networks = [t.query_pair.unit.network for t in trials[4:] if t.kind == "main"]
    assert sorted(set(networks)) == ["resnet50", "vgg16"]


def test_practice_stops_after_three_rounds_and_flags(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    results = [w.answer_current(correct=False)["feedback"]["round_result"] for _ in range(6)]
    assert results == [None, "repeat", None, "repeat", None, "continue"]
    p = w.participant()
    assert (p.practice_round, p.practice_flagged) == (3, True)
    assert w.current()["practice"] is False


def test_resume_by_pid_returns_to_the_same_place(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    for _ in range(5):
        w.answer_current()
    before = w.participant()
    position = w.current()["position"]
    again = walker(w.pid)  # a new browser (cookies lost), same PID
    assert again.start().status_code == 302
    assert again.current()["position"] == position == 5
    after = again.participant()
    assert (after.id, after.condition, after.public_id) == (before.id, before.condition, before.public_id)
    assert len(_trials(app, after.id)) == len(_trials(app, before.id))


def test_completed_pid_sees_a_friendly_page(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.to_trials()
    w.answer_all()
    assert w.complete().status_code == 200
    again = walker(w.pid)
    again.start()
    page = again.client.get("/study")
    assert page.status_code == 200 and b"Thank you" in page.data
    assert again.post("/api/answer", again.answer_body(0, "left")).status_code == 409


def test_bad_entry_links_are_explained(app) -> None:  # noqa: ANN001
    client = app.test_client()
    missing = client.get("/start?PROLIFIC_PID=abc&STUDY_ID=s1")
    assert missing.status_code == 400 and b"SESSION_ID is missing or malformed" in missing.data
    malformed = client.get("/start?PROLIFIC_PID=a%20b&STUDY_ID=<x>&SESSION_ID=1")
    assert malformed.status_code == 400 and b"PROLIFIC_PID, STUDY_ID are missing" in malformed.data
    assert client.get("/study").status_code == 403


def test_declining_consent_asks_to_return(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.start()
    assert w.post("/api/consent", {"agree": False}).status_code == 200
    assert b"Please return the study" in w.client.get("/study").data
    assert w.participant().status == "returned"


def test_a_phone_is_asked_for_a_computer_where_the_same_id_continues(app, walker) -> None:  # noqa: ANN001
    phone = walker()
    phone.start()
    phone.post("/api/consent", {"agree": True})
    small = phone.post("/api/device", {"window_width": 800, "window_height": 500, "is_phone": False})
    assert small.status_code == 422 and "800x500" in small.get_json()["error"]
    refused = phone.post("/api/device", {"window_width": 1400, "window_height": 900, "is_phone": True})
    assert refused.status_code == 422 and "computer" in refused.get_json()["error"]
    # a phone's user agent alone is enough
    phone.client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36"
    assert phone.post("/api/device", {"window_width": 1400, "window_height": 900,
                                      "is_phone": False}).status_code == 422
    assert (phone.participant().status, phone.participant().stage) == ("in_progress", "device")
    laptop = walker(phone.pid)  # the same Prolific link, opened on a computer: on at the device check
    assert laptop.start().status_code == 302 and b'data-page="device"' in laptop.client.get("/study").data
    assert laptop.post("/api/device", {"window_width": 1400, "window_height": 900,
                                       "is_phone": False}).status_code == 200
    assert laptop.participant().id == phone.participant().id and laptop.participant().stage == "instructions"


def test_no_suitable_device_returns_with_its_code(app_factory, db_url: str, bundle) -> None:  # noqa: ANN001
    app = app_factory(db_url, bundle, NO_DEVICE_CODE="NODEV1")
    w = Walker(app)
    w.start()
    w.post("/api/consent", {"agree": True})
    w.post("/api/device", {"window_width": 1400, "window_height": 900, "is_phone": True})
    assert w.post("/api/device/give-up", {}).status_code == 200
    assert (w.participant().status, w.participant().return_reason) == ("returned", "no suitable device")
    page = w.client.get("/study").data.decode()
    assert "Please return the study" in page and "cc=NODEV1" in page
    app.extensions["maco"].engine.dispose()


def test_preview_is_kept_apart(app) -> None:  # noqa: ANN001
    app.config["PUBLIC_PREVIEW"] = 1  # open to anyone (else only to a logged-in admin)
    client = app.test_client()
    assert client.get("/preview?condition=none").status_code == 302
    client.post("/api/consent", json={"agree": True})
    with Session(app.extensions["maco"].engine) as session:
        p = session.scalar(select(Participant))
        assert (p.is_preview, p.prolific_pid, p.condition) == (True, None, "none")


def test_steps_out_of_order_are_refused(app, walker) -> None:  # noqa: ANN001
    w = walker()
    w.start()
    refused = w.post("/api/instructions", {})
    assert refused.status_code == 409 and "current step: consent" in refused.get_json()["error"]
    assert w.complete().status_code == 409
    assert w.client.get("/api/trial").get_json()["done"] is True


def test_configuration_from_file_and_environment(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import pytest

    from study_server.config import load_config

    config_file = tmp_path / "server.toml"
    config_file.write_text('completion_code = "FROMFILE"\nparticipant_timeout_min = 45\n')
    monkeypatch.setenv("MACO_CONFIG", str(config_file))
    monkeypatch.setenv("MACO_MIN_WINDOW_WIDTH", "1000")
    config = load_config({"SECRET_KEY": "x"})
    assert (config["COMPLETION_CODE"], config["PARTICIPANT_TIMEOUT_MIN"], config["MIN_WINDOW_WIDTH"]) == \
        ("FROMFILE", 45, 1000)
    with pytest.raises(ValueError, match="unknown configuration key COMPLETION_COD"):
        load_config({"COMPLETION_COD": "typo"})


def test_the_app_refuses_a_bundle_that_is_not_imported(sqlite_url, tmp_path) -> None:  # noqa: ANN001
    import pytest

    from stimuli.testing import build_test_bundle
    from study_server.app import create_app
    from study_server.db import upgrade

    upgrade(sqlite_url)
    build_test_bundle(tmp_path / "b", n_references=1)
    with pytest.raises(RuntimeError, match="is not imported in this database"):
        create_app({"DATABASE_URL": sqlite_url, "BUNDLE_DIR": str(tmp_path / "b"), "SECRET_KEY": "k"})


def test_time_on_the_instructions_is_recorded(app, walker) -> None:  # noqa: ANN001
    from datetime import timedelta

    from sqlalchemy import update

    w = walker()
    w.start()
    w.post("/api/consent", {"agree": True})
    w.post("/api/device", {"window_width": 1280, "window_height": 800, "is_phone": False})
    with Session(app.extensions["maco"].engine) as session:  # 20 s of reading
        shown = w.participant().instructions_shown_at
        session.execute(update(Participant).where(Participant.prolific_pid == w.pid)
                        .values(instructions_shown_at=shown - timedelta(seconds=20)))
        session.commit()
    w.post("/api/instructions", {})
    assert 20_000 <= w.participant().instruction_ms < 30_000
