"""Each participant's outcome as the study server stored it, for matching with Prolific.

A record carries the config key of the completion code the participant was shown (flow.code_key)
and the evidence a researcher weighs before paying: times, answers, windows, catch trials.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..export import effective_status
from ..flow import code_key
from ..models import COMPLETED, Participant, ServedImage, Study, Trial, as_utc, utcnow


@dataclass(frozen=True)
class ServerRecord:
    prolific_pid: str
    session_id: str | None  # Prolific's SESSION_ID: the submission's id
    prolific_study_id: str | None
    status: str  # the export's participant_status (silent unfinished participants: timed_out)
    code_key: str | None  # the config key of the code shown (None: no code shown yet)
    public_id: str  # the exported pseudonymous id
    evidence: dict[str, Any] = field(default_factory=dict)


def study_row(session: Session, name: str | None) -> Study:
    """The imported study, by name; the only one when the database holds one."""
    studies = list(session.scalars(select(Study).order_by(Study.id)))
    if name is not None:
        studies = [s for s in studies if s.name == name]
    if len(studies) != 1:
        names = ", ".join(s.name for s in session.scalars(select(Study))) or "none"
        raise LookupError(f"no study named {name!r} in the database (studies: {names})" if name is not None
                          else f"the database holds {len(studies)} studies ({names}): name one with --study")
    return studies[0]


def server_records(session: Session, study: Study, timeout: timedelta) -> list[ServerRecord]:
    """Every real (non-preview) participant of the study, in the order they started."""
    now = utcnow()
    participants = session.scalars(select(Participant).where(
        Participant.study_id == study.id, Participant.is_preview.is_(False)).order_by(Participant.id))
    return [ServerRecord(prolific_pid=p.prolific_pid or "", session_id=p.prolific_session_id,
                         prolific_study_id=p.prolific_study_id, status=effective_status(p, timeout, now),
                         code_key=code_key(p), public_id=p.public_id, evidence=evidence(session, p))
            for p in participants]


def evidence(session: Session, participant: Participant) -> dict[str, Any]:
    """What the server measured of one participant, in units a person reads."""
    answered = list(session.scalars(select(Trial).where(
        Trial.participant_id == participant.id, Trial.answer_id.is_not(None))))
    main = [t for t in answered if t.kind == "main"]
    catch = [t for t in answered if t.kind == "catch"]
    elapsed = [t.server_elapsed_ms for t in main if t.server_elapsed_ms is not None]
    windows = [(t.window_width, t.window_height) for t in answered if t.window_width and t.window_height]
    end = as_utc(participant.completed_at) if participant.status == COMPLETED else as_utc(participant.last_seen_at)
    return {
        "review": participant.review or "",  # the pace rules the session tripped (speed.py)
        "minutes": round((end - as_utc(participant.created_at)).total_seconds() / 60, 1),
        "main_answered": len(main),
        "median_answer_s": round(statistics.median(elapsed) / 1000, 2) if elapsed else None,
        "fastest_answer_s": round(min(elapsed) / 1000, 2) if elapsed else None,
        "catch_correct": f"{sum(t.chosen_side == t.correct_side for t in catch)}/{len(catch)}",
        "smallest_window": "x".join(map(str, min(windows, key=lambda w: w[0] * w[1]))) if windows else None,
        "images_fetched": session.scalar(select(func.count()).select_from(ServedImage).where(
            ServedImage.participant_id == participant.id)),
        "automation_reported": any(t.webdriver for t in answered),
        "focus_losses": sum(t.blur_count or 0 for t in answered),
        "key_answers": f"{sum(t.answer_input == 'key' for t in main)}/{len(main)}",
        "practice_flagged": participant.practice_flagged,
        "return_reason": participant.return_reason,
    }


def completed_minutes(records: list[ServerRecord]) -> list[float]:
    """The minutes each completed participant took (a pilot's, for the study's estimated time)."""
    return [r.evidence["minutes"] for r in records if r.status == COMPLETED]
