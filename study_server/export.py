"""The export: responses.csv (the docs/export.md contract), its codebook, and Prolific ids apart.

COLUMNS is the single source of both the CSV header and the codebook.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import COMPLETED, IN_PROGRESS, TIMED_OUT, Participant, QueryPair, Study, Trial, Unit, as_utc, utcnow

# (column, type, meaning) in the contract's order
COLUMNS: list[tuple[str, str, str]] = [
    ("participant_id", "str", "pseudonymous participant id (e.g. p-3f9a1c), never the Prolific PID"),
    ("participant_status", "str", "completed, in_progress, returned or timed_out (at export time)"),
    ("condition", "str", "between-subject condition: olah, maco_mask, maco or none"),
    ("network", "str", "study network key from the manifest (vgg16, resnet50, vit_b16, ...)"),
    ("unit", "str", "unit key unique across networks: <network>:<class_index>"),
    ("class_index", "int", "ImageNet class index of the unit (an output logit)"),
    ("class_label", "str", "human-readable class name"),
    ("trial_kind", "str", "practice, main or catch"),
    ("practice_round", "int or empty", "1..3 for practice trials, empty otherwise"),
    ("trial_index", "int", "0-based position of the trial in the participant's whole sequence"),
    ("query_id", "str", "manifest id of the query pair"),
    ("correct_side", "str", "left or right: where the server put the image the unit favours (argmax)"),
    ("chosen_side", "str", "left or right: the side the participant chose"),
    ("correct", "int", "1 if chosen_side == correct_side else 0"),
    ("confidence", "int", "1 (unsure), 2 (sure), 3 (very sure)"),
    ("rt_ms", "float", "reaction time in ms from all images decoded and on screen to the answer (browser clock)"),
    ("server_elapsed_ms", "float or empty", "ms from the server sending the trial to the answer arriving (server "
     "clock; the server refuses an rt_ms longer than it by over 250 ms; empty for answers stored before it was recorded)"),
    ("shown_at", "str", "ISO 8601 UTC time the trial was on screen (answered_at - rt_ms, server clock)"),
    ("answered_at", "str", "ISO 8601 UTC time the answer was stored (server clock)"),
    ("window_width", "int", "browser window inner width in CSS px at the answer"),
    ("window_height", "int", "browser window inner height in CSS px at the answer"),
    ("device_pixel_ratio", "float", "window.devicePixelRatio at the answer"),
    ("blur_count", "int", "times the window lost focus during this trial"),
    ("fullscreen_exit_count", "int", "times the browser left full screen during this trial"),
    ("instruction_ms", "float", "per participant (repeated on each row): time on the instructions page"),
    ("practice_rounds", "int", "per participant: practice rounds used (1..3; 3 and still wrong = flagged)"),
    ("total_ms", "float or empty", "per participant: /start to completion; empty if not completed"),
]
COLUMN_NAMES = [name for name, _, _ in COLUMNS]
PROLIFIC_COLUMNS = ["participant_id", "prolific_pid", "study_id", "session_id"]


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
    for p in _participants(session, study):
        total_ms = ((as_utc(p.completed_at) - as_utc(p.created_at)).total_seconds() * 1000
                    if p.status == COMPLETED and p.completed_at else "")
        per_participant = {"participant_id": p.public_id, "participant_status": effective_status(p, timeout, now),
                           "condition": p.condition, "instruction_ms": _blank(p.instruction_ms),
                           "practice_rounds": p.practice_round, "total_ms": total_ms}
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


def codebook_markdown() -> str:
    lines = ["# responses.csv codebook", "",
             "UTF-8, comma-separated, header row, one row per answered trial (practice, main and",
             "catch); preview participants are never included. Prolific ids are in prolific_ids.csv.",
             "", "| column | type | meaning |", "|---|---|---|"]
    lines += [f"| {name} | {kind} | {meaning} |" for name, kind, meaning in COLUMNS]
    return "\n".join(lines) + "\n"


def export(session: Session, out_csv: Path, study: str | None = None,
           timeout: timedelta | None = None) -> dict[str, Any]:
    """Write responses.csv, codebook.md and prolific_ids.csv (next to it); return counts."""
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", encoding="utf-8", newline="") as f:
        rows = write_responses(session, f, study, timeout)
    codebook = out_csv.parent / "codebook.md"
    codebook.write_text(codebook_markdown(), encoding="utf-8")
    ids = out_csv.parent / "prolific_ids.csv"
    participants = _participants(session, study)
    with ids.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PROLIFIC_COLUMNS)
        writer.writerows([p.public_id, p.prolific_pid, p.prolific_study_id, p.prolific_session_id]
                         for p in participants)
    return {"rows": rows, "participants": len(participants), "responses": str(out_csv),
            "codebook": str(codebook), "prolific_ids": str(ids)}
