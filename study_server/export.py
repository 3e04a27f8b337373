"""The export: responses.csv, its codebook, and Prolific ids apart.

The columns and the codebook are the contract in study_protocol/export.py (docs/export.md).
"""
from __future__ import annotations

import csv
import json
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study_protocol.export import (COLUMN_NAMES, PROLIFIC_COLUMNS, STUDY_DESIGN_FILE, codebook_markdown,
                                   design_markdown, study_design)

from .models import (COMPLETED, IN_PROGRESS, TIMED_OUT, Participant, QueryPair, ServedImage, Study, Trial, Unit,
                     as_utc, utcnow)

def iso(value: datetime | None) -> str:
    value = as_utc(value)
    return "" if value is None else value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def effective_status(participant: Participant, timeout: timedelta | None, now: datetime) -> str:
    """The stored status, with silent unfinished participants shown as timed out."""
    if (participant.status == IN_PROGRESS and timeout is not None
            and as_utc(participant.last_seen_at) < now - timeout):
        return TIMED_OUT
    return participant.status


def _participants(session: Session, study: str | None) -> list[Participant]:
    query = select(Participant).where(Participant.is_preview.is_(False)).order_by(Participant.id)
    if study is not None:
        query = query.join(Study, Study.id == Participant.study_id).where(Study.name == study)
    return list(session.scalars(query))


def response_rows(session: Session, study: str | None = None,
                  timeout: timedelta | None = None) -> Iterator[dict[str, Any]]:
    """One dict per answered trial of every real (non-preview) participant."""
    now = utcnow()
    images_fetched = dict(session.execute(select(ServedImage.participant_id, func.count())
                                          .group_by(ServedImage.participant_id)).all())
    for p in _participants(session, study):
        total_ms = ((as_utc(p.completed_at) - as_utc(p.created_at)).total_seconds() * 1000
                    if p.status == COMPLETED and p.completed_at else "")
        per_participant = {"participant_id": p.public_id, "participant_status": effective_status(p, timeout, now),
                           "condition": p.condition, "instruction_ms": _blank(p.instruction_ms),
                           "practice_rounds": p.practice_round,
                           "practice_flagged": int(p.practice_flagged), "total_ms": total_ms,
                           "review": p.review or "",
                           "images_fetched": images_fetched.get(p.id, 0)}
        trials = session.execute(
            select(Trial, QueryPair, Unit).join(QueryPair, Trial.query_pair_id == QueryPair.id)
            .join(Unit, QueryPair.unit_id == Unit.id)
            .where(Trial.participant_id == p.id, Trial.answer_id.is_not(None)).order_by(Trial.position))
        for trial, pair, unit in trials:
            yield {
                **per_participant,
                "network": unit.network, "unit": unit.key, "class_index": unit.class_index,
                "class_label": unit.label, "trial_kind": trial.kind,
                "practice_round": _blank(trial.practice_round), "trial_index": trial.position,
                "query_id": pair.pair_key, "correct_side": trial.correct_side,
                "chosen_side": trial.chosen_side, "correct": int(trial.chosen_side == trial.correct_side),
                "confidence": trial.confidence, "rt_ms": trial.rt_ms,
                "server_elapsed_ms": _blank(trial.server_elapsed_ms), "shown_at": iso(trial.shown_at),
                "answered_at": iso(trial.answered_at), "window_width": trial.window_width,
                "window_height": trial.window_height, "device_pixel_ratio": trial.device_pixel_ratio,
                "blur_count": trial.blur_count, "fullscreen_exit_count": trial.fullscreen_exit_count,
                "webdriver": "" if trial.webdriver is None else int(trial.webdriver),
                "answer_input": _blank(trial.answer_input),
            }


def _blank(value: Any) -> Any:
    return "" if value is None else value


def write_responses(session: Session, out: io.TextIOBase, study: str | None = None,
                    timeout: timedelta | None = None) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMN_NAMES, lineterminator="\n")
    writer.writeheader()
    n = 0
    for row in response_rows(session, study, timeout):
        writer.writerow(row)
        n += 1
    return n


def _design(session: Session, study: str | None) -> dict[str, Any] | None:
    """The exported study's design (study_protocol.export.study_design); None when the export
    mixes several studies (each has its own conditions)."""
    query = select(Study.manifest_json) if study is None else select(Study.manifest_json).where(Study.name == study)
    manifests = list(session.scalars(query))
    return study_design(json.loads(manifests[0])) if len(manifests) == 1 else None


def export(session: Session, out_csv: Path, study: str | None = None,
           timeout: timedelta | None = None) -> dict[str, Any]:
    """Write responses.csv, codebook.md, study.json (one study: its conditions and declared analysis)
    and prolific_ids.csv (next to it); return counts."""
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", encoding="utf-8", newline="") as f:
        rows = write_responses(session, f, study, timeout)
    codebook = out_csv.parent / "codebook.md"
    design = _design(session, study)
    codebook.write_text(codebook_markdown() + (design_markdown(design) if design else ""), encoding="utf-8")
    if design:
        (out_csv.parent / STUDY_DESIGN_FILE).write_text(json.dumps(design, indent=1) + "\n", encoding="utf-8")
    ids = out_csv.parent / "prolific_ids.csv"
    participants = _participants(session, study)
    with ids.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PROLIFIC_COLUMNS)
        writer.writerows([p.public_id, p.prolific_pid, p.prolific_study_id, p.prolific_session_id]
                         for p in participants)
    return {"rows": rows, "participants": len(participants), "responses": str(out_csv),
            "codebook": str(codebook), "prolific_ids": str(ids)}
