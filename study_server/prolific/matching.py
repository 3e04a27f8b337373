"""Prolific's submissions matched to the server's records, and what to do with each.

A submission is matched by its id (Prolific passes it to /start as SESSION_ID), else by the
participant's Prolific ID. Only a submission awaiting review, whose record completed cleanly on
the server with the completion code it entered, is approved; nothing is ever rejected here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from ..models import COMPLETED
from .codes import APPROVE, OUTCOME_CODES, RETURN, REVIEW
from .records import ServerRecord

# what reconcile does with a submission (the verdict): APPROVE, REVIEW, RETURN (codes.py), or
WAITING = "waiting"  # still working on it (ACTIVE, RESERVED)
SETTLED = "settled"  # approved, rejected, returned, screened out or timed out with nothing to pay
MISMATCH = "mismatch"  # Prolific and the server disagree: a person must look

AWAITING_REVIEW = "AWAITING REVIEW"
TIMED_OUT_STATUSES = ("TIMED-OUT", "TIME-OUT")  # Prolific spells it both ways in its schemas
VERDICTS = (APPROVE, REVIEW, RETURN, WAITING, SETTLED, MISMATCH)


@dataclass(frozen=True)
class Match:
    submission: dict | None
    record: ServerRecord | None
    verdict: str
    problem: str = ""  # one line for a mismatch

    @property
    def submission_id(self) -> str:
        return (self.submission or {}).get("id") or ""

    @property
    def prolific_pid(self) -> str:
        return (self.submission or {}).get("participant_id") or (self.record.prolific_pid if self.record else "")


def match(submissions: Iterable[dict], records: Iterable[ServerRecord], study_id: str,
          codes: Mapping[str, str]) -> list[Match]:
    """One Match per submission, then one per server completion that has no submission.
    `codes`: the server's completion codes by config key."""
    records = [r for r in records if r.prolific_study_id == study_id]
    by_session = {r.session_id: r for r in records if r.session_id}
    by_pid = {r.prolific_pid: r for r in records}
    matches, seen = [], set()
    for submission in submissions:
        record = by_session.get(submission.get("id")) or by_pid.get(submission.get("participant_id"))
        if record is not None:
            seen.add(record.public_id)
        matches.append(_judge(submission, record, codes))
    for record in records:
        if record.public_id not in seen and record.status == COMPLETED:
            matches.append(Match(None, record, MISMATCH, "completed on the server, but Prolific has no submission "
                                                         "of this participant"))
    return matches


def _judge(submission: dict, record: ServerRecord | None, codes: Mapping[str, str]) -> Match:
    status = submission.get("status", "")
    completed = record is not None and record.status == COMPLETED
    if status in ("ACTIVE", "RESERVED"):
        return Match(submission, record, WAITING)
    if status in TIMED_OUT_STATUSES and completed:
        return Match(submission, record, MISMATCH, "completed on the server, but timed out on Prolific: "
                                                   "pay it on Prolific by hand if the work was done")
    if status == "RETURNED" and completed:
        return Match(submission, record, MISMATCH, "completed on the server, but returned on Prolific")
    if status != AWAITING_REVIEW:
        return Match(submission, record, SETTLED)
    entered = submission.get("study_code") or ""
    if record is None:
        return Match(submission, None, MISMATCH, f"submitted with code {entered!r}, but the server has no "
                                                 "record of this participant")
    if record.code_key is None:
        return Match(submission, record, MISMATCH, f"submitted with code {entered!r}, but the server shows "
                                                   f"the participant {record.status}, not finished")
    expected = codes.get(record.code_key, "")
    if entered != expected:
        return Match(submission, record, MISMATCH, f"entered code {entered!r}, but the server gave "
                                                   f"{record.code_key} {expected!r}")
    return Match(submission, record, OUTCOME_CODES[record.code_key].verdict)
