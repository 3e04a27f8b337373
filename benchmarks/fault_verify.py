"""The fault benchmark's check: what the clients were told against what the database holds."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


def stored_data(db_url: str) -> tuple[list[tuple], list[tuple]]:
    """(prolific_pid, condition, status) of every participant; (answer_id, prolific_pid,
    position, chosen_side, confidence) of every stored answer."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from study_server.db import make_engine
    from study_server.models import Participant, Trial

    engine = make_engine(db_url)
    with Session(engine) as session:
        participants = session.execute(select(Participant.prolific_pid, Participant.condition,
                                              Participant.status)).all()
        answers = session.execute(select(Trial.answer_id, Participant.prolific_pid, Trial.position,
                                         Trial.chosen_side, Trial.confidence)
                                  .join(Participant).where(Trial.answer_id.is_not(None))).all()
    engine.dispose()
    return [tuple(p) for p in participants], [tuple(a) for a in answers]


def verify(results: list[dict[str, Any]], participants: list[tuple], answers: list[tuple]) -> dict[str, Any]:
    """The invariants, counted: see the module docstring."""
    ledger = [entry for r in results for entry in r["answers"]]
    acked = {e["answer_id"]: e for e in ledger if e["acked"]}
    stored_ids = Counter(a[0] for a in answers)
    stored = {a[0]: a[1:] for a in answers}
    lost = sum(stored.get(i) != (e["pid"], e["position"], e["chosen_side"], e["confidence"])
               for i, e in acked.items())
    acked_per_trial = Counter((e["pid"], e["position"]) for e in acked.values())
    duplicated = (sum(n - 1 for n in stored_ids.values() if n > 1)
                  + sum(n - 1 for n in acked_per_trial.values() if n > 1))
    completed = Counter(condition for _, condition, status in participants if status == "completed")
    return {
        "sent": len({e["answer_id"] for e in ledger}),
        "acknowledged": len(acked),
        "refused": sum(1 for e in ledger if not e["acked"] and e["refused"]),
        "stored": len(answers),
        "duplicated": duplicated,
        "lost": lost,
        "stored_unacknowledged": sum(1 for i in stored if i not in acked),
        "acknowledged_then_refused": sum(1 for e in acked.values() if e["refused"]),
        "conditions": dict(sorted(completed.items())),
        "balanced": not completed or max(completed.values()) - min(completed.values()) <= 1,
    }


def server_exceptions(log: Path) -> dict[str, int]:
    """The exceptions the server logged (the last line of each traceback), counted: during a
    database restart they are expected (clients see a 500 and retry), otherwise they are bugs."""
    found: Counter[str] = Counter()
    in_traceback = False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line and not line.startswith((" ", "\t", "During handling", "The above")):
            found[line[:160]] += 1
            in_traceback = False
    return dict(found.most_common(8))


def passed(result: dict[str, Any]) -> bool:
    return (result["lost"] == 0 and result["duplicated"] == 0 and result["stuck"] == 0 and result["balanced"]
            and result["stored_unacknowledged"] == 0 and not result["server_exits"])
