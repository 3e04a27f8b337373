"""The draft study sent to Prolific: built from the server's configuration (codes, targets,
time-out, Prolific settings), the imported study and the server's public URL."""
from __future__ import annotations

import math
import statistics
from urllib.parse import urlsplit

from ..config import condition_targets
from .codes import completion_codes

# Prolific replaces these in the study URL (the names /start reads)
URL_PARAMETERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


def study_url(public_url: str) -> str:
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ValueError(f"--url must be the server's public address, e.g. https://study.example.org, not {public_url!r}")
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"--url must use https (participants' cookies are secure-only): {public_url!r}")
    return f"{public_url.rstrip('/')}/start?{URL_PARAMETERS}"


def minimum_maximum_time(minutes: float) -> int:
    """Prolific's lower bound on a study's maximum allowed time: 2 + 2 t + 2 sqrt(t) minutes."""
    return math.ceil(2 + 2 * minutes + 2 * math.sqrt(minutes))


def estimated_minutes(completed: list[float]) -> int:
    """The pilot's median time, rounded up to a whole minute."""
    if not completed:
        raise ValueError("no completed participant in the database to take the pilot's median time from: "
                         "run a pilot first, or give --minutes")
    return max(1, math.ceil(statistics.median(completed)))


def reward_cents(hourly_rate_cents: int, minutes: int) -> int:
    return math.ceil(hourly_rate_cents * minutes / 60)


def draft_body(cfg: dict, *, study_name: str, conditions: list[str], public_url: str, minutes: int,
               places: int | None) -> dict:
    """The body of POST /api/v1/studies/; ValueError (one line) for what must be fixed first."""
    targets = sum(condition_targets(cfg["TARGET_PER_CONDITION"], conditions).values())
    places = places or targets
    if not places:
        raise ValueError("no number of places: set TARGET_PER_CONDITION (the server's targets) or give --places")
    floor = minimum_maximum_time(minutes)
    if cfg["PARTICIPANT_TIMEOUT_MIN"] < floor:
        raise ValueError(f"PARTICIPANT_TIMEOUT_MIN is {cfg['PARTICIPANT_TIMEOUT_MIN']} min, below Prolific's minimum "
                         f"maximum time for a {minutes} min study ({floor} min): raise it (the server frees a slot "
                         "when Prolific times the participant out)")
    return {
        "name": cfg["PROLIFIC_STUDY_NAME"],
        "internal_name": f"maco-study {study_name}",
        "description": cfg["PROLIFIC_DESCRIPTION"].replace(
            "{min_window}", f"{cfg['MIN_WINDOW_WIDTH']}x{cfg['MIN_WINDOW_HEIGHT']}"),
        "external_study_url": study_url(public_url),
        "prolific_id_option": "url_parameters",
        "completion_codes": completion_codes(cfg),
        "total_available_places": places,
        "estimated_completion_time": minutes,
        "maximum_allowed_time": cfg["PARTICIPANT_TIMEOUT_MIN"],
        "reward": reward_cents(cfg["PROLIFIC_HOURLY_RATE"], minutes),
        "device_compatibility": ["desktop"],
        "peripheral_requirements": [],
    }
