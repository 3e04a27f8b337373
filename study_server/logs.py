"""Log lines that a request cannot forge: every control character escaped.

A request path is percent-decoded before it reaches a log (`/x%0a127.0.0.1 ... "GET /admin"`
would write a second, fake entry), and an ESC sequence would reach a terminal raw. The
`EscapingFormatter` writes every record's message on one line, its control characters (C0, DEL,
C1 and the Unicode line and paragraph separators) as Python escapes (`\\n`, `\\x1b`); a
traceback keeps its lines, each escaped the same way and indented behind "  | ", so no text
from a request can start a line of its own. It goes on every handler of the logs the server
writes: Flask's (app.logger), werkzeug's (the development server) and Granian's own and access
logs (`granian_log_config`, which `maco-study serve` hands to Granian).
"""
from __future__ import annotations

import logging
import re

from flask.logging import default_handler

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
CONTINUATION = "  | "


def escape_control(text: str) -> str:
    """`text` with every control character written as its escape (printable text is kept)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), m.group().encode("unicode_escape").decode()), text)


def _continuation(text: str) -> str:
    return "\n".join(CONTINUATION + escape_control(line) for line in text.split("\n"))


class EscapingFormatter(logging.Formatter):
    """A Formatter (same format string and date format) whose output only breaks lines where it
    means to: between a message and its traceback, and between the traceback's own lines."""

    @classmethod
    def like(cls, formatter: logging.Formatter | None) -> EscapingFormatter:
        """An escaping formatter with the format of `formatter` (logging's default for None)."""
        if formatter is None:
            return cls()
        return cls(formatter._fmt, formatter.datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return escape_control(super().formatMessage(record))

    def formatException(self, ei) -> str:  # noqa: ANN001, N802
        return _continuation(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _continuation(super().formatStack(stack_info))


def escape_handlers(logger: logging.Logger) -> None:
    """Give each of the logger's handlers the escaping version of its formatter."""
    for handler in logger.handlers:
        if not isinstance(handler.formatter, EscapingFormatter):
            handler.setFormatter(EscapingFormatter.like(handler.formatter))


def granian_log_config() -> dict:
    """Granian's logging configuration (its `log_dictconfig`) with escaping formatters: Granian's
    own formats, its server log and its access log, each line escaped as above."""
    from granian.log import LOGGING_CONFIG

    formatters = {name: {**formatter, "()": f"{__name__}.EscapingFormatter"}
                  for name, formatter in LOGGING_CONFIG["formatters"].items()}
    return {**LOGGING_CONFIG, "formatters": formatters}


def install() -> None:
    """Escape the application's logs: Flask's default handler, and werkzeug's (which would
    otherwise add its own unescaped handler on its first request line)."""
    default_handler.setFormatter(EscapingFormatter.like(default_handler.formatter))
    werkzeug = logging.getLogger("werkzeug")
    if not werkzeug.handlers:
        werkzeug.addHandler(logging.StreamHandler())
        if werkzeug.level == logging.NOTSET:
            werkzeug.setLevel(logging.INFO)  # what werkzeug sets for its own handler
    escape_handlers(werkzeug)
