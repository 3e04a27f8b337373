"""The participant-protocol client: study.js's retry rule (known waits), and the same participant
through all three transports against one app."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study_server.client import (STUDY_JS, FlaskTransport, LightTransport, ProtocolError, RequestsTransport,
                                 RetryRule, ServerProcess, ServerStartError, StudyClient, TransportError,
                                 answer_body, backoff_s, retry_after_s, start_path)
from study_server.models import Participant, Trial

from .conftest import prolific_pid, wait_for_log


def test_backoff_is_study_js() -> None:
    # Math.min(8000, 250 * 2 ** attempt) ms
    assert [backoff_s(n) for n in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    # a 429 waits the larger of the back-off and Retry-After (Number(h) || 1, at most 60)
    assert backoff_s(0, 429, "3") == 3.0
    assert backoff_s(5, 429, "3") == 8.0
    assert backoff_s(0, 429, None) == 1.0 and backoff_s(3, 429, None) == 2.0
    assert backoff_s(0, 503, "30") == 0.25  # Retry-After only counts on a 429, as in study.js
    assert [retry_after_s(h) for h in (None, "", "0", "abc", "2.5", "600", "-4")] == [1, 1, 1, 1, 2.5, 60, -4]


class ScriptedTransport:
    """Replies from a list: an int is a status, None a dropped connection, (429, "5") a Retry-After."""

    base_url = ""

    def __init__(self, script: list[Any]):
        self.script, self.sent = list(script), 0

    def request(self, method: str, path: str, json: Any = None, follow_redirects: bool = False,
                timeout: float = 30) -> Any:
        self.sent += 1
        step = self.script.pop(0)
        if step is None:
            raise TransportError("connection reset")
        status, retry_after = step if isinstance(step, tuple) else (step, None)
        headers = {"Retry-After": retry_after} if retry_after else {}
        return SimpleNamespace(status_code=status, headers=headers, text='{"ok": true}', content=b"")


def scripted(script: list[Any], rule: RetryRule = STUDY_JS) -> tuple[StudyClient, list[float]]:
    waits: list[float] = []
    return StudyClient(ScriptedTransport(script), rule, sleep=waits.append), waits


def test_retries_network_errors_5xx_and_429_but_returns_4xx() -> None:
    client, waits = scripted([None, 502, (429, "3"), 503, 200])
    assert client.request("GET", "/api/trial").status_code == 200
    assert waits == [0.25, 0.5, 3.0, 2.0]
    assert client.retries == {"connection": 1, "HTTP 502": 1, "HTTP 429": 1, "HTTP 503": 1}
    client, waits = scripted([409, 200])
    assert client.request("POST", "/api/consent", json={}).status_code == 409 and waits == []


def test_bounded_rules_give_up() -> None:
    client, waits = scripted([503, 503, 503], RetryRule(tries=3))
    assert client.request("GET", "/x").status_code == 503 and len(waits) == 2  # the last reply is returned
    with pytest.raises(ProtocolError, match=r"GET /x: HTTP 503"):
        scripted([503, 503], RetryRule(tries=2))[0].call("GET", "/x")
    with pytest.raises(ProtocolError, match="connection .* after 2 tries"):
        scripted([None, None], RetryRule(tries=2))[0].request("GET", "/x")
    client, waits = scripted([500], RetryRule(tries=3, server_errors=False))  # a load test counts it
    assert client.request("GET", "/x").status_code == 500 and waits == []


def test_answer_body_is_the_one_study_js_posts() -> None:
    body = answer_body(7, "left", 3, 812.5, window=(1440, 900))
    assert set(body) == {"answer_id", "position", "chosen_side", "confidence", "rt_ms", "window_width",
                         "window_height", "device_pixel_ratio", "blur_count", "fullscreen_exit_count", "webdriver",
                         "input"}
    assert (body["window_width"], body["window_height"], body["rt_ms"]) == (1440, 900, 812.5)
    assert (body["webdriver"], body["input"]) == (False, "key")
    assert answer_body(7, "left", 3, 1.0)["answer_id"] != body["answer_id"]
    assert start_path("P", "S", "X") == "/start?PROLIFIC_PID=P&STUDY_ID=S&SESSION_ID=X"


def walk(client: StudyClient, pid: str) -> int:
    """The straight path through the study; the number of answers stored."""
    assert client.start(start_path(pid, "s1", "x1")).status_code == 302
    assert client.page(client.consent()["next"]) == "device"
    assert client.page(client.device()["next"]) == "instructions"
    assert client.page(client.instructions()["next"]) == "trials"
    answered = 0
    while not (data := client.trial())["done"]:
        trial = data["trial"]
        images = client.images(trial)
        assert all(png.startswith(b"\x89PNG") for png in images.values())
        assert client.images(trial) == {}  # cached, as a browser does
        reply = client.answer(answer_body(trial["position"], "left", 2, 240.0))
        assert reply["stored"]
        answered += 1
    assert client.page(data["next"]) == "comment"
    assert client.page(client.complete("fine")["next"]) == "done"
    return answered


def test_one_participant_per_transport_completes(live_server_factory) -> None:  # noqa: ANN001
    app, url = live_server_factory()
    transports = {"flask": FlaskTransport(app), "requests": RequestsTransport(url), "light": LightTransport(url)}
    answered = {name: walk(StudyClient(transport), prolific_pid(name)) for name, transport in transports.items()}
    with Session(app.extensions["maco"].engine) as session:
        completed = session.scalar(select(func.count()).select_from(Participant)
                                   .where(Participant.status == "completed"))
        stored = session.scalar(select(func.count()).select_from(Trial).where(Trial.answer_id.is_not(None)))
    assert completed == 3 and stored == sum(answered.values()) and len(set(answered.values())) == 1


def test_launcher_says_why_the_server_did_not_start(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with pytest.raises(ServerStartError, match="exited with status [1-9]") as refused:
        ServerProcess(tmp_path / "no-bundle", f"sqlite:///{tmp_path / 'study.db'}", log=log, timeout_s=60)
    assert str(log) in str(refused.value) and "no-bundle" in str(refused.value)  # its log's last lines


def test_two_servers_on_one_machine_leave_no_shared_control_socket(bundle: Path, tmp_path: Path) -> None:
    # nothing at a path shared by every server of the user (gunicorn put its control socket there)
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "MACO_SECRET_KEY": "k" * 64}
    servers = [ServerProcess(bundle, f"sqlite:///{tmp_path / f'study{n}.db'}", env=env, log=tmp_path / f"{n}.log",
                             timeout_s=60) for n in range(2)]
    try:  # each has answered (ServerProcess waits for it) and both still run
        assert all(server.process.poll() is None for server in servers)
        assert list(runtime.iterdir()) == [] and list(home.iterdir()) == []
    finally:
        for server in servers:
            server.stop()



def test_light_transport_reads_every_framing_a_server_sends() -> None:
    """LightTransport's own HTTP/1.1 (light_http.py) against a stdlib server: Content-Length,
    chunked and read-to-close bodies, a 304 without one, cookies set and expired, a redirect
    followed, a connection the server closes after a reply or while kept alive."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    connections: list[int] = []
    dropped = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            connections.append(1)
            super().setup()

        def log_message(self, *_args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            cookie = self.headers.get("Cookie") or ""
            if self.path == "/chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n")
            elif self.path == "/to-close":  # no length: the body ends with the connection
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"until the end")
                self.close_connection = True
            elif self.path == "/not-modified":
                self.send_response(304)
                self.send_header("ETag", '"x"')
                self.end_headers()
            elif self.path == "/login":
                self.send_response(302)
                self.send_header("Location", "/echo")
                self.send_header("Set-Cookie", "session=abc; Path=/; HttpOnly")
                self.send_header("Set-Cookie", "other=1; Path=/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/logout":
                self._reply(b"bye", ("Set-Cookie", "session=; Max-Age=0; Path=/"), ("Connection", "close"))
            elif self.path == "/drop":  # a kept-alive connection the server closes while idle
                self._reply(b"dropping")
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                dropped.set()
            else:
                self._reply(f"cookies: {cookie}".encode())

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self._reply(body, ("Content-Type", self.headers.get("Content-Type", "")))

        def _reply(self, body: bytes, *headers: tuple[str, str]) -> None:
            self.send_response(200)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        http = LightTransport(f"http://127.0.0.1:{server.server_port}")
        assert http.request("GET", "/chunked").content == b"hello, world"
        assert http.request("GET", "/echo").text == "cookies: "  # the same connection after trailers
        assert len(connections) == 1
        reply = http.request("GET", "/not-modified")
        assert (reply.status_code, reply.content, reply.headers.get("etag")) == (304, b"", '"x"')
        followed = http.request("GET", "/login", follow_redirects=True)
        assert followed.text == "cookies: session=abc; other=1" and http.cookies == {"session": "abc", "other": "1"}
        assert http.request("GET", "/login").headers.get("Location") == "/echo"  # not followed unless asked
        posted = http.request("POST", "/echo", json={"a": [1, "é"]})
        assert posted.json() == {"a": [1, "é"]} and posted.headers.get("content-type") == "application/json"
        assert len(connections) == 1
        assert http.request("GET", "/logout").text == "bye" and http.cookies == {"other": "1"}
        assert http.request("GET", "/to-close").content == b"until the end"  # after Connection: close, anew
        assert http.request("GET", "/drop").text == "dropping"
        dropped.wait()  # the close has reached the client's socket: the transport sees it and reconnects
        assert http.request("GET", "/echo").text == "cookies: other=1"
        assert len(connections) == 4  # anew after /logout, /to-close and /drop
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(TransportError):
        LightTransport(f"http://127.0.0.1:{server.server_port}").request("GET", "/", timeout=2)


def test_serve_runs_granian_and_keeps_connections(bundle: Path, tmp_path: Path) -> None:
    """`serve` runs Granian (HTTP parsed in Rust, benchmarks/RESULTS.md issue 28): it says so at
    start, keeps a connection for the next request, and its access log has no query string (no
    Prolific ID in a log file)."""
    log = tmp_path / "server.log"
    server = ServerProcess(bundle, f"sqlite:///{tmp_path / 'study.db'}", threads=4, access_log=True,
                           env={"MACO_SECRET_KEY": "k" * 64}, log=log, timeout_s=60)
    try:
        transport = LightTransport(server.url)
        replies = [transport.request("GET", path) for path in ("/", "/start?PROLIFIC_PID=QUERYSTRINGSECRET")]
        assert [r.status_code for r in replies] == [200, 400]
        assert all((r.headers.get("Connection") or "keep-alive").lower() == "keep-alive" for r in replies)
        wait_for_log(log, "GET /start")
    finally:
        server.stop()
    text = log.read_text(encoding="utf-8")
    assert "Starting granian" in text and "gunicorn" not in text
    assert '"GET / HTTP/1.1" 200' in text and '"GET /start HTTP/1.1" 400' in text
    assert "QUERYSTRINGSECRET" not in text


def test_serve_reads_no_request_header_from_its_own_environment(bundle: Path, tmp_path: Path) -> None:
    """Granian copies the process environment into each request's: a variable named as a header
    (here If-None-Match with a reference's ETag) must not read as sent by a client that sent none."""
    import http.client
    from urllib.parse import urlsplit

    from stimuli.manifest import load_manifest
    from study_server.reference_files import reference_url

    image_id = load_manifest(bundle).references[0].images[0]
    server = ServerProcess(bundle, f"sqlite:///{tmp_path / 'study.db'}", threads=2, log=tmp_path / "server.log",
                           env={"MACO_SECRET_KEY": "k" * 64, "HTTP_IF_NONE_MATCH": f'"{image_id}"'}, timeout_s=60)
    address = urlsplit(server.url)
    try:
        statuses = []
        for headers in ({}, {"If-None-Match": f'"{image_id}"'}):  # a browser's first fetch, then its revalidation
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
            connection.request("GET", reference_url(image_id), headers=headers)
            reply = connection.getresponse()
            statuses.append((reply.status, len(reply.read())))
            connection.close()
    finally:
        server.stop()
    assert statuses == [(200, (bundle / "images" / f"{image_id}.png").stat().st_size), (304, 0)]


def test_the_app_hands_the_server_each_body_whole(app, walker) -> None:  # noqa: ANN001
    """Every reply's body reaches the WSGI server as one bytes object in a list (app.WholeBody):
    Granian writes a list in one call, but drains an iterator chunk by chunk under the GIL."""
    from werkzeug.test import EnvironBuilder

    alice = walker()
    alice.to_first_trial()
    cookie = f"session={alice.client.get_cookie('session').value}"
    statuses = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        statuses.append(status)

    for path in ("/", "/study", "/api/trial", "/static/study.css", "/no-such-page"):
        environ = EnvironBuilder(path=path, headers={"Cookie": cookie}).get_environ()
        body = app.wsgi_app(environ, start_response)
        assert isinstance(body, list) and len(body) == 1 and isinstance(body[0], bytes) and body[0], path
    assert [s.split()[0] for s in statuses] == ["200", "200", "200", "200", "404"]
