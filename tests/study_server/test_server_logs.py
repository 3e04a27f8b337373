"""Logs a request cannot forge: a decoded newline or an ESC in a path never starts a log line or
reaches the log raw (study_server/logs.py), in Granian's logs and the application's log."""
from __future__ import annotations

import http.client
import io
import logging.config
from pathlib import Path
from urllib.parse import urlsplit

from flask.logging import default_handler

from study_server.client import ServerProcess
from study_server.logs import CONTINUATION, EscapingFormatter, escape_control

from .conftest import wait_for_log

FORGED = '127.0.0.1 [01/Jan/2026:00:00:00 +0000] "GET /admin/ HTTP/1.1" 200 5 1ms'


def test_escape_control_writes_known_escapes() -> None:
    assert escape_control("a\nb\r\tc\x1b[31md\x7f\x85\u2028é😀") == "a\\nb\\r\\tc\\x1b[31md\\x7f\\x85\\u2028é😀"


def test_access_log_has_one_line_per_request(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with ServerProcess(bundle, f"sqlite:///{tmp_path / 'study.db'}", log=log, access_log=True, timeout_s=60,
                       env={"MACO_SECRET_KEY": "logs"}) as server:
        address = urlsplit(server.url)
        for path in ("/x%0a" + FORGED.replace(" ", "%20").replace('"', "%22"), "/y%1b[31mred%0dz"):
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
            connection.request("GET", path)
            assert connection.getresponse().status == 404
            connection.close()
        wait_for_log(log, "GET /y")
    text = log.read_bytes().decode("utf-8")
    lines = text.splitlines()
    assert "\x1b" not in text and "\r" not in text
    assert not any(line.startswith(FORGED[:25]) for line in lines)  # no forged entry
    forged = [line for line in lines if "GET /x" in line]
    assert len(forged) == 1 and "/x\\n127.0.0.1 [01/Jan/2026" in forged[0] and forged[0].endswith("ms")
    red = [line for line in lines if "GET /y" in line]
    assert len(red) == 1 and "/y\\x1b[31mred\\rz" in red[0]


def test_application_log_keeps_a_record_on_its_lines(app, monkeypatch) -> None:  # noqa: ANN001
    # as in production, where nothing else handles the app's logger: Flask's default handler
    # (pytest's own handler on the root logger makes Flask leave it out here)
    stream = io.StringIO()
    monkeypatch.setattr(default_handler, "stream", stream)
    monkeypatch.setattr(app.logger, "handlers", [default_handler])
    monkeypatch.setattr(app.logger, "propagate", False)
    path = "/x\n" + FORGED + "\x1b[2J"
    app.logger.error("Exception on %s [%s]", path, "GET")  # what Flask logs for an unhandled error
    try:
        raise ValueError(f"bad path {path}")
    except ValueError:
        app.logger.exception("Exception on %s [%s]", path, "GET")
    lines = stream.getvalue().splitlines()
    assert "\x1b" not in "".join(lines)
    assert lines[0].endswith("Exception on /x\\n" + FORGED + "\\x1b[2J [GET]")
    # the second record's message (its time stamp may be a millisecond later), then its traceback
    assert lines[1].split("] ", 1)[1] == lines[0].split("] ", 1)[1]
    assert lines[2] == CONTINUATION + "Traceback (most recent call last):"
    assert all(line.startswith(CONTINUATION) for line in lines[2:])  # nothing starts a line of its own
    # a traceback keeps its lines (the exception's text included), each behind the continuation mark
    assert lines[-2:] == [CONTINUATION + "ValueError: bad path /x", CONTINUATION + FORGED + "\\x1b[2J"]


def test_granian_logs_escape_their_lines() -> None:
    """Granian's own log (an invalid request, a worker's error) and its access log, configured as
    `maco-study serve` configures them."""
    from study_server.logs import granian_log_config

    logging.config.dictConfig(granian_log_config())
    for name in ("_granian", "granian.access"):
        handler = logging.getLogger(name).handlers[0]
        assert isinstance(handler.formatter, EscapingFormatter)
        stream = io.StringIO()
        handler.setStream(stream)
        logging.getLogger(name).error("Invalid request from %s: %s", "127.0.0.1", "GET /\n" + FORGED)
        assert stream.getvalue().count("\n") == 1 and "GET /\\n127.0.0.1" in stream.getvalue()
