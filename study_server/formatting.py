"""How the pages write numbers, durations, sizes and times: Jinja filters, one definition each.

Every template formats through these ("361 ms", "48.2 s", "1366×768", "2026-05-01 14:03:27"),
so a raw float, a None or a microsecond never reaches a page. MISSING stands for a value not
recorded (yet).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from flask import Flask

from .models import as_utc

MISSING = "–"


def duration(ms: float | None) -> str:
    """A reaction time or a session length: "361 ms" below 10 s, "48.2 s" below 10 min, else "12 min 05 s"."""
    if ms is None:
        return MISSING
    if ms < 10_000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 600:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def timestamp(value: datetime | None) -> str:
    """UTC to the second (the pages say UTC in their headings)."""
    value = as_utc(value)
    return MISSING if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def clock(value: datetime | None) -> str:
    """UTC time of day to the second, for today's events (live progress)."""
    value = as_utc(value)
    return MISSING if value is None else value.strftime("%H:%M:%S")


def window_size(row: Any) -> str:
    """A participant's or a trial's browser window, "1366×768"."""
    width, height = row.window_width, row.window_height
    return MISSING if width is None or height is None else f"{width}×{height}"


def percent(fraction: float | None) -> str:
    return MISSING if fraction is None else f"{fraction * 100:.0f}%"


def number(value: float | None, digits: int = 2) -> str:
    """An activation or a ratio with a fixed number of decimals."""
    return MISSING if value is None else f"{value:.{digits}f}"


def count(value: float | None) -> str:
    """A count, or an average of counts: "4", "3.3"."""
    return MISSING if value is None else f"{value:.1f}".removesuffix(".0")


def blank(value: Any) -> Any:
    """A recorded value as it is, MISSING when it was not recorded."""
    return MISSING if value is None or value == "" else value


FILTERS: dict[str, Callable[..., str]] = {
    "duration": duration, "timestamp": timestamp, "clock": clock, "window_size": window_size,
    "percent": percent, "number": number, "count": count, "blank": blank,
}


def register_filters(app: Flask) -> None:
    app.jinja_env.filters.update(FILTERS)
