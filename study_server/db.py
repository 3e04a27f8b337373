"""Engine creation and schema upgrades.

SQLite (the embedded default) runs in WAL mode, and every transaction starts
with BEGIN IMMEDIATE: the write lock is taken up front, so a read-then-write
transaction (condition assignment, answer storage) is serialized across
threads and worker processes instead of failing half-way with "database is
locked". Writers queue before that: on a threading lock within the process,
then on an exclusive flock() of `<database>-writers.lock` across processes,
where the kernel wakes the next writer the moment the last one ends. Without
that queue, writers of other workers would wait in SQLite's busy handler,
which sleeps up to 100 ms between tries (writes p99 of 0.3-1 s under load).
Every holder is one of our transactions, which ends or fails within SQLite's
own busy time-out, and the kernel drops the lock of a process that dies.
Pure reads (images, the current trial) use a second, read-only engine whose
transactions begin DEFERRED, so they never queue for the write lock.
PostgreSQL gets the same guarantees from row locks (SELECT ... FOR UPDATE on
the study or participant row).
"""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_SQLITE_WRITERS = threading.Lock()  # one SQLite writer per process at a time
_HOLDS_WRITE_LOCK = "maco_holds_write_lock"


def make_engine(url: str, read_only: bool = False, relaxed: bool = False) -> Engine:
    """An engine for `url`; on SQLite `read_only=True` gives one whose transactions
    begin DEFERRED (plain reads that never wait for the write lock), and `relaxed=True` one
    whose commits do not wait for the disk (synchronous=NORMAL: they survive a crash of the
    server, not one of the machine; the next ordinary commit makes them durable too), for
    records cheaper to lose than to wait for (the images sent, study_server/speed.py)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # a connection per thread and then some (serve allows 64 threads; an image check opens a
        # second, read-only one): threads queue for the write lock, never for a pooled connection,
        # whose 30 s pool time-out would turn a long queue into a 500
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=8, max_overflow=120)
        file_backed = parsed.database not in (None, "", ":memory:")
        writers_queue = _WritersQueue(f"{parsed.database}-writers.lock") if file_backed and not read_only else None

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            if file_backed:
                cursor.execute("PRAGMA journal_mode=WAL")
            # a commit is on disk before we answer (relaxed: only in the WAL, 3 ms less per commit here)
            cursor.execute(f"PRAGMA synchronous={'NORMAL' if relaxed else 'FULL'}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:  # noqa: ANN001
            if read_only:
                connection.exec_driver_sql("BEGIN")
                return
            if _HOLDS_WRITE_LOCK not in connection.info:
                if not _SQLITE_WRITERS.acquire(timeout=60):
                    raise TimeoutError("no SQLite write slot within 60 s")
                try:
                    if writers_queue is not None:
                        writers_queue.acquire()
                except BaseException:
                    _SQLITE_WRITERS.release()
                    raise
                connection.info[_HOLDS_WRITE_LOCK] = writers_queue
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


class _WritersQueue:
    """The cross-process queue of SQLite writers: an exclusive flock() on a file beside the
    database, opened once per process (a forked worker opens its own, so workers exclude
    each other); only the thread holding _SQLITE_WRITERS takes it."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._pid: int | None = None

    def acquire(self) -> None:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks in the kernel, without holding the GIL

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def _release_write_lock(info: dict) -> None:
    if _HOLDS_WRITE_LOCK not in info:
        return
    writers_queue = info.pop(_HOLDS_WRITE_LOCK)
    try:
        if writers_queue is not None:
            writers_queue.release()
    finally:
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
