"""Fault benchmark of the study server: what survives killed workers, a database restart
and clients that lose replies, reload and answer from two tabs.

Each scenario starts `maco-study serve` (Granian, several workers) on a fresh database,
runs simulated participants that behave as study.js does (every request retried with
back-off until the server answers; an answer kept until it is acknowledged, also across a
reload), injects its faults while the answers come in, then checks the database:

- every answer that got a 2xx is stored exactly once, as it was sent (`lost`, `duplicated`);
- no answer is stored that was never acknowledged (`stored_unacknowledged`);
- every participant can come back with the same Prolific link and finish (`stuck`): a
  fault-free client resumes each one after the load;
- the conditions stay balanced (completed participants per condition differ by at most one).

Scenarios (all by default; `--scenarios` picks some):

- `worker_kill`: kill -9 of a random server worker at several points of the load;
- `postgres_restart`: a fast-mode restart of PostgreSQL in the middle of the load;
- `client_faults`: replies lost (the connection dropped after sending, or the reply discarded)
  and the request sent again, reloads at random moments (/start with the same PID, or /study),
  and participants with a second tab sharing the cookie that posts every answer again (and now
  and then its own, different answer to the same trial);
- `combined`: all of it at once.

PostgreSQL (default): the benchmark runs its own throw-away server (initdb in a temporary
folder, a free port; as root it runs as the `postgres` user), so restarting it disturbs no
other database on the machine. `--db URL` uses an existing server instead, and then
`--pg-restart-cmd` says how to restart it (e.g. `pg_ctlcluster 15 main restart`);
without it there is no database restart (`postgres_restart` is skipped, `combined` runs without
it). `--db sqlite` runs on SQLite files, likewise without a restart.

    python benchmarks/fault_server.py
    python benchmarks/fault_server.py --participants 80 --scenarios worker_kill,combined
    python benchmarks/fault_server.py --db sqlite

Exit status 1 when an invariant fails. Last line: one JSON object with `sent`,
`acknowledged`, `stored`, `duplicated`, `lost`, `stuck`, `ok` and `scenarios` (the same per
scenario, with the faults injected and the retries they caused).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from fault_client import ClientFaults, run_clients, run_participant
from fault_injector import FaultInjector, Scenario
from fault_verify import passed, server_exceptions, stored_data, verify
from private_postgres import PrivatePostgres, shell_restart
from study_client import build_bundle, finish, postgres_schema_url, start_server

FASTEST_PERSON_THINK_MS = 1000  # about one answer a second: what study_server/limits.py allows for


def trials_per_participant(bundle: Path) -> int:
    """The fewest answers a participant gives: one practice round, the main and the catch trials."""
    from stimuli.manifest import load_manifest

    m = load_manifest(bundle)
    return (len(m.protocol.practice_round(m.practice_trials, 1))
            + (m.protocol.main_trials_per_participant or len(m.query_pairs))
            + len(m.catch_trials))


def participant_limits(think_ms: float) -> dict[str, str]:
    """Server environment for participants `FASTEST_PERSON_THINK_MS / think_ms` times faster than
    the fastest person: the per-participant rate limits scaled up and the pace floors
    (study_server/speed.py) down by that factor (none when >= 1).
    (The per-address /start limit is raised by study_client.start_server: every client is 127.0.0.1.)"""
    from study_server.config import DEFAULTS

    factor = math.ceil(FASTEST_PERSON_THINK_MS / think_ms) if think_ms > 0 else 1000
    if factor <= 1:
        return {}
    return {**{f"MACO_{key}": re.sub(r"\d+", lambda m: str(int(m.group()) * factor), DEFAULTS[key])
               for key in ("RATE_LIMIT_PARTICIPANT", "RATE_LIMIT_IMAGES")},
            **{f"MACO_{key}": str(DEFAULTS[key] // factor) for key in ("MIN_RT_MS", "MIN_ANSWER_MS", "MIN_SESSION_S")}}


FAULTY_CLIENTS = ClientFaults(lose_reply=0.15, reload=0.03, two_tabs=0.3)
SCENARIOS: dict[str, Scenario] = {
    "worker_kill": Scenario(worker_kills=5),
    "postgres_restart": Scenario(db_restarts=1),
    "client_faults": Scenario(clients=FAULTY_CLIENTS),
    "combined": Scenario(worker_kills=3, db_restarts=1, kill_while_db_down=True, clients=FAULTY_CLIENTS),
}


def run_scenario(name: str, scenario: Scenario, bundle: Path, db_url: str, participants: int, think_s: float,
                 ramp_s: float, workers: int, threads: int, processes: int, give_up_s: float,
                 restart_db: Callable[..., float] | None, log_dir: Path, seed: int = 0) -> dict[str, Any]:
    """One scenario on a fresh database: load with faults, resume everyone, verify."""
    log = log_dir / f"server-{name}.log"
    limits = participant_limits(think_s * 1000)
    server = start_server(bundle, db_url, workers, threads, log=log, env=limits)
    exits = []
    try:
        injector = FaultInjector(scenario, server.process.pid, db_url, participants * trials_per_participant(bundle),
                                 restart_db, seed)
        injector.start()
        seeds = list(range(seed * 100_000, seed * 100_000 + participants))
        t0 = time.perf_counter()
        results = run_clients(server.url, seeds, think_s, ramp_s, scenario.clients, give_up_s, processes)
        wall = time.perf_counter() - t0
        injector.stop.set()
        injector.join()
        if server.process.poll() is not None:  # the whole server went down: say so, and bring it back to resume
            exits.append(server.process.returncode)
            server.stop()
            server = start_server(bundle, db_url, workers, threads, log=log, env=limits)
        # everyone comes back with the same Prolific link: the unfinished finish, the finished see "done"
        # (with what the browser kept in localStorage)
        with ThreadPoolExecutor(max_workers=16) as pool:
            resumed = list(pool.map(lambda ir: run_participant(server.url, 1_000_000 + ir[0], think_s, 0.0, ClientFaults(),
                                                               give_up_s, ir[1]["pid"], ir[1]["pending"]),
                                    enumerate(results)))
        alive = server.process.poll() is None
    finally:
        server.stop()
    participants_db, answers_db = stored_data(db_url)
    counts = verify(results + resumed, participants_db, answers_db)
    events: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    for r in results:
        events.update(r["events"])
        retries.update(r["retries"])
    errors = [e for r in results + resumed for e in r["errors"]]
    return {
        **counts,
        "participants": participants,
        "completed_during_load": sum(r["completed"] for r in results),
        "stuck": sum(not r["completed"] for r in resumed),
        "faults": [f for f in injector.done],
        "worker_kills": sum(f["fault"] == "worker_kill" for f in injector.done),
        "db_restarts": sum(f["fault"] == "db_restart" for f in injector.done),
        "server_exits": exits,
        "server_alive_at_end": alive,
        "client_events": dict(sorted(events.items())),
        "retries": dict(sorted(retries.items())),
        "client_errors": len(errors),
        "first_errors": errors[:3],
        "requests": sum(r["requests"] for r in results),
        "rate_limits_raised": limits,
        "wall_s": round(wall, 1),
        "server_exceptions": server_exceptions(log),
        # a worker booting while the database is down waits for it (study_server.cli) instead of halting the server
        "worker_boot_waits": log.read_text(errors="replace").count("database unreachable, retrying"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=40, help="participants per scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of " + ", ".join(SCENARIOS))
    parser.add_argument("--db", default=None,
                        help="'sqlite', or a PostgreSQL URL (default: a private PostgreSQL server)")
    parser.add_argument("--pg-restart-cmd", default=None, help="how to restart the server of --db URL")
    parser.add_argument("--workers", type=int, default=3, help="server worker processes")
    parser.add_argument("--threads", type=int, default=8, help="application threads per worker")
    parser.add_argument("--think-ms", type=float, default=FASTEST_PERSON_THINK_MS,
                        help="mean time on a trial (uniform 0.5x-1.5x); below 1000 the per-participant "
                             "rate limits are raised by the same factor")
    parser.add_argument("--ramp-s", type=float, default=3, help="participants arrive over this many seconds")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--give-up-s", type=float, default=120,
                        help="a client stops retrying a request after this long (it is resumed afterwards)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs (always kept on failure)")
    args = parser.parse_args()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")

    tmp = Path(tempfile.mkdtemp(prefix="maco-fault-"))
    bundle = build_bundle(tmp / "bundle")
    private = None
    if args.db == "sqlite":
        backend, restart_db, base_db = "sqlite", None, None
    else:
        backend = "postgresql"
        if args.db is None:
            private = PrivatePostgres()
            base_db, restart_db = private.url, private.restart
        else:
            base_db = args.db
            restart_db = shell_restart(args.pg_restart_cmd) if args.pg_restart_cmd else None
    results: dict[str, Any] = {}
    try:
        for k, name in enumerate(names):
            scenario = SCENARIOS[name]
            if restart_db is None and scenario.db_restarts:  # the rest of the scenario still runs
                scenario = replace(scenario, db_restarts=0, kill_while_db_down=False)
                if scenario == Scenario():
                    results[name] = {"skipped": "no database restart possible (SQLite, or --db without "
                                                "--pg-restart-cmd)"}
                    continue
            drop = None
            db_url = f"sqlite:///{tmp / f'{name}.db'}"
            if backend == "postgresql":
                db_url, drop = postgres_schema_url(base_db)
            try:
                results[name] = run_scenario(name, scenario, bundle, db_url, args.participants, args.think_ms / 1000,
                                             args.ramp_s, args.workers, args.threads, args.client_processes,
                                             args.give_up_s, restart_db, tmp, seed=args.seed * len(SCENARIOS) + k)
            finally:
                if drop is not None:
                    drop()
            r = results[name]
            print(f"{name:17s} sent {r['sent']:5d}  acknowledged {r['acknowledged']:5d}  stored {r['stored']:5d}  "
                  f"lost {r['lost']}  duplicated {r['duplicated']}  stuck {r['stuck']}  balanced {r['balanced']}  "
                  f"kills {r['worker_kills']}  db restarts {r['db_restarts']}  retries {r['retries']}  "
                  f"events {r['client_events']}", flush=True)
            for error in r["first_errors"]:
                print("  client error:", error)
    finally:
        if private is not None:
            private.close()
    ran = [r for r in results.values() if "skipped" not in r]
    total = {key: sum(r[key] for r in ran) for key in
             ("sent", "acknowledged", "refused", "stored", "duplicated", "lost", "stored_unacknowledged", "stuck",
              "worker_kills", "db_restarts")}
    ok = bool(ran) and all(passed(r) for r in ran)
    print(json.dumps({**total, "ok": ok, "backend": backend, "participants_per_scenario": args.participants,
                      "workers": args.workers, "threads": args.threads, "think_ms": args.think_ms,
                      "load_average_1min": round(os.getloadavg()[0], 2), "scenarios": results}))
    finish(ok, tmp, args.keep_logs)


if __name__ == "__main__":
    main()
