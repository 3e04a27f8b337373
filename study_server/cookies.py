"""Flask's signed-cookie session, each cookie value verified once per process.

A participant's browser sends the same session cookie with every image, trial and answer until
GET /api/trial changes it (the trial sent, api.py), and Flask checks its HMAC signature and decodes
it on each request: 0.2-0.5 ms of a 1-3 ms request (benchmarks/RESULTS.md, issue 28). Here the
signature is checked, and the value decoded, once per distinct cookie value (an LRU of
`VERIFIED_COOKIES`); a tampered cookie is refused as before, and the lifetime
(PERMANENT_SESSION_LIFETIME from the signing time) is checked on every request. Only a session of
plain values (numbers, text, true/false) is kept: a request gets a fresh dict of them, so nothing it
changes reaches another request. Saving is Flask's own. GET /img reads the same values before Flask
(`cookie_values`, opaque_images.py).
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer

VERIFIED_COOKIES = 16384  # distinct cookie values per process: a few per active participant
_PLAIN = (bool, int, float, str, type(None))


class VerifiedOnceSessionInterface(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._serializer: URLSafeTimedSerializer | None = None
        self._verified = lru_cache(maxsize=VERIFIED_COOKIES)(self._verify)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if self._serializer is None:  # one per app: the key is set before the first request
            self._serializer = super().get_signing_serializer(app)
        return self._serializer

    def _verify(self, value: str) -> tuple[dict[str, Any], float] | None:
        """The cookie's data and signing time (epoch s), or None for a bad signature or a session
        that is not plain values (those are decoded on every request, as Flask does)."""
        try:
            data, signed_at = self._serializer.loads(value, return_timestamp=True)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not all(isinstance(v, _PLAIN) for v in data.values()):
            return None
        return data, signed_at.timestamp()

    def cookie_values(self, app: Flask, value: str | None) -> dict[str, Any]:
        """The session in cookie `value` (read-only: for a plain session, the cached dict itself);
        empty for no cookie, a bad signature or an expired one."""
        if not value or self.get_signing_serializer(app) is None:
            return {}
        verified = self._verified(value)
        if verified is None:  # a bad signature, or not plain values: decoded here, as Flask does
            try:
                data = self._serializer.loads(value, max_age=app.permanent_session_lifetime.total_seconds())
            except BadSignature:
                return {}
            return data if isinstance(data, dict) else {}
        data, signed_at = verified
        age = time.time() - signed_at
        if not 0 <= age <= app.permanent_session_lifetime.total_seconds():
            return {}  # expired, as itsdangerous's max_age would say
        return data

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_signing_serializer(app) is None:
            return None
        # a copy: the cached dict is never handed out
        return self.session_class(self.cookie_values(app, request.cookies.get(self.get_cookie_name(app))))
