"""`maco-study serve`, `maco-study export`, `maco-study admin ...`."""
from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import click

from .config import DEFAULTS

DB_OPTION = click.option("--db", "db_url", default=DEFAULTS["DATABASE_URL"], show_default=True,
                         envvar="MACO_DATABASE_URL",
                         help="SQLAlchemy URL: sqlite:///study.db or postgresql+psycopg://user:pw@host/db")


@click.command()
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False),
              help="stimulus bundle directory (manifest.json + images/)")
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="worker processes (one per core: the app's Python runs on one core a process)")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64),
              help="application threads per worker (requests waiting for the database each hold one)")
@click.option("--replace", is_flag=True, help="replace a different bundle already imported under this study name")
@click.option("--import-only", is_flag=True, help="upgrade the database and import the bundle, then exit")
@click.option("--access-log", is_flag=True,
              help="log every request to standard output (method, path without its query string, status)")
def serve(bundle: str, db_url: str, host: str, port: int, workers: int, threads: int,
          replace: bool, import_only: bool, access_log: bool) -> None:
    """Upgrade the database, import the bundle (idempotent) and serve the study with Granian."""
    from stimuli.manifest import ManifestError

    from .bundle import BundleConflict, import_bundle
    from .config import ConfigError, condition_targets, load_config, require_secret_key
    from .db import make_engine, make_sessionmaker, upgrade

    try:
        if not import_only:
            require_secret_key(load_config())  # before any work: the workers would refuse to start
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        upgrade(db_url)
        engine = make_engine(db_url)
        with make_sessionmaker(engine)() as session:
            study = import_bundle(session, bundle, replace=replace)
            session.commit()
            click.echo(f"study {study.name!r} imported (bundle fingerprint {study.fingerprint[:12]})")
            if not import_only:  # the workers would refuse to start
                condition_targets(load_config()["TARGET_PER_CONDITION"], json.loads(study.manifest_json)["conditions"])
        engine.dispose()
    except (ManifestError, BundleConflict, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    if import_only:
        return
    os.environ["MACO_DATABASE_URL"] = db_url
    os.environ["MACO_BUNDLE_DIR"] = str(Path(bundle).resolve())
    run_granian(host, port, workers, threads, access_log)


# the access log's line: no query string, so that no Prolific ID (/start?PROLIFIC_PID=...) is copied
# into a log file
ACCESS_LOG_FORMAT = '%(addr)s [%(time)s] "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms'


def run_granian(host: str, port: int, workers: int, threads: int, access_log: bool) -> None:
    """Serve `create_app_when_database_answers()` with Granian until SIGINT or SIGTERM.

    Granian parses HTTP and holds the connections in Rust, so Python runs only the app: the
    server CPU per request this saves over gunicorn is in benchmarks/RESULTS.md (issue 28, the
    server stack). A worker that dies (kill -9, out of memory) is started again, however often
    (StudyServer); every log line, Granian's own and its access log's, goes through
    logs.EscapingFormatter (no request forges one)."""
    from granian.constants import HTTPModes, Interfaces
    from granian.server import Server

    from .logs import granian_log_config

    # Granian starts each request's WSGI environ from a copy of the process environment, so a
    # variable named as a request header (HTTP_*, CONTENT_TYPE, CONTENT_LENGTH; HTTP_PROXY is a
    # common one) would read as if the client had sent it whenever it did not. None is for the server.
    for name in [n for n in os.environ if n.startswith("HTTP_") or n in ("CONTENT_TYPE", "CONTENT_LENGTH")]:
        del os.environ[name]

    class StudyServer(Server):
        """Granian's server without its crash-loop exit for a worker killed by a signal.

        Granian stops the whole server when a worker it started again dies within 5.5 s, meant
        for a worker that cannot load its app. A worker killed (kill -9, the out-of-memory killer)
        twice in a row took the study down that way (benchmarks/fault_server.py worker_kill);
        only a worker that exited by itself (an error, exit status > 0) still counts."""

        def _respawn_workers(self, workers, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
            killed = [idx for idx in workers if (getattr(self.wrks[idx].inner, "exitcode", None) or 0) < 0]
            super()._respawn_workers(workers, *args, **kwargs)
            for idx in killed:
                self.respawned_wrks.pop(idx, None)

    StudyServer("study_server.cli:create_app_when_database_answers", factory=True, address=host, port=port,
                interface=Interfaces.WSGI, http=HTTPModes.http1, websockets=False,
                workers=workers, blocking_threads=threads, respawn_failed_workers=True,
                # Off by default: the answers, errors and participants' progress are in the database
                # and the error log anyway.
                log_access=access_log, log_access_format=ACCESS_LOG_FORMAT,
                log_dictconfig=granian_log_config()).serve()


def create_app_when_database_answers():  # noqa: ANN201 - a Flask app
    """create_app(), retried while the database cannot be reached.

    A worker that fails to load its app makes Granian stop the whole server, so a worker
    started again while PostgreSQL restarts (after a crash, or a kill) would take every other
    worker down with it. Waiting instead keeps the server trying until the database is back."""
    import time

    from sqlalchemy.exc import OperationalError

    from .app import create_app

    delay = 0.1
    while True:
        try:
            return create_app()
        except OperationalError as exc:
            print(f"worker {os.getpid()}: database unreachable, retrying in {delay:.1f} s: "
                  f"{str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(2.0, delay * 2)


@click.command()
@DB_OPTION
@click.option("--out", default="responses.csv", show_default=True, type=click.Path(dir_okay=False),
              help="CSV path; codebook.md and prolific_ids.csv are written beside it")
@click.option("--study", default=None, help="only this study (default: every study in the database)")
@click.option("--timeout-min", default=DEFAULTS["PARTICIPANT_TIMEOUT_MIN"], show_default=True, type=int,
              help="unfinished participants silent this long are exported as timed_out")
@click.option("--codebook", "codebook_path", default=None, type=click.Path(dir_okay=False),
              help="only write the codebook (the export contract) to this file, e.g. docs/export.md")
def export(db_url: str, out: str, study: str | None, timeout_min: int, codebook_path: str | None) -> None:
    """Write responses.csv (one row per answered trial), codebook.md and prolific_ids.csv."""
    if codebook_path is not None:
        from study_protocol.export import codebook_markdown

        Path(codebook_path).write_text(codebook_markdown(), encoding="utf-8")
        return
    from .db import make_engine, make_sessionmaker
    from .export import export as run_export

    engine = make_engine(db_url, read_only=True)  # never waits for (or takes) the write lock
    with make_sessionmaker(engine)() as session:
        summary = run_export(session, Path(out), study, timedelta(minutes=timeout_min))
    engine.dispose()
    click.echo(json.dumps(summary))


@click.group()
def admin() -> None:
    """Administration of the study server."""


@admin.command("set-password")
@DB_OPTION
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def set_password(db_url: str, password_stdin: bool) -> None:
    """Set the /admin password (stored as an argon2 hash in the database)."""
    from .admin import set_password as store
    from .db import make_engine, make_sessionmaker, upgrade

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Admin password", hide_input=True, confirmation_prompt=True)
    if len(password) < 10:
        raise click.ClickException("the password must have at least 10 characters")
    upgrade(db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        store(session, password)
        session.commit()
    click.echo("admin password set")


@click.command()
@DB_OPTION
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="backup file to write")
def backup(db_url: str, out: str) -> None:
    """Copy the database while the server runs: SQLite online backup, or pg_dump's custom format."""
    import shutil
    import sqlite3
    import subprocess

    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or not Path(url.database).is_file():
            raise click.ClickException(f"no SQLite database at {url.database!r}")
        # the online backup API copies a consistent snapshot even while workers write
        with sqlite3.connect(url.database) as source, sqlite3.connect(out) as target:
            source.backup(target)
        source.close()
        target.close()
    elif url.get_backend_name() == "postgresql":
        if shutil.which("pg_dump") is None:
            raise click.ClickException("pg_dump not found: install the PostgreSQL client (apt-get install postgresql-client)")
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        result = subprocess.run(["pg_dump", "--format=custom", "--file", out, plain],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise click.ClickException("pg_dump failed: " + (result.stderr.strip().splitlines() or ["no output"])[-1])
    else:
        raise click.ClickException(f"backup supports sqlite and postgresql, not {url.get_backend_name()}")
    click.echo(f"wrote {out}")
