"""`maco-study backup` round trips: the copy holds exactly the stored data (SQLite: the file;
PostgreSQL: pg_dump's archive restored as the README says)."""
from __future__ import annotations

import secrets
import shutil
import subprocess
from types import SimpleNamespace
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from maco_study import main as maco_study

from .conftest import POSTGRES_URL, Walker, make_app
from .test_server_tampering import _stored


def test_sqlite_backup_round_trip(app, walker, tmp_path) -> None:  # noqa: ANN001
    if app.extensions["maco"].engine.url.get_backend_name() != "sqlite":
        return  # PostgreSQL: test_postgres_backup_round_trip
    alice = walker()
    alice.to_trials()
    alice.answer_current()
    before = _stored(app)
    out = tmp_path / "backup.db"
    db = app.extensions["maco"].engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(maco_study, ["backup", "--db", db, "--out", str(out)])
    assert result.exit_code == 0, result.output
    restored = SimpleNamespace(extensions={"maco": SimpleNamespace(engine=create_engine(f"sqlite:///{out}"))})
    assert _stored(restored) == before  # restore: copy the file back (docs in the README)


def _export(db_url: str, folder) -> str:  # noqa: ANN001
    result = CliRunner().invoke(maco_study, ["export", "--db", db_url, "--out", str(folder / "responses.csv")])
    assert result.exit_code == 0, result.output
    return (folder / "responses.csv").read_text()


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], str]]:
    """Makes fresh, empty databases on the test server (pg_dump copies a whole database, so
    the round trip runs in databases of its own); drops them afterwards."""
    if not POSTGRES_URL:
        pytest.skip("MACO_TEST_POSTGRES_URL is not set (CI sets it and runs these)")
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore not found (apt-get install postgresql-client)")
    server = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"maco_backup_{secrets.token_hex(4)}"
        with server.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        made.append(name)
        return make_url(POSTGRES_URL).set(database=name, query={}).render_as_string(hide_password=False)

    yield make
    with server.connect() as conn:
        for name in made:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    server.dispose()


def test_postgres_backup_round_trip(bundle, postgres_database, tmp_path) -> None:  # noqa: ANN001
    """pg_dump through `maco-study backup`, then the README's restore (pg_restore --clean
    --if-exists) over the damaged database and into a fresh one: the same rows, the same export."""
    db_url = postgres_database()
    app = make_app(db_url, bundle)
    alice, bob = Walker(app), Walker(app)
    alice.to_trials()
    alice.answer_current()
    alice.answer_current(correct=False)
    bob.to_trials()
    bob.answer_current()
    before, exported = _stored(app), _export(db_url, tmp_path)
    out = tmp_path / "backup.dump"
    result = CliRunner().invoke(maco_study, ["backup", "--db", db_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    bob.answer_current()  # written after the backup: the restore takes it back
    assert _stored(app) != before
    app.extensions["maco"].engine.dispose()  # "stop the server"

    def restore(target: str) -> None:
        plain = make_url(target).set(drivername="postgresql").render_as_string(hide_password=False)
        done = subprocess.run(["pg_restore", "--clean", "--if-exists", "-d", plain, str(out)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr

    for target in (db_url, postgres_database()):
        restore(target)
        restored = SimpleNamespace(extensions={"maco": SimpleNamespace(engine=create_engine(target))})
        assert _stored(restored) == before
        assert _export(target, tmp_path) == exported
        restored.extensions["maco"].engine.dispose()
