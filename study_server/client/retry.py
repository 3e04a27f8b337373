"""study.js's retry rule for the participant's JSON requests, as data and two small functions.

study.js (``fetchJSON``) retries network errors, 5xx and 429 for ever; attempt n (from 0) then
waits ``min(8 s, 0.25 s x 2^n)``, and a 429 waits the larger of that and its Retry-After
(``Number(header) || 1`` seconds, at most 60). Every other status goes back to the page.
A program cannot wait for ever, so a ``RetryRule`` may bound the tries or the time; with
neither bound it is study.js's rule exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 8.0
RETRY_AFTER_CAP_S = 60.0


@dataclass(frozen=True)
class RetryRule:
    """When to send a request again.

    ``tries``: attempts in all (None: no bound); ``give_up_s``: no new attempt after this many
    seconds (None: no bound); ``server_errors``: retry 5xx and 429 too, as study.js does (a
    load test that counts them as errors turns it off; network errors are always retried)."""

    tries: int | None = None
    give_up_s: float | None = None
    server_errors: bool = True

    def retries(self, status: int | None) -> bool:
        """Whether an attempt that got `status` (None: a network error) is sent again."""
        return status is None or (self.server_errors and (status >= 500 or status == 429))

    def exhausted(self, attempts: int, elapsed_s: float) -> bool:
        return ((self.tries is not None and attempts >= self.tries)
                or (self.give_up_s is not None and elapsed_s > self.give_up_s))


STUDY_JS = RetryRule()
NO_RETRY = RetryRule(tries=1)


def retry_after_s(header: str | None) -> float:
    """study.js's reading of Retry-After: ``Math.min(60, Number(header) || 1)`` seconds."""
    try:
        seconds = float(header) if header and header.strip() else 0.0
    except ValueError:
        seconds = 0.0
    if seconds != seconds or seconds == 0:  # NaN or 0 are falsy in JavaScript: 1 s
        seconds = 1.0
    return min(RETRY_AFTER_CAP_S, seconds)


def backoff_s(attempt: int, status: int | None = None, retry_after: str | None = None) -> float:
    """The wait after failed attempt number `attempt` (0 for the first): the back-off, and for
    a 429 the larger of the back-off and its Retry-After."""
    wait = min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2 ** attempt)
    if status == 429:
        wait = max(wait, retry_after_s(retry_after))
    return wait
