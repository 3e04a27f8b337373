"""Load test of the study server: N simulated participants at once over real HTTP.

Starts `maco-study serve` (Granian) on 127.0.0.1 with a generated test bundle,
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

Each participant arrives at a random moment within --ramp-s (10 s: 200 places
filled at once, as when Prolific opens a study) and looks at each trial for a
uniform 0.5-1.5 x --think-ms (5 s mean: fast for a trial with a reference grid,
two queries and a confidence rating, so the request rate errs on the high side).

Client and server share this machine's cores, so every latency here includes the
wait of the client's own threads for the CPU, and every core the clients use is one the server
lacks. The participants therefore talk through `study_server.client.LightTransport` (its own
HTTP/1.1 on a keep-alive socket with a cookie jar, like a browser's one connection per origin: the
same requests and cookies as `requests`, at about a tenth of its client CPU per request);
`--client requests` runs the requests library instead, for comparison. To show what is left, each
client process also fetches a static file (study.css) four times a second, next to its participants:
`floor_p50_ms`/`floor_p99_ms` are the latencies of that request, which does nothing
in the app, under the same load. `server_cpu_ms_per_request` and
`client_cpu_ms_per_request` split the CPU the run used (`client_cpu_share`: the clients' part of
the two); `machine_cpu_busy` is the share of all cores busy during the run (this run and anything
else on the machine).

`--front nginx` runs the stack as production does (benchmarks/nginx_front.py: docs/deploy/nginx.conf
itself in front): reference images from nginx's cache, the trial images sent by nginx through
X-Accel-Redirect once the app has checked and recorded them, the rest proxied to the server.
`server_cpu_ms_per_request` is then the whole stack's (nginx and the server),
`app_cpu_ms_per_request` the server's alone and `front_cpu_ms_per_request` nginx's; the
`_s_per_participant` figures are the same CPU divided by participants. Without a front the
app is the whole server (and `front_cpu` is 0).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from nginx_front import APP_ENV, NginxFront, check_front
from study_client import SimulatedParticipant, build_bundle, percentile, postgres_schema_url, start_server

from study_server.client import LightTransport, RequestsTransport, TransportError

FLOOR_PATH = "/static/study.css"
FLOOR_INTERVAL_S = 0.25


TRANSPORTS = {"light": LightTransport, "requests": RequestsTransport}


def run_participant(base_url: str, think_s: float, ramp_s: float, client: str, seed: int
                    ) -> tuple[dict[str, list[float]], list[str]]:
    participant = SimulatedParticipant(TRANSPORTS[client](base_url), seed, think_s)
    participant.run(ramp_s)
    return participant.latencies, participant.errors


def probe_floor(base_url: str, client: str, stop: threading.Event, latencies: list[float]) -> None:
    """A static file fetched at a steady pace: the latency of a request that does no work in the app."""
    http = TRANSPORTS[client](base_url)
    while not stop.wait(FLOOR_INTERVAL_S):
        t0 = time.perf_counter()
        try:
            if http.request("GET", FLOOR_PATH).status_code == 200:
                latencies.append((time.perf_counter() - t0) * 1000)
        except TransportError:
            pass


def run_client_process(base_url: str, seeds: list[int], think_s: float, ramp_s: float, client: str
                       ) -> tuple[dict, list[str], list[float]]:
    merged: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    floor: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe_floor, args=(base_url, client, stop, floor), daemon=True)
    prober.start()
    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        for latencies, errs in pool.map(lambda s: run_participant(base_url, think_s, ramp_s, client, s), seeds):
            for name, values in latencies.items():
                merged[name].extend(values)
            errors.extend(errs)
    stop.set()
    prober.join()
    return dict(merged), errors, floor


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def children_cpu_s() -> float:
    """User and system CPU of this process's reaped children (and theirs), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    # on a quiet machine 2 x 16 and 4 x 4 give the same tails within the noise (README)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--threads", type=int, default=16, help="application threads per worker")
    parser.add_argument("--think-ms", type=float, default=5000,
                        help="mean time a participant looks at a trial before answering (uniform 0.5x-1.5x)")
    parser.add_argument("--ramp-s", type=float, default=10,
                        help="participants arrive uniformly over this many seconds")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--server-log", default=None, help="append the server's output (errors) to this file")
    parser.add_argument("--client", choices=sorted(TRANSPORTS), default="light",
                        help="participants' HTTP: light (study_server/client/light_http.py) or requests")
    parser.add_argument("--front", choices=("none", "nginx"), default="none",
                        help="nginx: docs/deploy/nginx.conf in front of the app, as in production (nginx_front.py)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="maco-load-"))
    tmp.chmod(0o755)  # nginx's workers (user nobody when started as root) read the sent images in it
    bundle = build_bundle(tmp / "bundle")
    drop_schema = None
    if args.db and args.db.startswith("postgresql"):
        db_url, drop_schema = postgres_schema_url(args.db)
        backend = "postgresql"
    else:
        db_url, backend = args.db or f"sqlite:///{tmp / 'load.db'}", "sqlite"
    sent_dir = tmp / "sent-images"
    env = {**APP_ENV, "MACO_SENT_IMAGES_DIR": str(sent_dir)} if args.front == "nginx" else {}
    server = start_server(bundle, db_url, args.workers, args.threads,
                          log=Path(args.server_log) if args.server_log else None, env=env)
    front = NginxFront(server.url, tmp / "nginx", sent_dir) if args.front == "nginx" else None
    base_url = front.url if front else server.url
    errors: list[str] = []
    try:
        seeds = list(range(args.participants))
        chunks = [seeds[i::args.client_processes] for i in range(args.client_processes)]
        t0, busy0 = time.perf_counter(), cpu_times()
        with ProcessPoolExecutor(max_workers=args.client_processes) as pool:
            results = list(pool.map(run_client_process, [base_url] * len(chunks), chunks,
                                    [args.think_ms / 1000] * len(chunks), [args.ramp_s] * len(chunks),
                                    [args.client] * len(chunks)))
        wall, busy1 = time.perf_counter() - t0, cpu_times()
        errors += check_database(db_url, args.participants)
        if front:
            errors += check_front(base_url, sent_dir)
    finally:
        # the client processes are reaped by now: what the children add from here on is the server's
        # CPU, nginx's (master and workers) once it is reaped, then the server's
        before = children_cpu_s()
        if front:
            front.stop()
        between = children_cpu_s()
        server.stop()
        after = children_cpu_s()
    front_cpu_s, app_cpu_s, client_cpu_s = between - before, after - between, before
    latencies: dict[str, list[float]] = defaultdict(list)
    floor: list[float] = []
    for merged, errs, probe in results:
        for name, values in merged.items():
            latencies[name].extend(values)
        errors.extend(errs)
        floor.extend(probe)
    if drop_schema is not None:
        drop_schema()
    requests_total = sum(len(v) for v in latencies.values())
    per_endpoint = {name: {"n": len(v), "p50_ms": round(percentile(v, 50), 1), "p99_ms": round(percentile(v, 99), 1)}
                    for name, v in sorted(latencies.items())}
    for name, stats in per_endpoint.items():
        print(f"{name:28s} n={stats['n']:6d}  p50 {stats['p50_ms']:7.1f} ms  p99 {stats['p99_ms']:7.1f} ms")
    print(f"{'floor: GET ' + FLOOR_PATH:28s} n={len(floor):6d}  p50 {percentile(floor, 50):7.1f} ms  "
          f"p99 {percentile(floor, 99):7.1f} ms")
    for error in errors[:10]:
        print("error:", error)
    print(json.dumps({
        "participants": args.participants, "errors": len(errors),
        "p99_ms": max(s["p99_ms"] for s in per_endpoint.values()),
        "rps": round(requests_total / wall, 1), "requests": requests_total, "wall_s": round(wall, 1),
        "floor_p50_ms": round(percentile(floor, 50), 1), "floor_p99_ms": round(percentile(floor, 99), 1),
        "server_cpu_ms_per_request": round((front_cpu_s + app_cpu_s) * 1000 / max(1, requests_total), 2),
        "app_cpu_ms_per_request": round(app_cpu_s * 1000 / max(1, requests_total), 2),
        "front_cpu_ms_per_request": round(front_cpu_s * 1000 / max(1, requests_total), 2),
        "server_cpu_s_per_participant": round((front_cpu_s + app_cpu_s) / args.participants, 3),
        "app_cpu_s_per_participant": round(app_cpu_s / args.participants, 3),
        "client_cpu_ms_per_request": round(client_cpu_s * 1000 / max(1, requests_total), 2),
        "client_cpu_share": round(client_cpu_s / max(1e-9, client_cpu_s + front_cpu_s + app_cpu_s), 2),
        "machine_cpu_busy": round((busy1[0] - busy0[0]) / (busy1[1] - busy0[1]), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "backend": backend, "front": args.front, "workers": args.workers, "threads": args.threads,
        "client": args.client, "client_processes": args.client_processes, "think_ms": args.think_ms, "ramp_s": args.ramp_s,
        "per_endpoint": per_endpoint,
    }))


if __name__ == "__main__":
    main()
