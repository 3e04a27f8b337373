"""What the server benchmarks share: a test bundle, `maco-study serve` in a subprocess, a
fresh PostgreSQL schema, and a simulated participant that talks HTTP as study.js does.

`load_server.py` drives `SimulatedParticipant.run` (the straight path through the study);
`fault_server.py` subclasses it with clients that lose replies, reload and open two tabs.
"""
from __future__ import annotations

import os
import random
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import requests

ENDPOINT_NAMES = [(re.compile(r"^/img/"), "GET /img/<token>"), (re.compile(r"^/start"), "GET /start")]
# what a dropped or reset connection looks like to requests (a killed worker, a restarting proxy)
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def endpoint(method: str, path: str) -> str:
    for pattern, name in ENDPOINT_NAMES:
        if pattern.match(path):
            return name
    return f"{method} {path}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_bundle(folder: Path) -> Path:
    """3 networks x 3 units x 2 pairs = 18 main trials, 2 practice, 2 catch: 22 trials each."""
    from stimuli.testing import build_test_bundle

    build_test_bundle(folder, networks=("vgg16", "resnet50", "vit_b16"), units_per_network=3,
                      pairs_per_unit=2, image_size=224)
    return folder


def postgres_schema_url(url: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema in the database at `url`: its URL and a function that drops it."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}", drop


def start_server(bundle: Path, db_url: str, workers: int, threads: int, log: Path | None = None,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`maco-study serve` (gunicorn) on a free port; returns once it answers.

    The Popen's process is the gunicorn master (serve runs gunicorn in-process);
    its children are the workers. Every simulated participant comes from 127.0.0.1, so the
    per-address limit on creating participants (MACO_RATE_LIMIT_START, study_server/limits.py)
    is raised here explicitly; the per-participant limits stay at their defaults."""
    port = free_port()
    maco_study = [sys.executable, "-c", "from maco_study import main; main()"]
    output = subprocess.DEVNULL if log is None else log.open("ab")
    server = subprocess.Popen(
        maco_study + ["serve", "--bundle", str(bundle), "--db", db_url, "--host", "127.0.0.1", "--port",
                      str(port), "--workers", str(workers), "--threads", str(threads)],
        stdout=output, stderr=output,
        env={**os.environ, "MACO_SECRET_KEY": "load", "MACO_RATE_LIMIT_START": "1000000 per minute",
             **(env or {})})
    base_url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if server.poll() is not None:
            raise RuntimeError(f"maco-study serve exited with status {server.returncode}"
                               + ("" if log is None else f" (see {log})"))
        try:
            requests.get(base_url + "/", timeout=1)
            return server, base_url
        except requests.RequestException:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("maco-study serve did not answer within 60 s")


class SimulatedParticipant:
    """One participant's browser: a cookie jar, latencies per endpoint, errors, and
    study.js's retry rule for transport errors with back-off min(8 s, 0.25 s x 2^attempt).

    `tries` bounds the attempts per request (None: until `give_up_s` has passed);
    `retry_server_errors` retries 5xx and 429 (after its Retry-After) too, as study.js does
    (the load test counts them as errors instead)."""

    def __init__(self, base_url: str, seed: int, think_s: float, tries: int | None = 3,
                 retry_server_errors: bool = False, give_up_s: float = 120.0, study_id: str = "load",
                 pid: str | None = None):
        self.base_url = base_url
        self.rng = random.Random(seed)
        self.think_s = think_s
        self.tries, self.retry_server_errors, self.give_up_s = tries, retry_server_errors, give_up_s
        self.http = requests.Session()
        self.pid = pid or secrets.token_hex(12)  # a known pid: the same participant coming back
        self.start_path = f"/start?PROLIFIC_PID={self.pid}&STUDY_ID={study_id}&SESSION_ID=s{seed}"
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.retries: dict[str, int] = defaultdict(int)  # why requests were repeated: "HTTP 502", "connection"
        self.fetched: set[str] = set()  # image URLs already in the browser's cache

    def request(self, method: str, path: str, http: requests.Session | None = None,
                **kwargs: Any) -> requests.Response | None:
        """One request with the retry rule; None (and an error) once it gives up."""
        deadline = time.monotonic() + self.give_up_s
        kwargs.setdefault("allow_redirects", False)
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                response = (http or self.http).request(method, self.base_url + path, timeout=30, **kwargs)
                retry = self.retry_server_errors and (response.status_code >= 500 or response.status_code == 429)
                if not retry:
                    self.latencies[endpoint(method, path)].append((time.perf_counter() - t0) * 1000)
                    return response
                problem = f"HTTP {response.status_code}"
            except TRANSPORT_ERRORS as exc:
                response, problem = None, f"connection ({type(exc).__name__})"
            attempt += 1
            if (self.tries is not None and attempt >= self.tries) or time.monotonic() > deadline:
                self.errors.append(f"{method} {path}: {problem} after {attempt} tries")
                return None
            self.retries[problem.split(" (")[0]] += 1
            wait = min(8.0, 0.25 * 2 ** (attempt - 1))
            if response is not None and response.status_code == 429:  # as study.js: at least Retry-After
                wait = max(wait, min(60.0, float(response.headers.get("Retry-After") or 1)))
            time.sleep(wait)

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> requests.Response | None:
        """A request whose status must be `expect`; anything else is an error (and None)."""
        response = self.request(method, path, **kwargs)
        if response is not None and response.status_code != expect:
            self.errors.append(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
            return None
        return response

    def show_trial(self) -> dict[str, Any] | None:
        """GET /api/trial and the images the browser has not cached; None when the trials are over."""
        response = self.call("GET", "/api/trial")
        if response is None:
            return None
        data = response.json()
        if data["done"]:
            return None
        trial = data["trial"]
        for url in [trial["base"], trial["left"], trial["right"], *trial["references"]]:
            if url not in self.fetched:
                self.fetched.add(url)
                self.call("GET", url)
        return trial

    def answer_body(self, trial: dict[str, Any]) -> dict[str, Any]:
        """The participant looks at the trial for a while, then answers as study.js posts it."""
        think_s = self.think_s * self.rng.uniform(0.5, 1.5)
        time.sleep(think_s)  # the rt_ms it reports: the server refuses one longer than it waited
        return {"answer_id": str(uuid.uuid4()), "position": trial["position"],
                "chosen_side": self.rng.choice(["left", "right"]), "confidence": self.rng.randint(1, 3),
                "rt_ms": round(think_s * 1000, 1), "window_width": 1280, "window_height": 800,
                "device_pixel_ratio": 1.0, "blur_count": 0, "fullscreen_exit_count": 0}

    def run(self, ramp_s: float) -> None:
        """The straight path: /start, consent, device check, instructions, every trial, completion."""
        time.sleep(self.rng.uniform(0, ramp_s))  # arrivals spread over the ramp, as Prolific sends them
        if self.call("GET", self.start_path, expect=302) is None:
            return
        self.call("POST", "/api/consent", json={"agree": True})
        self.call("POST", "/api/device", json={"window_width": 1280, "window_height": 800, "is_phone": False})
        self.call("GET", "/study")
        self.call("POST", "/api/instructions", json={})
        while (trial := self.show_trial()) is not None:
            if self.call("POST", "/api/answer", json=self.answer_body(trial)) is None:
                break
        self.call("GET", "/study")
        self.call("POST", "/api/complete", json={"comment": ""})
