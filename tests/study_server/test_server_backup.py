"""`maco-study backup` round trip on SQLite: the copy holds exactly the stored data."""
from __future__ import annotations

from types import SimpleNamespace

from click.testing import CliRunner
from sqlalchemy import create_engine

from maco_study import main as maco_study

from .test_server_tampering import _stored


def test_sqlite_backup_round_trip(app, walker, tmp_path) -> None:  # noqa: ANN001
    if app.extensions["maco"].engine.url.get_backend_name() != "sqlite":
        return  # PostgreSQL: pg_dump round trip not yet tested
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
