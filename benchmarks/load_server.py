"""Load test of the study server: N simulated participants at once over real HTTP.

Starts `maco-study serve` (gunicorn) on 127.0.0.1 with a generated test bundle,
then runs N participants in parallel, each doing what study.js does: /start,
consent, device check, instructions, then for every trial GET /api/trial, the
images it has not fetched yet (a browser caches them), POST /api/answer after a
think time, and finally the completion. Afterwards it checks in the database
that every participant completed with every answer stored exactly once.

    python benchmarks/load_server.py --participants 200
    python benchmarks/load_server.py --db postgresql+psycopg://maco:maco@127.0.0.1/maco_test

With --db PostgreSQL the run uses a fresh schema in that database and drops it.
Last line: one JSON object with participants, errors, p99_ms (the worst
endpoint), rps, and p50/p99 per endpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import requests

ENDPOINT_NAMES = [(re.compile(r"^/img/"), "GET /img/<token>"), (re.compile(r"^/start"), "GET /start")]


def endpoint(method: str, path: str) -> str:
    for pattern, name in ENDPOINT_NAMES:
        if pattern.match(path):
            return name
    return f"{method} {path}"


def run_participant(base_url: str, think_s: float, ramp_s: float, seed: int
                    ) -> tuple[dict[str, list[float]], list[str]]:
    rng = random.Random(seed)
    time.sleep(rng.uniform(0, ramp_s))  # arrivals spread over the ramp, as Prolific sends them
    http = requests.Session()
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []

    def call(method: str, path: str, expect: int = 200, **kwargs) -> requests.Response | None:  # noqa: ANN003
        # like study.js: a connection error is retried (answers are idempotent by answer_id)
        for attempt in range(3):
            t0 = time.perf_counter()
            try:
                response = http.request(method, base_url + path, allow_redirects=False, timeout=30, **kwargs)
                break
            except requests.ConnectionError as exc:
                if attempt == 2:
                    errors.append(f"{method} {path}: {exc}")
                    return None
                time.sleep(0.25 * 2 ** attempt)
        latencies[endpoint(method, path)].append((time.perf_counter() - t0) * 1000)
        if response.status_code != expect:
            errors.append(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
            return None
        return response

    pid = secrets.token_hex(12)
    if call("GET", f"/start?PROLIFIC_PID={pid}&STUDY_ID=load&SESSION_ID=s{seed}", expect=302) is None:
        return latencies, errors
    call("POST", "/api/consent", json={"agree": True})
    call("POST", "/api/device", json={"window_width": 1280, "window_height": 800, "is_phone": False})
    call("GET", "/study")
    call("POST", "/api/instructions", json={})
    fetched: set[str] = set()
    while True:
        response = call("GET", "/api/trial")
        if response is None:
            break
        data = response.json()
        if data["done"]:
            break
        trial = data["trial"]
        for url in [trial["base"], trial["left"], trial["right"], *trial["references"]]:
            if url not in fetched:
                fetched.add(url)
                call("GET", url)
        time.sleep(think_s * rng.uniform(0.5, 1.5))
        answer = {"answer_id": str(uuid.uuid4()), "position": trial["position"],
                  "chosen_side": rng.choice(["left", "right"]), "confidence": rng.randint(1, 3),
                  "rt_ms": think_s * 1000, "window_width": 1280, "window_height": 800,
                  "device_pixel_ratio": 1.0, "blur_count": 0, "fullscreen_exit_count": 0}
        if call("POST", "/api/answer", json=answer) is None:
            break
    call("GET", "/study")
    call("POST", "/api/complete", json={"comment": ""})
    return latencies, errors


def run_client_process(base_url: str, seeds: list[int], think_s: float, ramp_s: float) -> tuple[dict, list[str]]:
    merged: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        for latencies, errs in pool.map(lambda s: run_participant(base_url, think_s, ramp_s, s), seeds):
            for name, values in latencies.items():
                merged[name].extend(values)
            errors.extend(errs)
    return dict(merged), errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_schema_url(url: str) -> tuple[str, callable]:  # noqa: ANN001
    from sqlalchemy import create_engine, text

    schema = f"bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}", drop


def check_database(db_url: str, participants: int) -> list[str]:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from study_server.db import make_engine
    from study_server.models import Participant, Trial

    engine = make_engine(db_url)
    with Session(engine) as session:
        completed = session.scalar(select(func.count()).select_from(Participant)
                                   .where(Participant.status == "completed"))
        unanswered = session.scalar(select(func.count()).select_from(Trial).where(Trial.answer_id.is_(None)))
    engine.dispose()
    problems = []
    if completed != participants:
        problems.append(f"database: {completed} of {participants} participants completed")
    if unanswered:
        problems.append(f"database: {unanswered} trials unanswered")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker")
    parser.add_argument("--think-ms", type=float, default=5000,
                        help="mean time a participant looks at a trial before answering (uniform 0.5x-1.5x)")
    parser.add_argument("--ramp-s", type=float, default=10,
                        help="participants arrive uniformly over this many seconds")
    parser.add_argument("--client-processes", type=int, default=4)
    args = parser.parse_args()

    from stimuli.manifest import build_test_bundle

    tmp = Path(tempfile.mkdtemp(prefix="maco-load-"))
    bundle = tmp / "bundle"
    # 3 networks x 3 units x 2 pairs = 18 main trials, 2 practice, 2 catch: 22 trials each
    build_test_bundle(bundle, networks=("vgg16", "resnet50", "vit_b16"), units_per_network=3,
                      pairs_per_unit=2, image_size=224)
    drop_schema = None
    if args.db and args.db.startswith("postgresql"):
        db_url, drop_schema = postgres_schema_url(args.db)
        backend = "postgresql"
    else:
        db_url, backend = args.db or f"sqlite:///{tmp / 'load.db'}", "sqlite"
    port = free_port()
    maco_study = [sys.executable, "-c", "from maco_study import main; main()"]
    server = subprocess.Popen(
        maco_study + ["serve", "--bundle", str(bundle), "--db", db_url, "--host", "127.0.0.1", "--port",
                      str(port), "--workers", str(args.workers), "--threads", str(args.threads)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MACO_SECRET_KEY": "load"})
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(base_url + "/", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        seeds = list(range(args.participants))
        chunks = [seeds[i::args.client_processes] for i in range(args.client_processes)]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.client_processes) as pool:
            results = list(pool.map(run_client_process, [base_url] * len(chunks), chunks,
                                    [args.think_ms / 1000] * len(chunks), [args.ramp_s] * len(chunks)))
        wall = time.perf_counter() - t0
    finally:
        # the client processes are reaped by now: what the children add from here on is the server's CPU
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server.terminate()
        server.wait(timeout=30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    for merged, errs in results:
        for name, values in merged.items():
            latencies[name].extend(values)
        errors.extend(errs)
    errors += check_database(db_url, args.participants)
    if drop_schema is not None:
        drop_schema()
    requests_total = sum(len(v) for v in latencies.values())
    per_endpoint = {name: {"n": len(v), "p50_ms": round(percentile(v, 50), 1), "p99_ms": round(percentile(v, 99), 1)}
                    for name, v in sorted(latencies.items())}
    for name, stats in per_endpoint.items():
        print(f"{name:28s} n={stats['n']:6d}  p50 {stats['p50_ms']:7.1f} ms  p99 {stats['p99_ms']:7.1f} ms")
    for error in errors[:10]:
        print("error:", error)
    print(json.dumps({
        "participants": args.participants, "errors": len(errors),
        "p99_ms": max(s["p99_ms"] for s in per_endpoint.values()),
        "rps": round(requests_total / wall, 1), "requests": requests_total, "wall_s": round(wall, 1),
        "server_cpu_ms_per_request": round(server_cpu_s * 1000 / max(1, requests_total), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "backend": backend, "workers": args.workers, "threads": args.threads, "think_ms": args.think_ms, "ramp_s": args.ramp_s,
        "per_endpoint": per_endpoint,
    }))


if __name__ == "__main__":
    main()
