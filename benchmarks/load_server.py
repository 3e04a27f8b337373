"""Load test of the study server: N simulated participants at once over real HTTP.

Starts `maco-study serve` (gunicorn) on 127.0.0.1 with a generated test bundle,
then runs N participants in parallel, each doing what study.js does: /start,
consent, device check, instructions, then for every trial GET /api/trial, the
images it has not fetched yet (a browser caches them), POST /api/answer after a
think time, and finally the completion. Afterwards it checks in the database
that every participant completed with every answer stored exactly once.

Rate limits: all participants come from 127.0.0.1, so the server is started with
MACO_RATE_LIMIT_START raised (the per-address limit on new participants, see
study_server/limits.py); the per-participant limits keep their defaults, which a
participant at this pace never reaches (a 429 would count as an error).

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
import resource
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from study_client import SimulatedParticipant, build_bundle, percentile, postgres_schema_url, start_server


def run_participant(base_url: str, think_s: float, ramp_s: float, seed: int
                    ) -> tuple[dict[str, list[float]], list[str]]:
    participant = SimulatedParticipant(base_url, seed, think_s)
    participant.run(ramp_s)
    return participant.latencies, participant.errors


def run_client_process(base_url: str, seeds: list[int], think_s: float, ramp_s: float) -> tuple[dict, list[str]]:
    merged: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        for latencies, errs in pool.map(lambda s: run_participant(base_url, think_s, ramp_s, s), seeds):
            for name, values in latencies.items():
                merged[name].extend(values)
            errors.extend(errs)
    return dict(merged), errors


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

    tmp = Path(tempfile.mkdtemp(prefix="maco-load-"))
    bundle = build_bundle(tmp / "bundle")
    drop_schema = None
    if args.db and args.db.startswith("postgresql"):
        db_url, drop_schema = postgres_schema_url(args.db)
        backend = "postgresql"
    else:
        db_url, backend = args.db or f"sqlite:///{tmp / 'load.db'}", "sqlite"
    server, base_url = start_server(bundle, db_url, args.workers, args.threads)
    try:
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
