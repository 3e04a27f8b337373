"""A small client of Prolific's public REST API (v1), for the endpoints `maco-study prolific` uses.

It follows the API reference at docs.prolific.com as of 2026-12 (docs/prolific.md lists the
endpoints). The token comes from the PROLIFIC_TOKEN variable and is only ever sent in the
Authorization header: no message, log line or file written here contains it.

Retries: a 429 waits for its Retry-After; a 5xx or a dropped connection is retried for reads only.
A transition (approve, publish) is never re-sent after a 5xx, since Prolific may have applied it:
the caller lists again and sees what was done (reconcile is resumable that way).
"""
from __future__ import annotations

import os
import time
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator

import requests

API_URL = "https://api.prolific.com"
TOKEN_VARIABLE = "PROLIFIC_TOKEN"
API_URL_VARIABLE = "PROLIFIC_API_URL"  # another host for the API (tests run a local stand-in)
PAGE_SIZE = 100
MAX_TRIES = 6
MAX_WAIT_S = 120.0  # the longest Retry-After honoured; beyond it the command stops and says so


class ProlificError(RuntimeError):
    """A one-line message naming what Prolific refused or what to fix."""


class ServerFailure(ProlificError):
    """Prolific answered a transition with a 5xx: it may or may not have been applied."""


def retry_after_seconds(value: str | None, default: float) -> float:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return default


class ProlificAPI:
    def __init__(self, token: str, base_url: str = API_URL, *, sleep: Callable[[float], None] = time.sleep,
                 timeout_s: float = 30.0) -> None:
        if not token:
            raise ProlificError(f"no Prolific API token: set {TOKEN_VARIABLE} (Prolific > Settings > API tokens)")
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Token {token}"
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep
        self._timeout_s = timeout_s

    @classmethod
    def from_environment(cls) -> ProlificAPI:
        return cls(os.environ.get(TOKEN_VARIABLE, ""), os.environ.get(API_URL_VARIABLE) or API_URL)

    def request(self, method: str, path: str, *, body: dict | None = None,
                params: dict | None = None) -> Any:
        """The decoded JSON answer; `path` is relative to the API host or an absolute next-page link."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        is_read = method == "GET"
        for attempt in range(1, MAX_TRIES + 1):
            try:
                response = self._session.request(method, url, json=body, params=params, timeout=self._timeout_s)
            except requests.RequestException as exc:
                if not is_read or attempt == MAX_TRIES:
                    raise ProlificError(f"Prolific could not be reached ({method} {_path(url)}): "
                                        f"{type(exc).__name__}") from None
                self._sleep(min(2.0 ** attempt, 30.0))
                continue
            status = response.status_code
            if status == 429 and attempt < MAX_TRIES:  # not processed: safe to send again
                wait = retry_after_seconds(response.headers.get("Retry-After"), default=2.0 ** attempt)
                if wait > MAX_WAIT_S:
                    raise ProlificError(f"Prolific's rate limit asks to wait {wait:.0f} s; run the command "
                                        "again later")
                self._sleep(wait)
                continue
            if status >= 500 and is_read and attempt < MAX_TRIES:
                self._sleep(min(2.0 ** attempt, 30.0))
                continue
            if status in (401, 403):
                raise ProlificError(f"Prolific refused the API token (HTTP {status}): set {TOKEN_VARIABLE} to a "
                                    "valid token of the workspace that owns the study")
            if status >= 500:
                raise ServerFailure(f"Prolific failed on {method} {_path(url)} (HTTP {status})")
            if status >= 400:
                raise ProlificError(f"Prolific refused {method} {_path(url)} (HTTP {status}): {_detail(response)}")
            return response.json() if response.content else {}
        raise ProlificError(f"Prolific kept answering HTTP 429/5xx to {method} {_path(url)}; try again later")

    # --- the endpoints `maco-study prolific` uses
    def me(self) -> dict:
        return self.request("GET", "/api/v1/users/me/")

    def create_study(self, body: dict) -> dict:
        return self.request("POST", "/api/v1/studies/", body=body)

    def publish_study(self, study_id: str) -> dict:
        return self.request("POST", f"/api/v1/studies/{study_id}/transition/", body={"action": "PUBLISH"})

    def study(self, study_id: str) -> dict:
        return self.request("GET", f"/api/v1/studies/{study_id}/")

    def submissions(self, study_id: str) -> Iterator[dict]:
        """Every submission of the study, page by page (the `_links.next` link Prolific gives)."""
        page: Any = self.request("GET", "/api/v1/submissions/", params={"study": study_id, "page_size": PAGE_SIZE})
        while True:
            yield from page.get("results", [])
            next_link = ((page.get("_links") or {}).get("next") or {}).get("href")
            if not next_link:
                return
            page = self.request("GET", next_link)

    def approve(self, submission_id: str) -> dict:
        return self.request("POST", f"/api/v1/submissions/{submission_id}/transition/", body={"action": "APPROVE"})


def _path(url: str) -> str:
    return requests.utils.urlparse(url).path


def _detail(response: requests.Response) -> str:
    """Prolific's error text on one line (its JSON `error.detail`, else the start of the body)."""
    try:
        data = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200] or "no detail"
    error = data.get("error", data) if isinstance(data, dict) else data
    detail = error.get("detail", error) if isinstance(error, dict) else error
    return " ".join(str(detail).split())[:300]
