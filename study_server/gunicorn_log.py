"""gunicorn's logger with escaped control characters (study_server/logs.py) in its error and access
logs; `maco-study serve` uses it, and a bare gunicorn takes it with
`--logger-class study_server.gunicorn_log.EscapingLogger`."""
from __future__ import annotations

from gunicorn.glogging import Logger

from .logs import escape_handlers


class EscapingLogger(Logger):
    def setup(self, cfg) -> None:  # noqa: ANN001 - gunicorn's Config
        super().setup(cfg)  # (re)creates the handlers, on start and on every configuration reload
        for log in (self.error_log, self.access_log):
            escape_handlers(log)
