"""`maco-study serve` in a subprocess on a free port, returned once it answers (demo and benchmarks)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

START_TIMEOUT_S = 120


class ServerStartError(RuntimeError):
    """The server exited or did not answer at start; the message ends with its log's last lines."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def answers(url: str) -> bool:
    """Whether an HTTP server answers at url (any status)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


class ServerProcess:
    """`maco-study serve --bundle B --db URL` (Granian) on host:port (a free one by default).

    `env` is added to this process's environment; the server's output is appended to `log`
    (discarded when None), with a line per request if `access_log`. `process` is Granian's main
    process (its children are the workers).
    Stops on stop() or on leaving a with block."""

    def __init__(self, bundle: Path | str, db_url: str, *, host: str = "127.0.0.1", port: int | None = None,
                 workers: int = 1, threads: int = 8, env: dict[str, str] | None = None,
                 log: Path | None = None,
                 timeout_s: float = START_TIMEOUT_S, access_log: bool = False):
        port = free_port(host) if port is None else port
        self.url = f"http://{host}:{port}"
        self.log_path = log
        self._log: IO[bytes] | int = subprocess.DEVNULL if log is None else Path(log).open("ab")
        command = [sys.executable, "-c", "from maco_study import main; main()", "serve", "--bundle", str(bundle),
                   "--db", db_url, "--host", host, "--port", str(port), "--workers", str(workers),
                   "--threads", str(threads)] + (["--access-log"] if access_log else [])
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})
        self._wait_until_up(timeout_s)

    def _wait_until_up(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerStartError(f"maco-study serve exited with status {self.process.returncode}"
                                       + self._log_tail())
            if answers(self.url + "/"):
                return
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(f"maco-study serve did not answer within {timeout_s:g} s" + self._log_tail())

    def _log_tail(self) -> str:
        if self.log_path is None:
            return ""
        tail = Path(self.log_path).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        return ":\n  " + "\n  ".join(tail) + f"\n(full log: {self.log_path})"

    def wait(self) -> None:
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not isinstance(self._log, int):
            self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
