"""The dashboard's figures: participants per condition and status, progress towards the target
per condition and per network, who is in the study now, and the exclusion preview.

Preview participants never count. A condition's progress is its completed participants against
TARGET_PER_CONDITION; a network's is the main-trial answers of completed participants against
what the targets imply (every wanted participant answers that network's share of the main trials).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stimuli.manifest import Manifest
from study_protocol.exclusions import CATCH_TOLERANCE, REASONS, ExclusionRules

from . import stages
from .export import effective_status
from .models import COMPLETED, IN_PROGRESS, Participant, QueryPair, Trial, Unit, as_utc
from .plan import StudyContext, main_phase_length

BEFORE_TRIALS = stages.before("trials")
STATUS_COLUMNS = ("started", "in progress", "completed", "returned", "timed out")
EXCLUSION_RULES = ExclusionRules()  # the analysis defaults (study_protocol), previewed per participant


def dashboard_status(participant: Participant, timeout: timedelta, now: datetime) -> str:
    """The status in words; "started" for someone not yet past the instructions."""
    status = effective_status(participant, timeout, now)
    if status == IN_PROGRESS and participant.stage in BEFORE_TRIALS:
        return "started"
    return status.replace("_", " ")


@dataclass
class Progress:
    """One bar: `done` of `target` (target 0: none set, no bar)."""

    label: str
    done: int
    target: int
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.target) if self.target else None


def real_participants(session: Session, ctx: StudyContext) -> list[Participant]:
    return list(session.scalars(select(Participant).where(
        Participant.study_id == ctx.study_id, Participant.is_preview.is_(False))
        .order_by(Participant.created_at.desc())))


def condition_progress(participants: list[Participant], ctx: StudyContext, targets: dict[str, int],
                       now: datetime) -> list[Progress]:
    rows = {c: Progress(c, 0, targets[c]) for c in ctx.manifest.conditions}
    for p in participants:
        rows[p.condition].counts[dashboard_status(p, ctx.timeout, now)] += 1
    for row in rows.values():
        row.done = row.counts["completed"]
    return list(rows.values())


def overall(rows: list[Progress]) -> Progress:
    """The whole study: every condition's rows added up."""
    return Progress("all", sum(r.done for r in rows), sum(r.target for r in rows), sum((r.counts for r in rows), Counter()))


def attrition(row: Progress) -> float | None:
    """Returned and timed out among everyone who started in that condition."""
    total = sum(row.counts.values())
    return (row.counts["returned"] + row.counts["timed out"]) / total if total else None


def main_trials_per_network(manifest: Manifest) -> dict[str, float]:
    """How many main trials of each network one participant answers (on average, when the
    protocol draws a subset of the main pairs)."""
    units = {u.key: u.network for u in manifest.units}
    pairs = Counter(units[pair.unit] for pair in manifest.query_pairs)
    drawn = manifest.protocol.main_trials_per_participant
    share = 1.0 if not drawn else min(1.0, drawn / len(manifest.query_pairs))
    return {n.key: pairs[n.key] * share for n in manifest.networks}


def network_progress(session: Session, ctx: StudyContext, targets: dict[str, int]) -> list[Progress]:
    answered = dict(session.execute(
        select(Unit.network, func.count()).select_from(Trial)
        .join(Participant, Trial.participant_id == Participant.id)
        .join(QueryPair, Trial.query_pair_id == QueryPair.id).join(Unit, QueryPair.unit_id == Unit.id)
        .where(Participant.study_id == ctx.study_id, Participant.is_preview.is_(False),
               Participant.status == COMPLETED, Trial.kind == "main", Trial.answer_id.is_not(None))
        .group_by(Unit.network)).all())
    wanted = sum(targets.values())
    return [Progress(network, answered.get(network, 0), round(wanted * per_participant))
            for network, per_participant in main_trials_per_network(ctx.manifest).items()]


def live_participants(session: Session, participants: list[Participant], ctx: StudyContext,
                      now: datetime) -> list[dict[str, Any]]:
    """Everyone started or in progress: main and catch trials answered of those planned (the
    same number for everyone; practice rounds add rows, never to this count), practice answers
    apart, last sign of life."""
    live = [p for p in participants if dashboard_status(p, ctx.timeout, now) in ("started", "in progress")]
    if not live:
        return []
    answered: Counter[tuple[int, bool]] = Counter()  # (participant, practice?) -> answers
    for pid, kind, n in session.execute(
            select(Trial.participant_id, Trial.kind, func.count(Trial.answer_id))
            .where(Trial.participant_id.in_([p.id for p in live])).group_by(Trial.participant_id, Trial.kind)):
        answered[pid, kind == "practice"] += n
    planned = main_phase_length(ctx.manifest)
    return [{"p": p, "answered": answered.get((p.id, False), 0), "planned": planned,
             "practice_answered": answered.get((p.id, True), 0), "last_seen": as_utc(p.last_seen_at)}
            for p in live]


def exclusion_previews(session: Session, participants: list[Participant],
                       rules: ExclusionRules = EXCLUSION_RULES) -> dict[int, dict[str, Any]]:
    """analysis.exclusions' rules (the same ExclusionRules) applied to each participant's stored
    answers: what the analysis would exclude them for. Analysis decisions, never payment."""
    answers: dict[int, list[tuple[str, str, str]]] = {p.id: [] for p in participants}
    small_window: set[int] = set()
    for pid, kind, chosen, correct, width, height in session.execute(
            select(Trial.participant_id, Trial.kind, Trial.chosen_side, Trial.correct_side,
                   Trial.window_width, Trial.window_height)
            .where(Trial.participant_id.in_(list(answers)), Trial.answer_id.is_not(None))):
        answers[pid].append((kind, chosen, correct))
        if (width or rules.min_window_width) < rules.min_window_width or \
                (height or rules.min_window_height) < rules.min_window_height:
            small_window.add(pid)
    previews = {}
    for p in participants:
        mine = answers[p.id]
        catch = [chosen == correct for kind, chosen, correct in mine if kind == "catch"]
        sides = {chosen for kind, chosen, _ in mine if kind == "main"}
        total_s = ((as_utc(p.completed_at) - as_utc(p.created_at)).total_seconds()
                   if p.status == COMPLETED and p.completed_at else None)
        failed = {
            "incomplete": total_s is None,
            "catch": bool(catch) and sum(catch) < rules.min_catch_accuracy * len(catch) - CATCH_TOLERANCE,
            "instructions": p.instruction_ms is None or p.instruction_ms / 1000 < rules.min_instruction_s,
            "total_time": total_s is not None and not rules.min_total_s <= total_s <= rules.max_total_s,
            "sides": rules.require_both_sides and len(sides) < 2,
            "practice": rules.exclude_practice_flagged and p.practice_flagged,
            "window": p.id in small_window,
        }
        previews[p.id] = {"answered": sum(kind != "practice" for kind, _, _ in mine), "catch_accuracy": sum(catch) / len(catch) if catch else None,
                          "total_ms": None if total_s is None else total_s * 1000,
                          "reasons": [rules.reason(key) for key in REASONS if failed[key]]}
    return previews
