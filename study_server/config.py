"""Server configuration: defaults, then a TOML file (MACO_CONFIG), then MACO_* variables.

| key | env | meaning |
|---|---|---|
| DATABASE_URL | MACO_DATABASE_URL | SQLAlchemy URL; `sqlite:///study.db` (WAL) or `postgresql+psycopg://...` |
| BUNDLE_DIR | MACO_BUNDLE_DIR | the stimulus bundle served (its study must be imported) |
| SECRET_KEY | MACO_SECRET_KEY | cookie signing key; when unset one is generated once and kept in the DB |
| COMPLETION_CODE | MACO_COMPLETION_CODE | Prolific completion code shown/redirected to at the end |
| COMPLETION_URL | MACO_COMPLETION_URL | redirect target, `{code}` replaced by the code |
| ADMIN_PASSWORD_HASH | MACO_ADMIN_PASSWORD_HASH | argon2 hash; otherwise the one `maco-study admin set-password` stored |
| PARTICIPANT_TIMEOUT_MIN | MACO_PARTICIPANT_TIMEOUT_MIN | an unfinished participant silent this long is timed out and frees the slot (match Prolific's maximum time) |
| ADMIN_SESSION_MIN | MACO_ADMIN_SESSION_MIN | admin idle time-out |
| MIN_WINDOW_WIDTH / MIN_WINDOW_HEIGHT | MACO_MIN_WINDOW_WIDTH / _HEIGHT | device check |
| COOKIE_SECURE | MACO_COOKIE_SECURE | 1: cookies only over HTTPS (set it in production) |
| PROXIES | MACO_PROXIES | number of reverse proxies in front (trust their X-Forwarded-* headers, e.g. for login throttling) |
"""
from __future__ import annotations

import os
import tomllib
from typing import Any

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": "sqlite:///study.db",
    "BUNDLE_DIR": None,
    "SECRET_KEY": None,
    "COMPLETION_CODE": "CHANGE-ME",
    "COMPLETION_URL": "https://app.prolific.com/submissions/complete?cc={code}",
    "ADMIN_PASSWORD_HASH": None,
    "PARTICIPANT_TIMEOUT_MIN": 90,
    "ADMIN_SESSION_MIN": 30,
    "ADMIN_MAX_FAILED_LOGINS": 5,  # per client address within ADMIN_THROTTLE_MIN
    "ADMIN_THROTTLE_MIN": 15,
    "MIN_WINDOW_WIDTH": 940,
    "MIN_WINDOW_HEIGHT": 600,
    "COOKIE_SECURE": 0,
    "PROXIES": 0,
    "MAX_CONTENT_LENGTH": 16 * 1024,  # participant bodies are tiny; refuse anything bigger
}
_INT_KEYS = {k for k, v in DEFAULTS.items() if isinstance(v, int)}


def load_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    config = dict(DEFAULTS)
    path = os.environ.get("MACO_CONFIG")
    if path:
        with open(path, "rb") as f:
            config.update({k.upper(): v for k, v in tomllib.load(f).items()})
    for key in DEFAULTS:
        value = os.environ.get(f"MACO_{key}")
        if value is not None:
            config[key] = int(value) if key in _INT_KEYS else value
    config.update(overrides or {})
    unknown = sorted(set(config) - set(DEFAULTS) - {"TESTING"})
    if unknown:
        raise ValueError(f"unknown configuration key {unknown[0]}")
    return config
