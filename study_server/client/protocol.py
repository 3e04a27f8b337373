"""The participant protocol as study.js speaks it: paths, bodies, the retry rule.

A ``StudyClient`` is one participant's browser tab: a transport (its cookie jar), the retry
rule of study.js (retry.py), and the images it has cached. The steps post the bodies
study.js posts; ``answer_body`` is the one place the answer body is written. What a
participant decides (which side, how fast, when to reload or leave) is the caller's.
"""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any, Callable

from .retry import STUDY_JS, RetryRule, backoff_s
from .transports import Reply, Transport, TransportError

START = "/start"
STUDY_PAGE = "/study"  # the page of the participant's current stage
TRIAL = "/api/trial"
ANSWER = "/api/answer"
WINDOW = (1280, 800)  # the inner window size reported when a caller gives none
STEP_PAGES = ("consent", "device", "instructions", "comment")  # the pages left by a POST


class ProtocolError(Exception):
    """The server did not answer as the protocol says; the message names the request."""


def start_path(pid: str, study_id: str, session_id: str) -> str:
    """The Prolific link's path."""
    return f"{START}?PROLIFIC_PID={pid}&STUDY_ID={study_id}&SESSION_ID={session_id}"


def answer_body(position: int, chosen_side: str, confidence: int, rt_ms: float, window: tuple[int, int] = WINDOW,
                answer_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """POST /api/answer's body as study.js builds it (a new answer_id unless one is given)."""
    return {"answer_id": answer_id or str(uuid.uuid4()), "position": position, "chosen_side": chosen_side,
            "confidence": confidence, "rt_ms": rt_ms, "window_width": window[0], "window_height": window[1],
            "device_pixel_ratio": 1.0, "blur_count": 0, "fullscreen_exit_count": 0, "webdriver": False,
            "input": "key", **extra}


def step_request(page: str, window: tuple[int, int] = WINDOW, agree: bool = True, is_phone: bool = False,
                 comment: str = "") -> tuple[str, dict[str, Any]]:
    """The POST study.js sends to leave `page` (one of STEP_PAGES): its path and body."""
    return {"consent": ("/api/consent", {"agree": agree}),
            "device": ("/api/device", {"window_width": window[0], "window_height": window[1], "is_phone": is_phone}),
            "instructions": ("/api/instructions", {}),
            "comment": ("/api/complete", {"comment": comment})}[page]


def trial_images(trial: dict[str, Any]) -> list[str]:
    """The image URLs of a trial in the order study.js loads them."""
    return [trial["base"], trial["left"], trial["right"], *trial["references"]]


def page_name(html: str) -> str:
    """The data-page attribute of a page's body ('' when there is none)."""
    marker = 'data-page="'
    at = html.find(marker)
    return "" if at < 0 else html[at + len(marker):html.index('"', at + len(marker))]


class StudyClient:
    """One participant's browser tab.

    ``request`` does exactly what study.js's ``fetchJSON`` does: network errors, 5xx and 429 are
    sent again after ``min(8 s, 0.25 s x 2^n)``, a 429 after the larger of that and its
    Retry-After, every other status is returned (retry.py). study.js never gives up; a
    bounded ``RetryRule`` does, returning the last reply (a status) or raising ProtocolError
    (network errors).
    ``on_response(method, path, ms)`` is told the time of each reply the client accepts
    (the attempt that got it); ``retries`` counts why requests were sent again."""

    def __init__(self, transport: Transport, retry: RetryRule = STUDY_JS, window: tuple[int, int] = WINDOW,
                 on_response: Callable[[str, str, float], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.transport, self.retry, self.window = transport, retry, window
        self.on_response, self.sleep = on_response, sleep
        self.retries: Counter[str] = Counter()  # "HTTP 502", "connection"
        self.cached: set[str] = set()  # image URLs already downloaded, as a browser's cache

    def request(self, method: str, path: str, json: Any = None, follow_redirects: bool = False) -> Reply:
        start = time.monotonic()
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                reply = self.transport.request(method, path, json=json, follow_redirects=follow_redirects)
                status, problem = reply.status_code, f"HTTP {reply.status_code}"
            except TransportError as exc:
                reply, status, problem = None, None, f"connection ({exc})"
            attempt += 1
            gave_up = self.retry.exhausted(attempt, time.monotonic() - start)
            if reply is not None and (not self.retry.retries(status) or gave_up):
                if self.on_response is not None:
                    self.on_response(method, path, (time.perf_counter() - t0) * 1000)
                return reply
            if gave_up:
                raise ProtocolError(f"{method} {path}: {problem} after {attempt} tries")
            self.retries[problem.split(" (")[0]] += 1
            self.sleep(backoff_s(attempt - 1, status, None if reply is None else reply.headers.get("Retry-After")))

    def call(self, method: str, path: str, json: Any = None, expect: int = 200,
             follow_redirects: bool = False) -> Reply:
        """A request whose status must be `expect` (ProtocolError otherwise)."""
        reply = self.request(method, path, json=json, follow_redirects=follow_redirects)
        if reply.status_code != expect:
            raise ProtocolError(f"{method} {path}: HTTP {reply.status_code} {reply.text[:200]}")
        return reply

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self.call("POST", path, json=body).text)

    def page(self, path: str = STUDY_PAGE) -> str:
        """Open a page as the browser does (following redirects): its data-page name."""
        return page_name(self.call("GET", path, follow_redirects=True).text)

    def start(self, path: str) -> Reply:
        """The Prolific link without following its redirect (302 to /study)."""
        return self.call("GET", path, expect=302)

    # the stages' steps, with study.js's bodies; each returns the server's reply ({"next": url})
    def consent(self, agree: bool = True) -> dict[str, Any]:
        return self.post(*step_request("consent", agree=agree))

    def device(self, is_phone: bool = False) -> dict[str, Any]:
        return self.post(*step_request("device", self.window, is_phone=is_phone))

    def instructions(self) -> dict[str, Any]:
        return self.post(*step_request("instructions"))

    def complete(self, comment: str = "") -> dict[str, Any]:
        return self.post(*step_request("comment", comment=comment))

    def trial(self, resume: bool = False) -> dict[str, Any]:
        """GET /api/trial: {"done": false, "trial": {...}} or {"done": true, "next": url}."""
        return json.loads(self.call("GET", TRIAL + ("?resume=1" if resume else "")).text)

    def images(self, trial: dict[str, Any]) -> dict[str, bytes]:
        """Download the trial's images not in the cache yet: url -> bytes."""
        new = {}
        for url in trial_images(trial):
            if url not in self.cached:
                new[url] = self.call("GET", url).content
                self.cached.add(url)
        return new

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /api/answer, acknowledged: {"stored": true, "next": "trial" | "page", "feedback": ...}."""
        return self.post(ANSWER, body)

    def send_answer(self, body: dict[str, Any]) -> Reply:
        """POST /api/answer with the retry rule, the reply whatever its status (study.js drops a refused answer)."""
        return self.request("POST", ANSWER, json=body)
