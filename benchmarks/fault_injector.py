"""The fault benchmark's server faults: kill -9 of server workers and database restarts, injected
as the stored answers pass milestones of the expected total."""
from __future__ import annotations

import glob
import os
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fault_client import ClientFaults


@dataclass(frozen=True)
class Scenario:
    worker_kills: int = 0
    db_restarts: int = 0
    kill_while_db_down: bool = False  # a worker killed (and respawned) while the database is stopped
    clients: ClientFaults = field(default_factory=ClientFaults)


def worker_pids(master_pid: int) -> list[int]:
    """The server's main process's children (its workers), from /proc."""
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
                kill = (lambda: victims.append(self.kill_worker())) if self.kill_while_db_down else None  # noqa: B023
                downtime = self.restart_db(kill)
                self.done.append({"fault": "db_restart", "answers_stored": answered, "seconds": round(downtime, 2)})
                if victims and victims[0] is not None:
                    self.done.append({"fault": "worker_kill", "answers_stored": answered, "pid": victims[0],
                                      "while_db_down": True})
        engine.dispose()

    def kill_worker(self) -> int | None:
        """kill -9 of a random server worker; its pid (None when there is none to kill)."""
        workers = worker_pids(self.master_pid)
        if not workers:
            return None
        victim = self.rng.choice(workers)
        os.kill(victim, signal.SIGKILL)
        return victim
