"""Scale-out benchmark: several `maco-study serve` instances (hosts) on one PostgreSQL, one killed mid-run.

Starts a throw-away PostgreSQL server (private_postgres.py; `--db URL` uses an existing one), then
`--instances` servers on their own ports against that one database, the first before the others
(it upgrades the schema and imports the bundle; the others find both done). The participants
reach them through a load balancer (fault_client.BalancedTransport): each request goes to the
next live instance in turn, without stickiness, so one participant's consent, trials, images and
answers land on every instance; an instance that stops answering is taken out. Once
`--kill-at` of the expected answers are stored, one instance dies at once (SIGKILL of its
server's main process and workers, as a host that loses power); its participants' requests fail,
study.js's retry rule sends them again, and the balancer gives them to the instances left.
Afterwards every participant comes back with the same Prolific link (as in fault_server.py),
and the database is checked:

- every acknowledged answer is stored exactly once, as sent (`lost`, `duplicated`), and no
  answer is stored that was never acknowledged;
- every participant completes (`stuck`) and the conditions stay balanced (completed
  participants per condition differ by at most one);
- every participant's done page, opened on each surviving instance, shows the completion code
  (`codes_shown`); the pace rules (study_server/speed.py) are off, since these participants
  answer faster than people and their review code is tested elsewhere.

    python benchmarks/scaleout_server.py
    python benchmarks/scaleout_server.py --instances 3 --participants 120

Exit status 1 when an invariant fails. Last line: one JSON object with `ok`, `lost`,
`duplicated`, `stuck`, `balanced`, `codes_shown`, `requests_per_instance` and the kill.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fault_client import ClientFaults, run_clients, run_participant
from fault_server import participant_limits, trials_per_participant
from fault_verify import server_exceptions, stored_data, verify
from private_postgres import PrivatePostgres
from study_client import build_bundle, finish, postgres_schema_url, start_server

from study_server.client import RequestsTransport, start_path

COMPLETION_CODE = "SCALE0UT"
PACE_RULES_OFF = {"MACO_COMPLETION_CODE": COMPLETION_CODE, "MACO_REVIEW_CODE": "SCALE-REVIEW",
                  "MACO_MIN_ANSWER_MS": "0", "MACO_MIN_SESSION_S": "0", "MACO_MAX_CLOCK_GAP_MS": "86400000"}


def kill_instance(pid: int) -> None:
    """SIGKILL of a server's main process, then of its workers (the master first: it cannot respawn them)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_when(db_url: str, answers: int, pid: int, stop: threading.Event, done: dict[str, Any]) -> None:
    """Kill the instance of master `pid` once `answers` answers are stored (or never, on `stop`)."""
    from sqlalchemy import func, select

    from study_server.db import make_engine
    from study_server.models import Trial

    engine = make_engine(db_url)
    count = select(func.count()).select_from(Trial).where(Trial.answer_id.is_not(None))
    try:
        while not stop.wait(0.2):
            with engine.connect() as connection:
                stored = connection.scalar(count)
            if stored >= answers:
                kill_instance(pid)
                done.update(answers_stored_at_kill=stored, killed_at_s=time.perf_counter())
                return
    finally:
        engine.dispose()


def codes_shown(urls: list[str], pids: list[str]) -> int:
    """How many (participant, instance) pairs see the completion code on the done page."""
    def shown(pid_url: tuple[str, str]) -> bool:
        pid, url = pid_url
        page = RequestsTransport(url).request("GET", start_path(pid, "fault", "codes"), follow_redirects=True)
        return COMPLETION_CODE in page.text
    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(pool.map(shown, [(pid, url) for pid in pids for url in urls]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2, help="maco-study serve instances (at least 2)")
    parser.add_argument("--participants", type=int, default=60)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: a private PostgreSQL server)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes per instance")
    parser.add_argument("--threads", type=int, default=8, help="application threads per worker")
    parser.add_argument("--think-ms", type=float, default=300,
                        help="mean time on a trial; below 1000 the per-participant rate limits are raised to match")
    parser.add_argument("--ramp-s", type=float, default=3, help="participants arrive over this many seconds")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of the expected answers stored when one dies")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--give-up-s", type=float, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.instances < 2:
        parser.error("--instances: at least 2 (one is killed)")

    tmp = Path(tempfile.mkdtemp(prefix="maco-scaleout-"))
    bundle = build_bundle(tmp / "bundle")
    private = PrivatePostgres() if args.db is None else None
    db_url, drop = postgres_schema_url(private.url if private is not None else args.db)
    env = {**participant_limits(args.think_ms), **PACE_RULES_OFF}
    servers = []
    kill: dict[str, Any] = {}
    try:
        for k in range(args.instances):  # the first upgrades and imports; the others find it done
            servers.append(start_server(bundle, db_url, args.workers, args.threads, log=tmp / f"server-{k}.log",
                                        env=env))
        urls = tuple(s.url for s in servers)
        expected = args.participants * trials_per_participant(bundle)
        victim = servers[-1]
        stop = threading.Event()
        killer = threading.Thread(target=kill_when, args=(db_url, int(args.kill_at * expected), victim.process.pid,
                                                          stop, kill), daemon=True)
        t0 = time.perf_counter()
        killer.start()
        seeds = list(range(args.seed * 100_000, args.seed * 100_000 + args.participants))
        results = run_clients(urls, seeds, args.think_ms / 1000, args.ramp_s, ClientFaults(), args.give_up_s,
                              args.client_processes)
        wall = time.perf_counter() - t0
        stop.set()
        killer.join()
        if "killed_at_s" in kill:
            kill["killed_at_s"] = round(kill["killed_at_s"] - t0, 1)
        survivors = tuple(s.url for s in servers if s.process.poll() is None)
        with ThreadPoolExecutor(max_workers=16) as pool:  # everyone comes back with the same link
            resumed = list(pool.map(lambda ir: run_participant(survivors, 1_000_000 + ir[0], args.think_ms / 1000,
                                                               0.0, ClientFaults(), args.give_up_s, ir[1]["pid"],
                                                               ir[1]["pending"]), enumerate(results)))
        shown = codes_shown(list(survivors), [r["pid"] for r in results])
    finally:
        for server in servers:
            server.stop()
    participants_db, answers_db = stored_data(db_url)
    drop()
    if private is not None:
        private.close()
    counts = verify(results + resumed, participants_db, answers_db)
    per_instance: dict[str, int] = {}
    for r in results:
        for url, n in r["served_by"].items():
            per_instance[url] = per_instance.get(url, 0) + n
    stuck = sum(not r["completed"] for r in resumed)
    ok = (counts["lost"] == 0 and counts["duplicated"] == 0 and counts["stored_unacknowledged"] == 0
          and stuck == 0 and counts["balanced"] and "killed_at_s" in kill
          and shown == len(results) * len(survivors) and all(per_instance.get(u, 0) > 0 for u in urls))
    errors = [e for r in results + resumed for e in r["errors"]]
    print(f"instances {args.instances}  participants {args.participants}  stored {counts['stored']}  "
          f"lost {counts['lost']}  duplicated {counts['duplicated']}  stuck {stuck}  balanced {counts['balanced']}  "
          f"codes shown {shown}/{len(results) * len(survivors)}  killed {kill}", flush=True)
    print(json.dumps({
        "ok": ok, **counts, "stuck": stuck, "codes_shown": shown, "codes_expected": len(results) * len(survivors),
        "instances": args.instances, "participants": args.participants, "kill": kill,
        "requests_per_instance": {f"instance-{k}": per_instance.get(u, 0) for k, u in enumerate(urls)},
        "client_errors": len(errors), "first_errors": errors[:3], "wall_s": round(wall, 1),
        "server_exceptions": {f"instance-{k}": server_exceptions(tmp / f"server-{k}.log")
                              for k in range(args.instances)},
        "workers": args.workers, "threads": args.threads, "think_ms": args.think_ms,
        "load_average_1min": round(os.getloadavg()[0], 2)}))
    finish(ok, tmp)


if __name__ == "__main__":
    main()
