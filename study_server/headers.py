"""The security headers of every reply the app makes, added where the reply starts (WSGI).

Every script and style is a served file (the templates have none inline), so the policy allows only
this origin; no page may be framed (clickjacking of the answer buttons). A reply that sets one of
these headers itself keeps its own value. Added to the header list as the reply starts, not by an
after_request hook on Flask's response object (four `Headers.setdefault` calls there cost 4 % of a
trial request's CPU, benchmarks/RESULTS.md, issue 28: the answer path off the ORM), and so also on
the replies answered before Flask (opaque_images.py).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                   "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                   "frame-ancestors 'none'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)


class SecurityHeaders:
    """WSGI middleware: SECURITY_HEADERS on every reply of `app` that does not set them itself."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            present = {name.lower() for name, _ in headers}
            headers.extend(header for header in SECURITY_HEADERS if header[0].lower() not in present)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
