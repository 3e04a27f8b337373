"""Server configuration: defaults, then a TOML file (MACO_CONFIG), then MACO_* variables.

| key | env | meaning |
|---|---|---|
| DATABASE_URL | MACO_DATABASE_URL | SQLAlchemy URL; `sqlite:///study.db` (WAL) or `postgresql+psycopg://...` |
| BUNDLE_DIR | MACO_BUNDLE_DIR | the stimulus bundle served (its study must be imported) |
| SECRET_KEY | MACO_SECRET_KEY | cookie and image-id signing key: required (the app refuses to start without it) unless PREVIEW_MODE or testing |
| PREVIEW_MODE | MACO_PREVIEW_MODE | 1: a researcher's trial run; without SECRET_KEY one is generated once and kept in the database (anyone who can read a backup could forge sessions: never for real data); /preview is open to anyone |
| PUBLIC_PREVIEW | MACO_PUBLIC_PREVIEW | 1: /preview open to anyone (e.g. to show colleagues); otherwise only a logged-in admin may preview (preview participants are never counted or exported) |
| TARGET_PER_CONDITION | MACO_TARGET_PER_CONDITION | completed participants wanted per condition: one number for all, or (TOML) a table `{maco = 40, none = 30}`; 0: no target |
| ADMIN_REFRESH_S | MACO_ADMIN_REFRESH_S | seconds between the dashboard's refreshes of its live figures |
| COMPLETION_CODE | MACO_COMPLETION_CODE | Prolific completion code shown/redirected to at the end |
| COMPLETION_URL | MACO_COMPLETION_URL | redirect target, `{code}` replaced by the code |
| REVIEW_CODE | MACO_REVIEW_CODE | Prolific code for a completed session that tripped a speed or automation rule (study_server/speed.py); create it on Prolific with the action "manually review"; must differ from COMPLETION_CODE |
| MIN_RT_MS | MACO_MIN_RT_MS | an answer whose browser `rt_ms` is below this is refused (nothing stored; the trial stays on screen) |
| MIN_ANSWER_MS | MACO_MIN_ANSWER_MS | a completed session whose median server-measured time per main or catch answer is below this gets REVIEW_CODE |
| MIN_SESSION_S | MACO_MIN_SESSION_S | a completed session shorter than this (server clock, /start to completion) gets REVIEW_CODE |
| MAX_CLOCK_GAP_MS | MACO_MAX_CLOCK_GAP_MS | a completed session whose median (server time - `rt_ms`) per answer is above this gets REVIEW_CODE |
| PROLIFIC_PID_PATTERN | MACO_PROLIFIC_PID_PATTERN | regular expression a whole participant id must match (Prolific's: 24 lower-case hex digits); another recruiter's format here |
| NOCONSENT_CODE | MACO_NOCONSENT_CODE | Prolific code for consent declined (a "request return" code, e.g. NOCONSENT); empty: the page only asks to return the study |
| NO_DEVICE_CODE | MACO_NO_DEVICE_CODE | Prolific code for "no suitable device" (no computer, window too small); empty: only the request to return |
| INTER_TRIAL_MS | MACO_INTER_TRIAL_MS | blank screen with a fixation cross between two trials, ms |
| BREAK_EVERY | MACO_BREAK_EVERY | a break page after every N main trials (0: none) |
| ADMIN_PASSWORD_HASH | MACO_ADMIN_PASSWORD_HASH | argon2 hash; otherwise the one `maco-study admin set-password` stored |
| PARTICIPANT_TIMEOUT_MIN | MACO_PARTICIPANT_TIMEOUT_MIN | an unfinished participant silent this long is timed out and frees the slot (match Prolific's maximum time) |
| ADMIN_SESSION_MIN | MACO_ADMIN_SESSION_MIN | admin idle time-out |
| ADMIN_SESSION_MAX_H | MACO_ADMIN_SESSION_MAX_H | admin session lifetime from its login, however active (a logout ends every admin session) |
| MIN_WINDOW_WIDTH / MIN_WINDOW_HEIGHT | MACO_MIN_WINDOW_WIDTH / _HEIGHT | the smallest browser window, checked on the screen check and on every answer (an answer from a smaller one is refused); defaults: the window exclusion rule's (study_protocol/exclusions.py) |
| COOKIE_SECURE | MACO_COOKIE_SECURE | 1: cookies only over HTTPS (set it in production) |
| SEND_IMAGES | MACO_SEND_IMAGES | how GET /img sends the base and query images once it has checked the participant and recorded the image as sent: `app` (default: the app sends the bytes, with an ETag per opaque id and conditional requests), `x-accel-redirect` (nginx sends the file: an `internal` location at /_maco_sent/, docs/deploy/nginx.conf) or `x-sendfile` (Apache's mod_xsendfile, lighttpd: the file's absolute path) |
| SENT_IMAGES_DIR | MACO_SENT_IMAGES_DIR | with `x-accel-redirect` or `x-sendfile`: the folder the server writes those files to (query images re-encoded, study_server/images.py) and the web server reads them from; required then |
| PROXIES | MACO_PROXIES | number of reverse proxies in front (trust their X-Forwarded-* headers, e.g. for login throttling and the per-address rate limit) |
| RATE_LIMIT_PARTICIPANT | MACO_RATE_LIMIT_PARTICIPANT | per participant (browser session), the JSON API and /study together; see study_server/limits.py |
| RATE_LIMIT_IMAGES | MACO_RATE_LIMIT_IMAGES | per participant, GET /img/... |
| RATE_LIMIT_START | MACO_RATE_LIMIT_START | per client address, /start and /preview (creating or resuming a participant) |
| RATE_LIMIT_ADMIN_LOGIN | MACO_RATE_LIMIT_ADMIN_LOGIN | per client address, POST /admin/login (on top of ADMIN_MAX_FAILED_LOGINS) |
| RATE_LIMIT_STORAGE_URI | MACO_RATE_LIMIT_STORAGE_URI | where the counters live: `memory://` (default) counts per worker process; `redis://host:6379` shares them between workers and machines |
| RATE_LIMIT_ENABLED | MACO_RATE_LIMIT_ENABLED | 0 turns every rate limit off |
| PROLIFIC_STUDY_NAME | MACO_PROLIFIC_STUDY_NAME | `maco-study prolific create`: the study's public title on Prolific |
| PROLIFIC_DESCRIPTION | MACO_PROLIFIC_DESCRIPTION | the study's public description on Prolific (`{min_window}` becomes MIN_WINDOW_WIDTHxMIN_WINDOW_HEIGHT) |
| PROLIFIC_HOURLY_RATE | MACO_PROLIFIC_HOURLY_RATE | pay per hour in the Prolific account's currency, in cents (pence); the reward is this times the estimated time |
| PROLIFIC_AUTO_APPROVE | MACO_PROLIFIC_AUTO_APPROVE | 1: Prolific approves the completion code on entry; 0: `maco-study prolific reconcile` approves it once the server's record confirms it |
"""
from __future__ import annotations

import os
import re
import tomllib
from typing import Any

from study_protocol.exclusions import ExclusionRules

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": "sqlite:///study.db",
    "BUNDLE_DIR": None,
    "SECRET_KEY": None,
    "COMPLETION_CODE": "CHANGE-ME",
    "COMPLETION_URL": "https://app.prolific.com/submissions/complete?cc={code}",
    "REVIEW_CODE": "CHANGE-ME-REVIEW",
    # speed floors (study_server/speed.py says why each default is where it is)
    "MIN_RT_MS": 200,
    "MIN_ANSWER_MS": 1000,
    "MIN_SESSION_S": 60,
    "MAX_CLOCK_GAP_MS": 3000,
    "PROLIFIC_PID_PATTERN": "[0-9a-f]{24}",
    "NOCONSENT_CODE": "",
    "NO_DEVICE_CODE": "",
    "INTER_TRIAL_MS": 500,
    "BREAK_EVERY": 40,
    "ADMIN_PASSWORD_HASH": None,
    "PARTICIPANT_TIMEOUT_MIN": 90,
    "ADMIN_SESSION_MIN": 30,
    "ADMIN_SESSION_MAX_H": 12,  # an admin session ends this long after its login, active or not
    "ADMIN_MAX_FAILED_LOGINS": 5,  # per client address within ADMIN_THROTTLE_MIN
    "ADMIN_THROTTLE_MIN": 15,
    "MIN_WINDOW_WIDTH": ExclusionRules.min_window_width,
    "MIN_WINDOW_HEIGHT": ExclusionRules.min_window_height,
    "COOKIE_SECURE": 0,
    "PROXIES": 0,
    "SEND_IMAGES": "app",
    "SENT_IMAGES_DIR": "",
    "MAX_CONTENT_LENGTH": 16 * 1024,  # participant bodies are tiny; refuse anything bigger
    "PREVIEW_MODE": 0,
    "PUBLIC_PREVIEW": 0,
    "TARGET_PER_CONDITION": 0,
    "ADMIN_REFRESH_S": 15,
    # limits strings of the `limits` library ("N per minute", several joined by ";"); the reasoning
    # behind each default (a real participant's fastest pace) is in study_server/limits.py
    "RATE_LIMIT_PARTICIPANT": "20 per second;300 per minute",
    "RATE_LIMIT_IMAGES": "60 per second;1500 per minute",
    "RATE_LIMIT_START": "60 per minute;600 per hour",
    "RATE_LIMIT_ADMIN_LOGIN": "10 per minute",
    "RATE_LIMIT_STORAGE_URI": "memory://",
    "RATE_LIMIT_ENABLED": 1,
    # maco-study prolific (study_server/prolific/, docs/prolific.md)
    "PROLIFIC_STUDY_NAME": "Which picture would a computer vision model prefer?",
    "PROLIFIC_DESCRIPTION": (
        "You will see pictures that explain what an image-recognition model responds to, then choose which of "
        "two versions of a photo the model prefers, and say how sure you are. You need a computer (no phone or "
        "tablet) and a browser window of at least {min_window} pixels. There is a short practice with feedback first."),
    "PROLIFIC_HOURLY_RATE": 1200,  # cents per hour: above Prolific's recommended minimum in GBP and USD
    "PROLIFIC_AUTO_APPROVE": 0,
}
_INT_KEYS = {k for k, v in DEFAULTS.items() if isinstance(v, int)}


class ConfigError(RuntimeError):
    """A configuration the server must not start with; the message is one line saying how to fix it."""


SECRET_KEY_MISSING = ("no secret key configured: set MACO_SECRET_KEY to a long random value "
                      "(python -c 'import secrets; print(secrets.token_hex(32))'), "
                      "or MACO_PREVIEW_MODE=1 for a trial run without real participants")


def require_secret_key(config: dict[str, Any]) -> None:
    """Outside preview mode and tests the signing key must come from the configuration: a key
    generated and kept in the database would let anyone holding a backup forge sessions."""
    if not config["SECRET_KEY"] and not (config["PREVIEW_MODE"] or config.get("TESTING")):
        raise ConfigError(SECRET_KEY_MISSING)


def check_codes(config: dict[str, Any]) -> None:
    """The review code must tell a flagged session from a clean one on Prolific."""
    if config["REVIEW_CODE"] == config["COMPLETION_CODE"]:
        raise ConfigError("REVIEW_CODE must differ from COMPLETION_CODE (a flagged session would look clean "
                          "on Prolific): create a second completion code with the action 'manually review'")


SEND_IMAGES_MODES = ("app", "x-accel-redirect", "x-sendfile")


def check_send_images(config: dict[str, Any]) -> None:
    """A web server can only send the images from a folder it was told about."""
    if config["SEND_IMAGES"] not in SEND_IMAGES_MODES:
        raise ConfigError(f"SEND_IMAGES must be one of {', '.join(SEND_IMAGES_MODES)}, not {config['SEND_IMAGES']!r}")
    if config["SEND_IMAGES"] != "app" and not config["SENT_IMAGES_DIR"]:
        raise ConfigError(f"SEND_IMAGES={config['SEND_IMAGES']} needs SENT_IMAGES_DIR: the folder the server "
                          "writes the images to and the web server sends them from (docs/deploy/nginx.conf)")


def pid_pattern(config: dict[str, Any]) -> re.Pattern[str]:
    try:
        return re.compile(config["PROLIFIC_PID_PATTERN"])
    except re.error as exc:
        raise ConfigError(f"PROLIFIC_PID_PATTERN is not a regular expression ({exc}): "
                          f"{config['PROLIFIC_PID_PATTERN']!r}") from None


def condition_targets(value: int | dict[str, int], conditions: list[str]) -> dict[str, int]:
    """TARGET_PER_CONDITION as {condition: completed participants wanted} (0: no target)."""
    per_condition = value if isinstance(value, dict) else dict.fromkeys(conditions, value)
    unknown = sorted(set(per_condition) - set(conditions))
    if unknown:
        raise ConfigError(f"TARGET_PER_CONDITION names {unknown[0]!r}, not a condition of the bundle "
                          f"({', '.join(conditions)})")
    for condition, target in per_condition.items():
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ConfigError(f"TARGET_PER_CONDITION for {condition!r} must be a whole number >= 0, not {target!r}")
    return {c: per_condition.get(c, 0) for c in conditions}


def load_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    config = dict(DEFAULTS)
    path = os.environ.get("MACO_CONFIG")
    if path:
        with open(path, "rb") as f:
            config.update({k.upper(): v for k, v in tomllib.load(f).items()})
    for key in DEFAULTS:
        value = os.environ.get(f"MACO_{key}")
        if value is not None and key in _INT_KEYS:
            if not value.strip().isdigit():
                raise ConfigError(f"MACO_{key} must be a whole number, not {value!r}")
            config[key] = int(value)
        elif value is not None:
            config[key] = value
    config.update(overrides or {})
    unknown = sorted(set(config) - set(DEFAULTS) - {"TESTING"})
    if unknown:
        raise ValueError(f"unknown configuration key {unknown[0]}")
    return config
