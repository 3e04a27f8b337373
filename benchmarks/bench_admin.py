"""Benchmark the dashboard's refresh with many participants: the exclusion preview read in one
query for everyone (study_server.progress.exclusion_previews) against the previous dashboard's
one query per completed participant, side by side in one run on the same SQLite database.

The last line printed is one JSON object: `batched_over_per_participant` (time ratio, lower is
better), and `live_refresh_over_per_participant` (a whole /admin/live refresh, every figure of the
dashboard rendered, against the previous exclusion preview alone).

    python benchmarks/bench_admin.py [--participants 300] [--rounds 7]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from stimuli.testing import build_test_bundle
from study_server.app import create_app
from study_server.bundle import import_bundle
from study_server.db import make_engine, upgrade
from study_server.models import COMPLETED, Participant, QueryPair, Trial, utcnow
from study_server.progress import EXCLUSION_RULES, exclusion_previews


def previous_exclusion_preview(session: Session, participant: Participant) -> list[str]:
    """The previous dashboard's per-participant preview (one query each), kept as the reference."""
    answered = list(session.scalars(select(Trial).where(Trial.participant_id == participant.id,
                                                        Trial.answer_id.is_not(None))))
    catch = [t for t in answered if t.kind == "catch"]
    catch_acc = sum(t.chosen_side == t.correct_side for t in catch) / len(catch) if catch else None
    sides = {t.chosen_side for t in answered if t.kind != "practice"}
    reasons = []
    if catch_acc is not None and catch_acc < EXCLUSION_RULES.min_catch_accuracy:
        reasons.append("catch trials")
    if participant.instruction_ms is not None and participant.instruction_ms < 1000 * EXCLUSION_RULES.min_instruction_s:
        reasons.append("instructions too fast")
    if len(sides) == 1:
        reasons.append("one side only")
    return reasons


def populate(db_url: str, bundle: Path, participants: int) -> None:
    """Completed participants with every trial answered, written straight into the database."""
    engine = make_engine(db_url)
    with Session(engine) as session:
        study = import_bundle(session, bundle)
        pairs = list(session.scalars(select(QueryPair).where(QueryPair.study_id == study.id)))
        conditions = ["olah", "maco_mask", "maco", "none"]
        now = utcnow()
        for k in range(participants):
            p = Participant(public_id=f"p-{k:08x}", study_id=study.id, prolific_pid=f"pid{k}", is_preview=False,
                            condition=conditions[k % 4], status=COMPLETED, stage="done", plan_seed=k,
                            created_at=now - timedelta(minutes=20), last_seen_at=now, completed_at=now,
                            instruction_ms=20_000.0, practice_round=1)
            session.add(p)
            session.flush()
            session.add_all(Trial(participant_id=p.id, position=i, kind=pair.kind, query_pair_id=pair.id,
                                  correct_side="left" if (i + k) % 2 else "right", answer_id=f"a-{k}-{i}",
                                  chosen_side="left" if i % 3 else "right", confidence=2, rt_ms=900.0,
                                  answered_at=now) for i, pair in enumerate(pairs))
        session.commit()
    engine.dispose()


def run(participants: int, rounds: int, folder: Path) -> dict[str, float]:
    bundle = folder / "bundle"
    build_test_bundle(bundle, pairs_per_unit=5, n_practice=2, n_catch=3)
    db_url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(db_url)
    populate(db_url, bundle, participants)
    app = create_app({"DATABASE_URL": db_url, "BUNDLE_DIR": str(bundle), "SECRET_KEY": "bench", "TESTING": True,
                      "TARGET_PER_CONDITION": participants // 4})
    client = app.test_client()
    with client.session_transaction() as cookie:
        cookie["admin"], cookie["admin_seen"], cookie["admin_since"] = True, time.time(), time.time()
    engine = app.extensions["maco"].read_engine  # the dashboard's own reads never take the write lock
    times: dict[str, list[float]] = {"batched": [], "per_participant": [], "live": []}
    with Session(engine) as session:
        completed = list(session.scalars(select(Participant).where(Participant.status == COMPLETED)))
        for _ in range(rounds):  # alternated, so that machine load hits all three alike
            start = time.perf_counter()
            exclusion_previews(session, completed)
            times["batched"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for p in completed:
                previous_exclusion_preview(session, p)
            times["per_participant"].append(time.perf_counter() - start)
            start = time.perf_counter()
            assert client.get("/admin/live").status_code == 200
            times["live"].append(time.perf_counter() - start)
    engine.dispose()
    median = {name: statistics.median(values) for name, values in times.items()}
    return {"participants": participants,
            "batched_over_per_participant": round(median["batched"] / median["per_participant"], 3),
            "live_refresh_over_per_participant": round(median["live"] / median["per_participant"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(run(args.participants, args.rounds, Path(folder))))


if __name__ == "__main__":
    main()
