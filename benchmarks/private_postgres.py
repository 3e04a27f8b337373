"""A database the fault benchmark may restart: its own throw-away PostgreSQL server, or an
existing one with a restart command."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from study_server.client import free_port


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
