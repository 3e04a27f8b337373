"""How a StudyClient's requests reach the server: three interchangeable transports.

A transport sends one request to the server it was made for and returns the reply, without
retrying (the client does that) and without following redirects unless asked. A reply has
``status_code``, ``headers.get(name)``, ``text`` and ``content`` (bytes); a failure to get one
(refused or dropped connection, time-out) raises ``TransportError``.

- ``RequestsTransport``: the requests library (imported when one is made).
- ``LightTransport`` (light_http.py): its own HTTP/1.1 with keep-alive, a tenth of requests' CPU.
- ``FlaskTransport``: Flask's test client on an app in this process (tests); never imports flask.
"""
from __future__ import annotations

from typing import Any, Protocol


class TransportError(Exception):
    """No reply came back (connection refused or dropped, time-out)."""


class Reply(Protocol):
    status_code: int
    headers: Any  # a mapping with .get(name)
    text: str
    content: bytes


class Transport(Protocol):
    base_url: str

    def request(self, method: str, path: str, json: Any = None, follow_redirects: bool = False,
                timeout: float = 30) -> Reply: ...


class RequestsTransport:
    """requests.Session; `cookies` shares another transport's cookie jar (a second tab)."""

    def __init__(self, base_url: str, cookies: Any = None, user_agent: str | None = None):
        import requests

        self._errors = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if cookies is not None:
            self.session.cookies = cookies
        if user_agent:
            self.session.headers["User-Agent"] = user_agent

    def request(self, method: str, path: str, json: Any = None, follow_redirects: bool = False,
                timeout: float = 30) -> Reply:
        try:
            return self.session.request(method, self.base_url + path, json=json, timeout=timeout,
                                        allow_redirects=follow_redirects)
        except self._errors as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc


class FlaskReply:
    """A Flask test response read as a Reply; every other attribute (get_json, ...) is the response's."""

    def __init__(self, response: Any):
        self.raw = response

    @property
    def content(self) -> bytes:
        return self.raw.data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class FlaskTransport:
    """Flask's test client on `app` (in this process, one cookie jar)."""

    base_url = ""

    def __init__(self, app: Any):
        self.client = app.test_client()

    def request(self, method: str, path: str, json: Any = None, follow_redirects: bool = False,
                timeout: float = 30) -> FlaskReply:
        return FlaskReply(self.client.open(path, method=method, json=json, follow_redirects=follow_redirects))
