"""A browser's HTTP at a tenth of requests' CPU cost: a transport for the load benchmark.

The load benchmark runs its simulated participants on the same cores as the server, so the
client's own CPU time shows up in every latency it measures and takes cores from the server.
A `requests` call costs about 1.5 ms of client CPU here, `http.client` about 0.17 ms (most of it
parsing the headers with the email package); this transport writes the request and reads the
reply on one keep-alive socket itself, about 0.05 ms (benchmarks/RESULTS.md, issue 28), for the
same requests, headers that matter and cookies as the server set them. It reads what a study
server and nginx send: a Content-Length body, a chunked one, or one up to the connection's close.
Standard library only.
"""
from __future__ import annotations

import json as jsonlib
import select
import socket
from typing import Any
from urllib.parse import urlsplit

from .transports import TransportError

REDIRECTS = (301, 302, 303)  # answered with a GET, as browsers do (the study only sends 302)
NO_BODY = (204, 304)  # and every 1xx, and a reply to HEAD
READ_SIZE = 65536


class Headers(dict):
    """A reply's headers by lower-case name (the last one of a repeated name)."""

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)


class LightResponse:
    def __init__(self, status: int, body: bytes, headers: Headers):
        self.status_code = status
        self.content = body
        self.headers = headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class _Closed(Exception):
    """The server closed the connection before the reply was whole."""


class LightTransport:
    """One keep-alive connection to one server and the cookies it set (name -> value)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.cookies: dict[str, str] = {}
        self._sock: socket.socket | None = None
        self._netloc: str | None = None
        self._buffer = b""

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

    def _connect(self, netloc: str, host: str, port: int, timeout: float) -> socket.socket:
        sock = self._sock
        # a kept-alive connection the server has closed meanwhile reads as ready (EOF): reconnect,
        # as urllib3 does before reusing a pooled connection
        if sock is not None and (self._netloc != netloc or select.select([sock], [], [], 0)[0]):
            self._close()
            sock = None
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a request is one write
            self._sock, self._netloc, self._buffer = sock, netloc, b""
        sock.settimeout(timeout)
        return sock

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer = None, b""

    def _send(self, method: str, path: str, json: Any, timeout: float) -> LightResponse:
        parts = urlsplit(self.base_url + path)
        lines = [f"{method} {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1", f"Host: {parts.netloc}",
                 "Accept-Encoding: identity", "User-Agent: maco-study load benchmark"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        body = b""
        if json is not None:
            body = jsonlib.dumps(json).encode()
            lines.append("Content-Type: application/json")
        if json is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        try:
            sock = self._connect(parts.netloc, parts.hostname, parts.port or 80, timeout)
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            status, headers, content = self._read_reply(sock, method)
        except (OSError, ValueError, _Closed) as exc:
            self._close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if headers.get("Connection", "").lower() == "close":
            self._close()
        return LightResponse(status, content, headers)

    def _read_reply(self, sock: socket.socket, method: str) -> tuple[int, Headers, bytes]:
        head = self._read_until(sock, b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = Headers()
        for line in header_lines:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                self._store_cookie(value)
            headers[name] = value
        if method == "HEAD" or status in NO_BODY or status < 200:
            return status, headers, b""
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            return status, headers, self._read_chunked(sock)
        if "content-length" in headers:
            return status, headers, self._read_exactly(sock, int(headers["content-length"]))
        headers["connection"] = "close"  # the body ends with the connection
        return status, headers, self._read_to_close(sock)

    def _read_until(self, sock: socket.socket, marker: bytes) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            self._fill(sock)
        data, self._buffer = self._buffer[:end], self._buffer[end + len(marker):]
        return data

    def _read_exactly(self, sock: socket.socket, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill(sock, size - len(self._buffer))
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read_chunked(self, sock: socket.socket) -> bytes:
        chunks = []
        while size := int(self._read_until(sock, b"\r\n").split(b";")[0], 16):
            chunks.append(self._read_exactly(sock, size))
            self._read_exactly(sock, 2)  # the CRLF after each chunk
        while self._read_until(sock, b"\r\n"):  # trailers, up to the empty line
            pass
        return b"".join(chunks)

    def _read_to_close(self, sock: socket.socket) -> bytes:
        while chunk := sock.recv(READ_SIZE):
            self._buffer += chunk
        data, self._buffer = self._buffer, b""
        return data

    def _fill(self, sock: socket.socket, wanted: int = READ_SIZE) -> None:
        chunk = sock.recv(max(READ_SIZE, wanted))
        if not chunk:
            raise _Closed("the server closed the connection")
        self._buffer += chunk

    def _store_cookie(self, header: str) -> None:
        name_value, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = name_value.partition("=")
        expired = any(a.lower() in ("max-age=0",) or a.lower().startswith("expires=thu, 01 jan 1970")
                      for a in attributes)
        if expired:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value
