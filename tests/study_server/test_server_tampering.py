"""Hostile participants: each tampering attempt is refused and leaves the stored data unchanged."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.models import Participant, Trial


def _stored(app) -> list[tuple]:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        trials = [(t.participant_id, t.position, t.answer_id, t.chosen_side) for t in
                  session.scalars(select(Trial).order_by(Trial.participant_id, Trial.position))]
        participants = [(p.id, p.prolific_pid, p.status) for p in
                        session.scalars(select(Participant).order_by(Participant.id))]
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
