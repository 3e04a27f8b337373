"""What the server benchmarks share: a test bundle, `maco-study serve` in a subprocess, a
fresh PostgreSQL schema, and a measured participant on the protocol client.

The protocol itself (paths, bodies, study.js's retry rule) is `study_server.client`'s;
here are only the measurements: latencies per endpoint, errors, retries.
`load_server.py` drives `SimulatedParticipant.run` (the straight path through the study);
`fault_client.py` subclasses it with clients that lose replies, reload and open two tabs.
"""
from __future__ import annotations

import random
import re
import secrets
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, NoReturn

from study_server.client import (ProtocolError, RetryRule, ServerProcess, StudyClient, Transport, answer_body,
                                 start_path)

ENDPOINT_NAMES = [(re.compile(r"^/img/"), "GET /img/<token>"), (re.compile(r"^/ref/"), "GET /ref/<id>.png"),
                  (re.compile(r"^/start"), "GET /start")]
LOAD_RETRY = RetryRule(tries=3, server_errors=False)  # the load test counts 5xx and 429 as errors


def endpoint(method: str, path: str) -> str:
    for pattern, name in ENDPOINT_NAMES:
        if pattern.match(path):
            return name
    return f"{method} {path}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


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


def finish(ok: bool, folder: Path, keep_logs: bool = False) -> NoReturn:
    """A verifying benchmark's end: its folder (bundle, databases, server logs) removed after a pass,
    kept and named after a failure or with `keep_logs`; the exit status says which."""
    if ok and not keep_logs:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"server logs kept in {folder}", file=sys.stderr)
    raise SystemExit(0 if ok else 1)


def start_server(bundle: Path, db_url: str, workers: int, threads: int, log: Path | None = None,
                 env: dict[str, str] | None = None) -> ServerProcess:
    """`maco-study serve` (Granian) on a free port, once it answers.

    Every simulated participant comes from 127.0.0.1, so the per-address limit on creating
    participants (MACO_RATE_LIMIT_START, study_server/limits.py) is raised here explicitly;
    the per-participant limits stay at their defaults."""
    return ServerProcess(bundle, db_url, workers=workers, threads=threads, log=log,
                         timeout_s=60,
                         env={"MACO_SECRET_KEY": "load", "MACO_RATE_LIMIT_START": "1000000 per minute", **(env or {})})


class SimulatedParticipant:
    """One participant's browser (a StudyClient) with latencies per endpoint and errors.

    `retry` is the client's retry rule (default: three tries, 5xx and 429 counted as errors)."""

    def __init__(self, transport: Transport, seed: int, think_s: float, retry: RetryRule = LOAD_RETRY,
                 study_id: str = "load", pid: str | None = None):
        self.rng = random.Random(seed)
        self.think_s = think_s
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.client = StudyClient(transport, retry, on_response=self.record)
        self.pid = pid or secrets.token_hex(12)  # a known pid: the same participant coming back
        self.start_path = start_path(self.pid, study_id, f"s{seed}")

    def record(self, method: str, path: str, ms: float) -> None:
        self.latencies[endpoint(method, path)].append(ms)

    def attempt(self, step: Callable[..., Any], *args: Any) -> Any:
        """One protocol step; a ProtocolError is an error (and None)."""
        try:
            return step(*args)
        except ProtocolError as exc:
            self.errors.append(str(exc))
            return None

    def show_trial(self) -> dict[str, Any] | None:
        """GET /api/trial and the images the browser has not cached; None when the trials are over."""
        data = self.attempt(self.client.trial)
        if data is None or data["done"]:
            return None
        self.attempt(self.client.images, data["trial"])
        return data["trial"]

    def answer_body(self, trial: dict[str, Any]) -> dict[str, Any]:
        """The participant looks at the trial for a while, then answers."""
        think_s = self.think_s * self.rng.uniform(0.5, 1.5)
        self.client.sleep(think_s)  # the rt_ms it reports: the server refuses one longer than it waited
        return answer_body(trial["position"], self.rng.choice(["left", "right"]), self.rng.randint(1, 3),
                           round(think_s * 1000, 1))

    def run(self, ramp_s: float) -> None:
        """The straight path: /start, consent, device check, instructions, every trial, completion."""
        self.client.sleep(self.rng.uniform(0, ramp_s))  # arrivals spread over the ramp, as Prolific sends them
        client = self.client
        if self.attempt(client.start, self.start_path) is None:
            return
        self.attempt(client.consent)
        self.attempt(client.device)
        self.attempt(client.page)  # the instructions page (it starts the server's instruction clock)
        self.attempt(client.instructions)
        while (trial := self.show_trial()) is not None:
            if self.attempt(client.answer, self.answer_body(trial)) is None:
                break
        self.attempt(client.page)
        self.attempt(client.complete)
