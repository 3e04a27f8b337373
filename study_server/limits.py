"""Rate limits (the `limits` library's fixed windows) on the endpoints a script could hammer and a participant never does.

| what | key | default (config key) |
|---|---|---|
| the JSON API (`/api/...`) and `/study`, together | the participant of the browser session (else the client address) | 20/s and 300/min (RATE_LIMIT_PARTICIPANT) |
| `GET /img/<id>` | the participant (else the client address) | 60/s and 1500/min (RATE_LIMIT_IMAGES) |
| `/start` and `/preview`, together | the client address | 60/min and 600/h (RATE_LIMIT_START) |
| `POST /admin/login` | the client address | 10/min (RATE_LIMIT_ADMIN_LOGIN) |

Why these numbers never touch a real participant: the fastest person answers about once a second,
which is 2 API requests (`GET /api/trial`, `POST /api/answer`) and at most 12 new images (base, two
queries, nine references; the browser caches repeated ones) plus the next trial's 12 preloaded.
That is 120 API requests and 720 images a minute, with bursts of 2-3 requests and ~24 images in a
second when a page opens; reloads and study.js's retries (back-off from 250 ms) add a few. The
defaults leave at least twice that; a script looping on an endpoint hits them within seconds.
Participant creation is keyed by address because a new participant has no session yet; a shared
address (a lab, a household) still gets 60 starts a minute.

Over a limit the reply is 429 with `Retry-After`: JSON `{"error": ..., "retry_after_s": N}` under
`/api/`, where study.js waits and sends the same request again (an answer is never dropped), else
a short page. The client address is `request.remote_addr`: behind a reverse proxy set PROXIES
(the number of proxies to trust), or every participant shares the proxy's address.

Storage: `memory://` (the default) keeps the counters in each worker process, so with W server
workers a client can get up to W times a limit (requests are spread over the workers); that still
stops a flood. For exact limits across workers and machines use a shared store, e.g.
`MACO_RATE_LIMIT_STORAGE_URI=redis://localhost:6379` (`pip install redis`).

The check is one `before_request` hook: a dict lookup by endpoint, then one counter hit per limit
(the shorter window first; the first one over refuses), and nothing else per request: no
exemptions, meta limits or rate-limit headers (why: benchmarks/RESULTS.md, issue 28). `GET /img`
is answered before Flask (opaque_images.py), which counts its limit with the same rule
(`RateLimits.hit`) and the same key; the hook leaves that endpoint alone.
"""
from __future__ import annotations

import threading
import time

from dataclasses import dataclass
from typing import Callable

from flask import Flask, Response, jsonify, render_template, request, session
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .config import ConfigError

TOO_MANY = "too many requests: wait a moment, the page tries again by itself"

# endpoint -> (config key, shared scope, key): endpoints in one scope share one counter per key
LIMITED_ENDPOINTS = {
    "participant.study": ("RATE_LIMIT_PARTICIPANT", "participant", "participant"),
    "participant.image": ("RATE_LIMIT_IMAGES", "images", "participant"),
    "participant.start": ("RATE_LIMIT_START", "new-participant", "address"),
    "participant.preview": ("RATE_LIMIT_START", "new-participant", "address"),
    "admin.login": ("RATE_LIMIT_ADMIN_LOGIN", "admin-login", "address"),
}
API_BLUEPRINT = "api"  # every endpoint of it: RATE_LIMIT_PARTICIPANT, scope "participant"
# counted before Flask, by the middleware that answers them (opaque_images.py), not by `check`
COUNTED_BEFORE_FLASK = frozenset({"participant.image"})


def address_key(remote_addr: str | None) -> str:
    return f"address:{remote_addr or ''}"


def participant_key_of(participant_id: int | None, remote_addr: str | None) -> str:
    """The participant of the browser session, else the client address."""
    return address_key(remote_addr) if participant_id is None else f"participant:{participant_id}"


def client_address() -> str:
    return address_key(request.remote_addr)


def participant_key() -> str:
    return participant_key_of(session.get("participant"), request.remote_addr)


KEYS = {"participant": participant_key, "address": client_address}


class _SweepTimer:
    """Stands in for limits' expiry timer (a ``threading.Timer`` whose run sweeps every expired
    counter): ``start()`` does nothing after the first call, whichever thread makes it, and
    ``is_alive()`` says True for `interval_s` after that start, so the storage replaces and starts
    a timer at most once per interval. The library replaces a finished timer on the next hit, which
    under load was a new thread and a sweep over every participant's counters on almost every
    request (py-spy: 4 ms of a 15 ms answer in the test client, benchmarks/RESULTS.md). A counter
    past its window is still reset when next read (MemoryStorage.get), so every limit stays exact;
    the sweep only frees memory. Everything else is the timer's own."""

    def __init__(self, timer: threading.Timer, interval_s: float) -> None:
        self._timer = timer
        self._lock = threading.Lock()
        self._interval_s = interval_s
        self._started = None  # time.monotonic() of start()

    def start(self) -> None:
        with self._lock:
            if self._timer.ident is None:  # never started
                self._started = time.monotonic()
                self._timer.start()

    def is_alive(self) -> bool:
        started = self._started
        return self._timer.is_alive() or (started is not None and time.monotonic() - started < self._interval_s)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._timer, name)


class LockedMemoryStorage(MemoryStorage):
    """limits' memory storage whose expiry timer is started at most once, and at most once per
    `sweep_interval_s` (_SweepTimer). In limits 5.8 two request threads that both find the timer
    stopped each replace it, then both start the newest one, and the request gets a 500 ("threads
    can only be started once"; seen by benchmarks/fault_server.py, fixed upstream in
    alisaifee/limits#352). Only the public attribute ``timer`` is wrapped, so no private method of
    the library is replaced. `memory://` URIs get this class."""

    STORAGE_SCHEME = ["maco-memory"]
    sweep_interval_s = 1.0

    @property
    def timer(self) -> _SweepTimer:
        return self.__dict__["timer"]

    @timer.setter
    def timer(self, timer: threading.Timer) -> None:
        self.__dict__["timer"] = _SweepTimer(timer, self.sweep_interval_s)


KEY_PREFIX = "maco"


@dataclass(frozen=True)
class _Rule:
    limits: tuple[RateLimitItem, ...]  # the shortest window first
    scope: str
    key: Callable[[], str]
    methods: frozenset[str] | None  # None: every method


class RateLimits:
    """The table above, checked before each view (`check`); `storage` holds the counters."""

    def __init__(self, app: Flask) -> None:
        cfg = app.config
        storage_uri = cfg["RATE_LIMIT_STORAGE_URI"]
        if storage_uri.startswith("memory://"):
            storage_uri = "maco-" + storage_uri
        self.storage: Storage = storage_from_string(storage_uri)
        self.strategy = FixedWindowRateLimiter(self.storage)
        self.enabled = bool(cfg["RATE_LIMIT_ENABLED"])
        limited = dict(LIMITED_ENDPOINTS)
        limited.update({endpoint: ("RATE_LIMIT_PARTICIPANT", "participant", "participant")
                        for endpoint in app.view_functions if endpoint.startswith(API_BLUEPRINT + ".")})
        self.rules = {endpoint: _Rule(_parse(cfg, config_key), scope, KEYS[key],
                                      frozenset({"POST"}) if endpoint == "admin.login" else None)  # the form is free
                      for endpoint, (config_key, scope, key) in limited.items()}

    def check(self) -> Response | None:
        """None, or the 429 reply of the first limit this request goes over."""
        endpoint = request.endpoint
        rule = self.rules.get(endpoint) if self.enabled and endpoint not in COUNTED_BEFORE_FLASK else None
        if rule is None or (rule.methods is not None and request.method not in rule.methods):
            return None
        retry_after = self.hit(endpoint, rule.key())
        return None if retry_after is None else too_many(retry_after)

    def hit(self, endpoint: str, key: str) -> int | None:
        """Count a request to `endpoint` from `key`: None, or the seconds to wait (Retry-After) of
        the first limit it goes over (the longer windows after it are not counted for a refused
        request)."""
        rule = self.rules[endpoint]
        for item in rule.limits:
            if not self.strategy.hit(item, KEY_PREFIX, key, rule.scope):
                reset_at = self.strategy.get_window_stats(item, KEY_PREFIX, key, rule.scope).reset_time
                return max(1, int(reset_at - time.time()))
        return None


def _parse(cfg: dict, config_key: str) -> tuple[RateLimitItem, ...]:
    try:
        return tuple(sorted(parse_many(cfg[config_key])))
    except ValueError:
        raise ConfigError(f"{config_key} is not a list of limits such as '20 per second;300 per minute': "
                          f"{cfg[config_key]!r}") from None


def too_many(retry_after: int) -> Response:
    if request.path.startswith("/api/"):
        response = jsonify(error=TOO_MANY, retry_after_s=retry_after)
    else:
        response = Response(render_template("message.html", title="Too many requests",
                                            text=f"Please wait {retry_after} seconds, then reload the page."))
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


def init_rate_limits(app: Flask) -> RateLimits:
    """Check the limits before every view (after the blueprints are registered, and after the CSRF check)."""
    rate_limits = RateLimits(app)
    app.extensions["rate_limits"] = rate_limits
    app.before_request(rate_limits.check)
    return rate_limits
