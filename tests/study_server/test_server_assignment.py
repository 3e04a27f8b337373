"""Balanced between-subject assignment, under concurrency, with time-outs and returns."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from study_server.models import Participant, utcnow


def _counts(app, **where) -> Counter[str]:  # noqa: ANN001, ANN003
    with Session(app.extensions["maco"].engine) as session:
        query = select(Participant.condition).where(Participant.is_preview.is_(False))
        for name, value in where.items():
            query = query.where(getattr(Participant, name) == value)
        return Counter(session.scalars(query))


def test_concurrent_starts_stay_balanced(app, walker) -> None:  # noqa: ANN001
    n_threads, per_thread = 12, 3  # 36 starts, 4 conditions: 9 each
    barrier = threading.Barrier(n_threads)
    failures: list[BaseException] = []

    def participant_burst(k: int) -> None:
        try:
            walkers = [walker(f"pid{k:02d}x{j}") for j in range(per_thread)]
            barrier.wait()
            for w in walkers:
                assert w.start().status_code == 302
            # a double click on the link: the same PID must not make a second participant
            assert walkers[0].start().status_code == 302
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=participant_burst, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert _counts(app) == Counter({"olah": 9, "maco_mask": 9, "maco": 9, "none": 9})


def test_returns_and_time_outs_free_their_slot(app, walker) -> None:  # noqa: ANN001
    first = [walker(f"first{k}") for k in range(4)]
    for w in first:
        w.start()
    assert set(_counts(app).values()) == {1}
    # one returns, one goes silent beyond the time-out: their conditions get the next two
    returned, silent = first[0], first[1]
    returned.post("/api/consent", {"agree": False})
    with Session(app.extensions["maco"].engine) as session:
        session.execute(update(Participant).where(Participant.prolific_pid == silent.pid)
                        .values(last_seen_at=utcnow() - timedelta(hours=5)))
        session.commit()
    freed = {returned.participant().condition, silent.participant().condition}
    newcomers = [walker(f"new{k}") for k in range(2)]
    for w in newcomers:
        w.start()
    assert {w.participant().condition for w in newcomers} == freed
    assert silent.participant().status == "timed_out"
    # the silent one comes back: its slot is gone, it stays timed out (test_server_timeout.py: the page)
    silent_again = walker(silent.pid)
    silent_again.start()
    assert silent_again.participant().status == "timed_out"


def test_previews_do_not_count(app, walker) -> None:  # noqa: ANN001
    app.config["PUBLIC_PREVIEW"] = 1  # open to anyone (else only to a logged-in admin)
    for _ in range(3):
        assert app.test_client().get("/preview?condition=olah").status_code == 302
    w = walker()
    w.start()
    # with previews ignored every condition is empty, so any may be chosen; three
    # more real starts must then fill the other three conditions exactly
    for k in range(3):
        walker(f"more{k}").start()
    assert _counts(app) == Counter({"olah": 1, "maco_mask": 1, "maco": 1, "none": 1})
