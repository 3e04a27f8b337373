"""Engine creation and schema upgrades.

SQLite (the embedded default) runs in WAL mode, and every transaction starts
with BEGIN IMMEDIATE: the write lock is taken up front, so a read-then-write
transaction (condition assignment, answer storage) is serialized across
threads and gunicorn workers instead of failing half-way with "database is
locked". Within a process, writers first queue on a threading lock, so at
most one thread per process polls SQLite's busy handler (which sleeps up to
100 ms between tries and makes latency tails long and unfair). Pure reads
(images, the current trial) use a second, read-only engine whose
transactions begin DEFERRED, so they never queue for the write lock.
PostgreSQL gets the same guarantees from row locks (SELECT ... FOR UPDATE on
the study or participant row).
"""
from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_SQLITE_WRITERS = threading.Lock()  # one SQLite writer per process at a time
_HOLDS_WRITE_LOCK = "maco_holds_write_lock"


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for `url`; on SQLite `read_only=True` gives one whose transactions
    begin DEFERRED (plain reads that never wait for the write lock)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            if parsed.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk before we answer
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:  # noqa: ANN001
            if read_only:
                connection.exec_driver_sql("BEGIN")
                return
            if not connection.info.get(_HOLDS_WRITE_LOCK):
                if not _SQLITE_WRITERS.acquire(timeout=60):
                    raise TimeoutError("no SQLite write slot within 60 s")
                connection.info[_HOLDS_WRITE_LOCK] = True
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _release_write_lock(connection.info)
                raise

        @event.listens_for(engine, "checkin")
        def _sqlite_checkin(_dbapi_connection, record) -> None:  # noqa: ANN001
            # the transaction is over once the connection is back in the pool
            _release_write_lock(record.info)

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _release_write_lock(info: dict) -> None:
    if info.pop(_HOLDS_WRITE_LOCK, False):
        _SQLITE_WRITERS.release()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str):  # noqa: ANN201 - alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (creates it when empty)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
