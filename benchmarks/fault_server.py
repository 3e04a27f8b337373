"""Fault benchmark of the study server: what survives killed workers, a database restart
and clients that lose replies, reload and answer from two tabs.

Each scenario starts `maco-study serve` (gunicorn, several workers) on a fresh database,
runs simulated participants that behave as study.js does (every request retried with
back-off until the server answers; an answer kept until it is acknowledged, also across a
reload), injects its faults while the answers come in, then checks the database:

- every answer that got a 2xx is stored exactly once, as it was sent (`lost`, `duplicated`);
- no answer is stored that was never acknowledged (`stored_unacknowledged`);
- every participant can come back with the same Prolific link and finish (`stuck`): a
  fault-free client resumes each one after the load;
- the conditions stay balanced (completed participants per condition differ by at most one).

Scenarios (all by default; `--scenarios` picks some):

- `worker_kill`: kill -9 of a random gunicorn worker at several points of the load;
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
import glob
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from http.client import HTTPConnection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from study_client import SimulatedParticipant, build_bundle, free_port, postgres_schema_url, start_server

FASTEST_PERSON_THINK_MS = 1000  # about one answer a second: what study_server/limits.py allows for


def trials_per_participant(bundle: Path) -> int:
    """The fewest answers a participant gives: one practice round, the main and the catch trials."""
    from stimuli.manifest import load_manifest

    m = load_manifest(bundle)
    return (len(m.practice_trials) + (m.protocol.main_trials_per_participant or len(m.query_pairs))
            + len(m.catch_trials))


def participant_limits(think_ms: float) -> dict[str, str]:
    """Server environment for participants `FASTEST_PERSON_THINK_MS / think_ms` times faster than
    the fastest person: the per-participant rate limits scaled by that factor (none when >= 1).
    (The per-address /start limit is raised by study_client.start_server: every client is 127.0.0.1.)"""
    from study_server.config import DEFAULTS

    factor = math.ceil(FASTEST_PERSON_THINK_MS / think_ms) if think_ms > 0 else 1000
    if factor <= 1:
        return {}
    return {f"MACO_{key}": re.sub(r"\d+", lambda m: str(int(m.group()) * factor), DEFAULTS[key])
            for key in ("RATE_LIMIT_PARTICIPANT", "RATE_LIMIT_IMAGES")}


@dataclass(frozen=True)
class ClientFaults:
    """How often a simulated participant's browser misbehaves."""

    lose_reply: float = 0.0  # per POST: the request reaches the server, its reply never comes back
    reload: float = 0.0  # per page or trial: the participant reloads (the Prolific link again, or /study)
    two_tabs: float = 0.0  # share of participants with a second tab that posts every answer too
    tab_conflict: float = 0.2  # of those answers: the second tab sends its own, different answer


@dataclass(frozen=True)
class Scenario:
    worker_kills: int = 0
    db_restarts: int = 0
    kill_while_db_down: bool = False  # a worker killed (and respawned) while the database is stopped
    clients: ClientFaults = field(default_factory=ClientFaults)


FAULTY_CLIENTS = ClientFaults(lose_reply=0.15, reload=0.03, two_tabs=0.3)
SCENARIOS: dict[str, Scenario] = {
    "worker_kill": Scenario(worker_kills=5),
    "postgres_restart": Scenario(db_restarts=1),
    "client_faults": Scenario(clients=FAULTY_CLIENTS),
    "combined": Scenario(worker_kills=3, db_restarts=1, kill_while_db_down=True, clients=FAULTY_CLIENTS),
}


# ---------------------------------------------------------------------------
# the clients
class FaultyParticipant(SimulatedParticipant):
    """A participant whose browser behaves as study.js does, with `faults` on top.

    Follows the pages the server sends it to, so it finds its way back after a reload or a
    step taken already (its first try went through, the reply was lost). Keeps a ledger of
    every answer it sent and what the server said."""

    def __init__(self, base_url: str, seed: int, think_s: float, faults: ClientFaults, give_up_s: float,
                 pid: str | None = None, pending: dict[str, Any] | None = None):
        super().__init__(base_url, seed, think_s, tries=None, retry_server_errors=True, give_up_s=give_up_s,
                         study_id="fault", pid=pid)
        self.faults = faults
        self.tab: requests.Session | None = None
        if self.rng.random() < faults.two_tabs:
            self.tab = requests.Session()
            self.tab.cookies = self.http.cookies  # the same browser: one cookie jar, two pages
        self.ledger: dict[str, dict[str, Any]] = {}  # answer_id -> what was sent and what came back
        self.pending = pending  # study.js's localStorage: the answer not yet acknowledged
        self.events: Counter[str] = Counter()
        self.completed = False

    # -- transport with lost replies
    def lose_reply(self, path: str, body: dict[str, Any], http: requests.Session | None) -> requests.Response | None:
        """Send `body`, then lose the reply: half the time the connection is dropped right after
        sending (the server may or may not process it), else the reply is read and discarded."""
        self.events["lost_replies"] += 1
        if self.rng.random() < 0.5:
            parts = urlsplit(self.base_url)
            cookies = "; ".join(f"{c.name}={c.value}" for c in (http or self.http).cookies)
            connection = HTTPConnection(parts.hostname, parts.port, timeout=5)
            try:
                connection.request("POST", path, body=json.dumps(body),
                                   headers={"Content-Type": "application/json", "Cookie": cookies})
            except OSError:
                pass
            finally:
                connection.close()
            return None
        try:
            return (http or self.http).post(self.base_url + path, json=body, timeout=30, allow_redirects=False)
        except requests.RequestException:
            return None

    def post(self, path: str, body: dict[str, Any], http: requests.Session | None = None) -> requests.Response | None:
        if self.rng.random() < self.faults.lose_reply:
            self.lose_reply(path, body, http)
            time.sleep(0.25)  # study.js's first back-off before it sends again
        return self.request("POST", path, http=http, json=body)

    def page(self, path: str, http: requests.Session | None = None) -> str | None:
        """Open a page as the browser does (following redirects): its data-page name."""
        response = self.request("GET", path, http=http, allow_redirects=True)
        if response is None:
            return None
        marker = 'data-page="'
        at = response.text.find(marker)
        return "" if at < 0 else response.text[at + len(marker):response.text.index('"', at + len(marker))]

    def reload(self) -> str | None:
        self.events["reloads"] += 1
        return self.page(self.start_path if self.rng.random() < 0.5 else "/study")

    # -- the session
    def run(self, ramp_s: float) -> None:
        time.sleep(self.rng.uniform(0, ramp_s))
        if self.tab is not None:  # both tabs open the Prolific link at once
            other = threading.Thread(target=self.page, args=(self.start_path, self.tab))
            other.start()
        page = self.page(self.start_path)
        if self.tab is not None:
            other.join()
        steps = {"consent": ("/api/consent", {"agree": True}),
                 "device": ("/api/device", {"window_width": 1280, "window_height": 800, "is_phone": False}),
                 "instructions": ("/api/instructions", {}),
                 "comment": ("/api/complete", {"comment": ""})}
        for _ in range(500):  # a bound, should a server send it in circles
            if page is None or page == "done":
                break
            if self.rng.random() < self.faults.reload:
                page = self.reload()
            elif page == "trials":
                page = self.trials()
            elif page in steps:
                page = self.step(*steps[page])
            else:
                self.errors.append(f"the server showed an unexpected page {page!r}")
                return
        self.completed = page == "done"

    def step(self, path: str, body: dict[str, Any]) -> str | None:
        response = self.post(path, body)
        if response is None:
            return None
        if response.status_code == 200:
            return self.page(response.json()["next"])
        if response.status_code == 409:
            # "this step is not available now": the first try was stored and its reply lost (or the
            # other tab took the step); study.js then opens /study, the page of the current stage
            self.events["step_already_taken"] += 1
            return self.page("/study")
        self.errors.append(f"POST {path}: HTTP {response.status_code} {response.text[:200]}")
        return None

    def trials(self) -> str | None:
        if self.pending is not None:  # what study.js does first on a trials page
            self.send_answer(self.pending)
        while True:
            if self.rng.random() < self.faults.reload:
                return self.reload()
            trial = self.show_trial()
            if trial is None:
                return self.page("/study")
            reply = self.send_answer(self.answer_body(trial))
            if reply is None:
                return None
            if reply.get("next") == "page":
                return self.page("/study")

    def send_answer(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Post an answer until the server acknowledges or refuses it; a second tab posts it too."""
        self.pending = body
        second = None
        if self.tab is not None:
            other = body
            if self.rng.random() < self.faults.tab_conflict:  # the other tab answers the same trial itself
                other = {**body, "answer_id": str(uuid.uuid4()), "chosen_side": self.rng.choice(["left", "right"])}
            second = threading.Thread(target=self.post_answer, args=(other, self.tab))
            second.start()
        response = self.post_answer(body)
        if second is not None:
            second.join()
        if response is None:
            return None  # gave up: the answer stays pending, as in localStorage
        self.pending = None  # acknowledged, or refused for good (study.js then shows the current trial)
        return response.json() if response.status_code == 200 else {"next": "trial"}

    def post_answer(self, body: dict[str, Any], http: requests.Session | None = None) -> requests.Response | None:
        entry = self.ledger.setdefault(body["answer_id"], {
            "answer_id": body["answer_id"], "pid": self.pid, "position": body["position"],
            "chosen_side": body["chosen_side"], "confidence": body["confidence"], "acked": False, "refused": 0})
        if self.rng.random() < self.faults.lose_reply:
            lost = self.lose_reply("/api/answer", body, http)
            entry["acked"] |= lost is not None and lost.status_code == 200  # the server did say so
            time.sleep(0.25)
            if http is None and self.rng.random() < 0.3:
                self.reload()  # the participant reloads; study.js sends the kept answer again
        response = self.request("POST", "/api/answer", http=http, json=body)
        if response is not None:
            if response.status_code == 200:
                entry["acked"] = True
            else:
                entry["refused"] = response.status_code
        return response

    def result(self) -> dict[str, Any]:
        return {"pid": self.pid, "completed": self.completed, "answers": list(self.ledger.values()),
                "events": dict(self.events), "retries": dict(self.retries), "errors": self.errors,
                "requests": sum(len(v) for v in self.latencies.values()), "pending": self.pending}


def run_participant(base_url: str, seed: int, think_s: float, ramp_s: float, faults: ClientFaults,
                    give_up_s: float, pid: str | None = None, pending: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    participant = FaultyParticipant(base_url, seed, think_s, faults, give_up_s, pid, pending)
    try:
        participant.run(ramp_s)
    except Exception as exc:  # noqa: BLE001 - reported, and the participant is resumed afterwards
        participant.errors.append(f"client crashed: {type(exc).__name__}: {exc}")
    return participant.result()


def run_client_process(base_url: str, seeds: list[int], think_s: float, ramp_s: float, faults: ClientFaults,
                       give_up_s: float) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        return list(pool.map(lambda s: run_participant(base_url, s, think_s, ramp_s, faults, give_up_s), seeds))


def run_clients(base_url: str, seeds: list[int], think_s: float, ramp_s: float, faults: ClientFaults,
                give_up_s: float, processes: int) -> list[dict[str, Any]]:
    """All participants at once, in `processes` client processes (0: threads of this one)."""
    if processes <= 0:
        return run_client_process(base_url, seeds, think_s, ramp_s, faults, give_up_s)
    chunks = [seeds[i::processes] for i in range(processes) if seeds[i::processes]]
    with ProcessPoolExecutor(max_workers=len(chunks)) as pool:
        return [r for chunk in pool.map(run_client_process, [base_url] * len(chunks), chunks,
                                        [think_s] * len(chunks), [ramp_s] * len(chunks),
                                        [faults] * len(chunks), [give_up_s] * len(chunks)) for r in chunk]


# ---------------------------------------------------------------------------
# the faults
def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn master's children (its workers), from /proc."""
    children = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            children.append(int(stat.split("/")[2]))
    return children


class FaultInjector(threading.Thread):
    """Injects the scenario's faults as the stored answers pass milestones of the expected total,
    so they land in the middle of the load whatever the machine's speed."""

    def __init__(self, scenario: Scenario, master_pid: int, db_url: str, expected_answers: int,
                 restart_db: Callable[..., float] | None, seed: int = 0):
        super().__init__(daemon=True)
        self.master_pid, self.db_url, self.expected = master_pid, db_url, expected_answers
        self.restart_db, self.kill_while_db_down = restart_db, scenario.kill_while_db_down
        self.rng = random.Random(seed)
        kills = [(0.1 + 0.7 * (k + 0.5) / scenario.worker_kills, "kill") for k in range(scenario.worker_kills)]
        restarts = [((k + 1) / (scenario.db_restarts + 1), "restart") for k in range(scenario.db_restarts)]
        self.plan = sorted(kills + restarts)
        self.done: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def answered(self, engine) -> int | None:  # noqa: ANN001
        from sqlalchemy import text

        try:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM trials WHERE answer_id IS NOT NULL")).scalar()
        except Exception:  # noqa: BLE001 - the database is restarting: ask again
            return None

    def run(self) -> None:
        from study_server.db import make_engine

        engine = make_engine(self.db_url, read_only=True)
        plan = list(self.plan)
        while plan and not self.stop.wait(0.1):
            answered = self.answered(engine)
            if answered is None or answered < plan[0][0] * self.expected:
                continue
            _, kind = plan.pop(0)
            if kind == "kill":
                victim = self.kill_worker()
                if victim is None:
                    plan.insert(0, (0, kind))  # all respawning: try again in a moment
                    continue
                self.done.append({"fault": "worker_kill", "answers_stored": answered, "pid": victim})
            else:
                victims: list[int | None] = []
                downtime = self.restart_db(lambda: victims.append(self.kill_worker())) if self.kill_while_db_down \
                    else self.restart_db()
                self.done.append({"fault": "db_restart", "answers_stored": answered, "seconds": round(downtime, 2)})
                if victims and victims[0] is not None:
                    self.done.append({"fault": "worker_kill", "answers_stored": answered, "pid": victims[0],
                                      "while_db_down": True})
        engine.dispose()

    def kill_worker(self) -> int | None:
        """kill -9 of a random gunicorn worker; its pid (None when there is none to kill)."""
        workers = worker_pids(self.master_pid)
        if not workers:
            return None
        victim = self.rng.choice(workers)
        os.kill(victim, signal.SIGKILL)
        return victim


class PrivatePostgres:
    """A throw-away PostgreSQL server (initdb in a temporary folder, its own port), so the
    benchmark can restart it mid-load without disturbing anyone else's database."""

    def __init__(self) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        found = shutil.which("pg_ctl")
        self.bindir = Path(found).parent if found else Path(bindirs[-1]) if bindirs else None
        if self.bindir is None or not (self.bindir / "initdb").exists():
            raise RuntimeError("initdb/pg_ctl not found: install PostgreSQL (apt-get install postgresql) "
                               "or pass --db URL --pg-restart-cmd CMD")
        self.folder = Path(tempfile.mkdtemp(prefix="maco-fault-pg-"))
        self.run_as = []
        if os.geteuid() == 0:  # initdb refuses root: the server runs as the postgres user
            self.run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.pg("initdb", "-D", str(self.data), "-U", "maco", "--auth=trust", "-E", "UTF8")
        self.start()
        self.url = f"postgresql+psycopg://maco@127.0.0.1:{self.port}/postgres"

    def pg(self, program: str, *args: str) -> None:
        # output to a file, never a pipe: the postmaster pg_ctl starts inherits it and would keep
        # a pipe open for ever
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run([*self.run_as, str(self.bindir / program), *args], stdout=output,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
            if result.returncode != 0:
                output.seek(0)
                raise RuntimeError(f"{program} failed: " + (output.read().strip().splitlines() or ["no output"])[-1])

    def start(self) -> None:
        self.pg("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-o",
                f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        """pg_ctl stop -m fast: every session ended, open transactions rolled back."""
        self.pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, while_down: Callable[[], None] | None = None) -> float:
        """Stop, run `while_down` (e.g. kill a worker), start again; seconds the database was down."""
        t0 = time.perf_counter()
        self.stop()
        if while_down is not None:
            while_down()
            time.sleep(3)  # the respawned worker boots (or tries to) against a stopped database
        self.start()
        return time.perf_counter() - t0

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def shell_restart(command: str) -> Callable[..., float]:
    """Restart an existing server with `command`; `while_down` runs half a second into the
    restart (pg_ctlcluster's fast restart takes a few seconds, so it lands while the database is down)."""
    def restart(while_down: Callable[[], None] | None = None) -> float:
        t0 = time.perf_counter()
        process = subprocess.Popen(command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        if while_down is not None:
            time.sleep(0.5)
            while_down()
        if process.wait() != 0:
            raise RuntimeError(f"{command!r} failed with status {process.returncode}")
        return time.perf_counter() - t0
    return restart


# ---------------------------------------------------------------------------
# the check
def stored_data(db_url: str) -> tuple[list[tuple], list[tuple]]:
    """(prolific_pid, condition, status) of every participant; (answer_id, prolific_pid,
    position, chosen_side, confidence) of every stored answer."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from study_server.db import make_engine
    from study_server.models import Participant, Trial

    engine = make_engine(db_url)
    with Session(engine) as session:
        participants = session.execute(select(Participant.prolific_pid, Participant.condition,
                                              Participant.status)).all()
        answers = session.execute(select(Trial.answer_id, Participant.prolific_pid, Trial.position,
                                         Trial.chosen_side, Trial.confidence)
                                  .join(Participant).where(Trial.answer_id.is_not(None))).all()
    engine.dispose()
    return [tuple(p) for p in participants], [tuple(a) for a in answers]


def verify(results: list[dict[str, Any]], participants: list[tuple], answers: list[tuple]) -> dict[str, Any]:
    """The invariants, counted: see the module docstring."""
    ledger = [entry for r in results for entry in r["answers"]]
    acked = {e["answer_id"]: e for e in ledger if e["acked"]}
    stored_ids = Counter(a[0] for a in answers)
    stored = {a[0]: a[1:] for a in answers}
    lost = sum(stored.get(i) != (e["pid"], e["position"], e["chosen_side"], e["confidence"])
               for i, e in acked.items())
    acked_per_trial = Counter((e["pid"], e["position"]) for e in acked.values())
    duplicated = (sum(n - 1 for n in stored_ids.values() if n > 1)
                  + sum(n - 1 for n in acked_per_trial.values() if n > 1))
    completed = Counter(condition for _, condition, status in participants if status == "completed")
    return {
        "sent": len({e["answer_id"] for e in ledger}),
        "acknowledged": len(acked),
        "refused": sum(1 for e in ledger if not e["acked"] and e["refused"]),
        "stored": len(answers),
        "duplicated": duplicated,
        "lost": lost,
        "stored_unacknowledged": sum(1 for i in stored if i not in acked),
        "acknowledged_then_refused": sum(1 for e in acked.values() if e["refused"]),
        "conditions": dict(sorted(completed.items())),
        "balanced": not completed or max(completed.values()) - min(completed.values()) <= 1,
    }


def run_scenario(name: str, scenario: Scenario, bundle: Path, db_url: str, participants: int, think_s: float,
                 ramp_s: float, workers: int, threads: int, processes: int, give_up_s: float,
                 restart_db: Callable[..., float] | None, log_dir: Path, seed: int = 0) -> dict[str, Any]:
    """One scenario on a fresh database: load with faults, resume everyone, verify."""
    log = log_dir / f"server-{name}.log"
    limits = participant_limits(think_s * 1000)
    server, base_url = start_server(bundle, db_url, workers, threads, log=log, env=limits)
    exits = []
    try:
        injector = FaultInjector(scenario, server.pid, db_url, participants * trials_per_participant(bundle),
                                 restart_db, seed)
        injector.start()
        seeds = list(range(seed * 100_000, seed * 100_000 + participants))
        t0 = time.perf_counter()
        results = run_clients(base_url, seeds, think_s, ramp_s, scenario.clients, give_up_s, processes)
        wall = time.perf_counter() - t0
        injector.stop.set()
        injector.join()
        if server.poll() is not None:  # the whole server went down: say so, and bring it back to resume
            exits.append(server.returncode)
            server, base_url = start_server(bundle, db_url, workers, threads, log=log, env=limits)
        # everyone comes back with the same Prolific link: the unfinished finish, the finished see "done"
        # (with what the browser kept in localStorage)
        with ThreadPoolExecutor(max_workers=16) as pool:
            resumed = list(pool.map(lambda ir: run_participant(base_url, 1_000_000 + ir[0], think_s, 0.0, ClientFaults(),
                                                               give_up_s, ir[1]["pid"], ir[1]["pending"]),
                                    enumerate(results)))
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)
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
        # a worker booting while the database is down waits for it (study_server.cli) instead of halting gunicorn
        "worker_boot_waits": log.read_text(errors="replace").count("database unreachable, retrying"),
    }


def server_exceptions(log: Path) -> dict[str, int]:
    """The exceptions the server logged (the last line of each traceback), counted: during a
    database restart they are expected (clients see a 500 and retry), otherwise they are bugs."""
    found: Counter[str] = Counter()
    in_traceback = False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line and not line.startswith((" ", "\t", "During handling", "The above")):
            found[line[:160]] += 1
            in_traceback = False
    return dict(found.most_common(8))


def passed(result: dict[str, Any]) -> bool:
    return (result["lost"] == 0 and result["duplicated"] == 0 and result["stuck"] == 0 and result["balanced"]
            and result["stored_unacknowledged"] == 0 and not result["server_exits"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=40, help="participants per scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of " + ", ".join(SCENARIOS))
    parser.add_argument("--db", default=None,
                        help="'sqlite', or a PostgreSQL URL (default: a private PostgreSQL server)")
    parser.add_argument("--pg-restart-cmd", default=None, help="how to restart the server of --db URL")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
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
    if ok and not args.keep_logs:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"server logs kept in {tmp}", file=sys.stderr)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
