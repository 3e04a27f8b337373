"""Speed and presence, decided on the server: which answers count, and which sessions go to review.

Presence. GET /img records every trial image it sends a participant (`served_images`, under the
participant's opaque token): the base and both queries, the images that carry the task; POST
/api/answer accepts an answer only for a trial whose three are recorded. The references are
immutable static files (reference_files.py) that a proxy or CDN may serve from its cache, so the
server cannot see them fetched and does not count them. A script that reads /api/trial and answers
without fetching the pictures is refused, and nothing is stored.

Speed. The browser's `rt_ms` (images on screen to the press) below MIN_RT_MS is refused: under
200 ms nobody has looked at a reference grid and two queries and chosen (a simple visual reaction
alone takes about that long), so such an answer is an accidental press or a script; the trial
stays on screen. Everything else is stored, and a completed session is marked for review when

- `fast_answers`: its median server-measured time per main or catch answer (GET /api/trial to the
  answer) is below MIN_ANSWER_MS (1 s: a person needs several seconds for a trial of this task; a
  median, so a few quick guesses never trip it);
- `fast_session`: /start to completion took less than MIN_SESSION_S (60 s: consent, device check
  and instructions alone take longer);
- `clock_gap`: its median (server time - `rt_ms`) is above MAX_CLOCK_GAP_MS (3 s: the browser
  preloads each next trial's images, so for a person the gap is a round trip and a paint; a
  script that waits on the server's clock and reports a small `rt_ms` shows a large one);
- `webdriver`: the browser reported `navigator.webdriver` (set by automation tools, never by a
  person's browser) on any answer.

A marked session finishes normally and is shown REVIEW_CODE instead of COMPLETION_CODE. Nothing
here rejects anyone: Prolific allows rejecting for speed only for statistical outliers (3 SD below
the mean completion time), which the researcher decides once the study is complete
(docs/admin.md, "Review submissions").
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from sqlalchemy import Connection, Select, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from .models import Participant, ServedImage, Trial, as_utc, utcnow

REVIEW_REASONS = {  # key (stored, exported) -> what the admin pages say
    "fast_answers": "median time per answer below MIN_ANSWER_MS",
    "fast_session": "whole session shorter than MIN_SESSION_S",
    "clock_gap": "browser times far below the server's (median gap above MAX_CLOCK_GAP_MS)",
    "webdriver": "the browser reported automation (navigator.webdriver)",
}


@dataclass(frozen=True)
class SpeedRules:
    min_rt_ms: int
    min_answer_ms: int
    min_session_s: int
    max_clock_gap_ms: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SpeedRules:
        return cls(config["MIN_RT_MS"], config["MIN_ANSWER_MS"], config["MIN_SESSION_S"], config["MAX_CLOCK_GAP_MS"])


_RECORD = {"sqlite": sqlite.insert(ServedImage).on_conflict_do_nothing(),
           "postgresql": postgresql.insert(ServedImage).on_conflict_do_nothing()}


def record_served(connection: Connection, participant_id: int, token: str) -> None:
    """Note that this participant was sent the image under `token` (once; the caller commits).

    Several images a trial make this the most frequent write: one prepared statement on a bare
    connection (no ORM session), and a commit that does not wait for the disk (SQLite: a
    `relaxed` engine, db.py; PostgreSQL: synchronous_commit off), which saves most of its cost
    (an fsync each). A crash of the server loses none; a crash of the machine may lose the last
    few, and then an answer to their trial is refused until they are fetched again: never an
    answer, which is committed durably (and makes every earlier record durable)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
    connection.execute(_RECORD[dialect], {"participant_id": participant_id, "token": token, "served_at": utcnow()})


@lru_cache(maxsize=None)
def _served_statement(n_tokens: int) -> Select:
    """How many of `n_tokens` tokens (:t0, :t1, ...) were sent: built once per count (flow.PLAN says
    why), with one parameter per token, not an expanding IN, which is compiled again on every run."""
    tokens = [bindparam(f"t{i}") for i in range(n_tokens)]
    return select(func.count()).select_from(ServedImage).where(
        ServedImage.participant_id == bindparam("participant_id"), ServedImage.token.in_(tokens))


def served_count(connection: Connection, participant_id: int, tokens: set[str]) -> int:
    """How many of `tokens` were sent to the participant."""
    return connection.scalar(_served_statement(len(tokens)),
                             {"participant_id": participant_id, **{f"t{i}": t for i, t in enumerate(sorted(tokens))}})


def _answered(trials: list[Trial]) -> list[Trial]:
    return [t for t in trials if t.answer_id is not None and t.kind != "practice"]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def review_reasons(participant: Participant, trials: list[Trial], rules: SpeedRules) -> list[str]:
    """The REVIEW_REASONS keys a completed participant trips (their whole plan in `trials`)."""
    answered = _answered(trials)
    server_ms = _median([t.server_elapsed_ms for t in answered if t.server_elapsed_ms is not None])
    gap_ms = _median([t.server_elapsed_ms - t.rt_ms for t in answered if t.server_elapsed_ms is not None])
    session_s = (as_utc(participant.completed_at) - as_utc(participant.created_at)).total_seconds()
    tripped = {
        "fast_answers": server_ms is not None and server_ms < rules.min_answer_ms,
        "fast_session": session_s < rules.min_session_s,
        "clock_gap": gap_ms is not None and gap_ms > rules.max_clock_gap_ms,
        "webdriver": any(t.webdriver for t in trials),
    }
    return [key for key in REVIEW_REASONS if tripped[key]]


def signals(trials: list[Trial], images_fetched: int) -> dict[str, Any]:
    """What a researcher weighs on a participant's page: pace, its spread, focus, input, automation."""
    answered = _answered(trials)
    server_ms = sorted(t.server_elapsed_ms for t in answered if t.server_elapsed_ms is not None)
    quartiles = statistics.quantiles(server_ms, n=4) if len(server_ms) >= 2 else None
    return {
        "median_server_ms": _median(server_ms),
        "server_ms_iqr": None if quartiles is None else quartiles[2] - quartiles[0],
        "median_rt_ms": _median([t.rt_ms for t in answered]),
        "median_clock_gap_ms": _median([t.server_elapsed_ms - t.rt_ms for t in answered
                                        if t.server_elapsed_ms is not None]),
        "focus_losses": sum(t.blur_count or 0 for t in answered),
        "key_answers": sum(t.answer_input == "key" for t in answered),
        "pointer_answers": sum(t.answer_input == "pointer" for t in answered),
        "webdriver": any(t.webdriver for t in trials),
        "images_fetched": images_fetched,
    }
