"""A browser's HTTP at under a third of requests' CPU cost: a transport for the load benchmark.

The load benchmark runs its simulated participants on the same cores as the server,
so the client's own CPU time shows up in every latency it measures. A `requests`
call costs about 1.5 ms of client CPU here; this keep-alive `http.client`
connection with a plain cookie jar about 0.4 ms (load_server's
client_cpu_ms_per_request), for the same requests, headers that matter and
cookies as the server set them. Standard library only.
"""
from __future__ import annotations

import http.client
import json as jsonlib
import select
from typing import Any
from urllib.parse import urlsplit

from .transports import TransportError

REDIRECTS = (301, 302, 303)  # answered with a GET, as browsers do (the study only sends 302)


class LightResponse:
    def __init__(self, status: int, body: bytes, headers: http.client.HTTPMessage):
        self.status_code = status
        self.content = body
        self.headers = headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class LightTransport:
    """One keep-alive connection to one server and the cookies it set (name -> value)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.cookies: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None
        self._netloc: str | None = None

    def _connection(self, netloc: str, timeout: float) -> http.client.HTTPConnection:
        conn = self._conn
        # a kept-alive connection the server has closed meanwhile reads as ready (EOF): reconnect,
        # as urllib3 does before reusing a pooled connection
        if conn is not None and (self._netloc != netloc or conn.sock is None
                                 or select.select([conn.sock], [], [], 0)[0]):
            conn.close()
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection(netloc, timeout=timeout)
            self._conn, self._netloc = conn, netloc
        return conn

    def request(self, method: str, path: str, json: Any = None, follow_redirects: bool = False,
                timeout: float = 30) -> LightResponse:
        response = self._send(method, path, json, timeout)
        for _ in range(10 if follow_redirects else 0):
            location = response.headers.get("Location")
            if response.status_code not in REDIRECTS or not location:
                break
            target = urlsplit(location)
            response = self._send("GET", target.path + (f"?{target.query}" if target.query else ""), None, timeout)
        return response

    def _send(self, method: str, path: str, json: Any, timeout: float) -> LightResponse:
        parts = urlsplit(self.base_url + path)
        headers = {"Accept-Encoding": "identity", "User-Agent": "maco-study load benchmark"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn = self._connection(parts.netloc, timeout)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        for header in response.headers.get_all("Set-Cookie") or []:
            self._store_cookie(header)
        if response.will_close:
            self._conn.close()
            self._conn = None
        return LightResponse(response.status, content, response.headers)

    def _store_cookie(self, header: str) -> None:
        name_value, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = name_value.partition("=")
        expired = any(a.lower() in ("max-age=0",) or a.lower().startswith("expires=thu, 01 jan 1970")
                      for a in attributes)
        if expired:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value
