"""Export (the docs/export.md contract), the admin pages, migrations and the CLI."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from maco_study import main as maco_study
from study_protocol.export import COLUMN_NAMES, COLUMNS, codebook_markdown
from study_server.db import make_engine, upgrade
from study_server.models import Base, QueryPair, Study

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "export.md"


def test_docs_export_md_is_the_generated_codebook(tmp_path: Path) -> None:
    written = tmp_path / "export.md"
    result = CliRunner().invoke(maco_study, ["export", "--codebook", str(written)])
    assert result.exit_code == 0, result.output
    assert written.read_text(encoding="utf-8") == codebook_markdown()
    assert CONTRACT.read_text(encoding="utf-8") == codebook_markdown(), \
        "docs/export.md is stale: run maco-study export --codebook docs/export.md"
    table = [line.split(" | ")[0].lstrip("| ") for line in codebook_markdown().splitlines()[-len(COLUMNS):]]
    assert table == list(COLUMN_NAMES)


def _finished(walker, comment: str = ""):  # noqa: ANN001, ANN202
    w = walker()
    w.to_trials()
    w.answer_current(correct=False)  # a wrong practice answer: two practice rounds
    w.answer_all()
    assert w.complete(comment).status_code == 200
    return w


def test_export_rows_codebook_and_ids(app, walker, db_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    done = _finished(walker)
    half = walker()
    half.to_trials()
    half.answer_current()
    app.config["PUBLIC_PREVIEW"] = 1  # open to anyone (else only to a logged-in admin)
    assert app.test_client().get("/preview").status_code == 302  # never exported
    out = tmp_path / "out" / "responses.csv"
    result = CliRunner().invoke(maco_study, ["export", "--db", db_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == list(COLUMN_NAMES)
        rows = list(reader)
    assert len(rows) == 14 + 1
    mine = [r for r in rows if r["participant_id"] == done.participant().public_id]
    assert [int(r["trial_index"]) for r in mine] == list(range(14))
    assert {r["participant_status"] for r in mine} == {"completed"}
    assert [r["practice_round"] for r in mine[:4]] == ["1", "1", "2", "2"]
    assert all(r["practice_round"] == "" for r in mine[4:])
    assert mine[0]["correct"] == "0" and all(r["correct"] == "1" for r in mine[1:])
    for r in mine:
        assert r["correct"] == str(int(r["chosen_side"] == r["correct_side"]))
        assert r["unit"] == f"{r['network']}:{r['class_index']}"
        assert r["shown_at"].endswith("Z") and r["answered_at"] > r["shown_at"]
        assert float(r["rt_ms"]) == 240.0 and r["practice_rounds"] == "2" and float(r["total_ms"]) > 0
        assert (r["webdriver"], r["answer_input"], r["review"]) == ("0", "key", "")  # the suite's pace rules are off
        assert int(r["images_fetched"]) >= 3 * 14  # at least base and two queries of every trial
        assert float(r["server_elapsed_ms"]) >= 0  # the server's own clock (test_server_timing checks values)
    assert {r["participant_status"] for r in rows} == {"completed", "in_progress"}
    assert [r["total_ms"] for r in rows if r["participant_status"] == "in_progress"] == [""]
    # the codebook documents every column; Prolific ids only in their own file
    codebook = (out.parent / "codebook.md").read_text()
    assert all(f"| {name} |" in codebook for name in COLUMN_NAMES)
    assert done.pid not in out.read_text()
    with (out.parent / "prolific_ids.csv").open() as f:
        ids = list(csv.DictReader(f))
    assert {(i["prolific_pid"], i["study_id"]) for i in ids} == {(done.pid, "s1"), (half.pid, "s1")}


ADMIN_PASSWORD = "correct horse battery"


@pytest.fixture
def admin_app(app, db_url: str):  # noqa: ANN001, ANN201
    result = CliRunner().invoke(maco_study, ["admin", "set-password", "--db", db_url, "--password-stdin"],
                                input=ADMIN_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def _csrf(client, url: str = "/admin/login") -> str:  # noqa: ANN001
    page = client.get(url).data.decode()
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def _login(client, password: str = ADMIN_PASSWORD):  # noqa: ANN001, ANN202
    return client.post("/admin/login", data={"password": password, "csrf_token": _csrf(client)})


def test_admin_login_csrf_throttle_and_timeout(admin_app) -> None:  # noqa: ANN001
    client = admin_app.test_client()
    assert client.get("/admin/").status_code == 302
    no_token = client.post("/admin/login", data={"password": ADMIN_PASSWORD})
    assert no_token.status_code == 400
    assert _login(client, "wrong password").status_code == 401
    assert _login(client).status_code == 302
    assert client.get("/admin/").status_code == 200
    # idle time-out: an old last-activity stamp sends back to the login page
    with client.session_transaction() as session:
        session["admin_seen"] -= admin_app.config["ADMIN_SESSION_MIN"] * 60 + 1
    expired = client.get("/admin/")
    assert expired.status_code == 302 and "expired=1" in expired.headers["Location"]
    assert client.get("/admin/").status_code == 302
    # throttling: after 5 failures even the right password is refused for a while
    attacker = admin_app.test_client()
    for _ in range(4):
        assert _login(attacker, "guess").status_code == 401
    assert _login(attacker).status_code == 429


def test_admin_dashboard_detail_and_download(admin_app, walker) -> None:  # noqa: ANN001
    done = _finished(walker, comment="<script>alert(1)</script>")
    walker().start()
    client = admin_app.test_client()
    _login(client)
    dashboard = client.get("/admin/").data.decode()
    row = re.search(rf'<tr data-condition="{done.participant().condition}">(.*?)</tr>', dashboard, re.S).group(1)
    # started, in progress, completed, returned, timed out: one completed in that condition
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["0", "0", "1", "0", "0"]
    detail = client.get(f"/admin/participant/{done.participant().public_id}").data.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail and "<script>alert" not in detail
    download = client.get("/admin/responses.csv")
    assert download.status_code == 200 and download.data.decode().splitlines()[0] == ",".join(COLUMN_NAMES)
    assert len(download.data.decode().splitlines()) == 1 + 14  # header + the finished one's trials


def test_migrations_match_the_models(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)  # idempotent
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_serve_imports_once_and_refuses_another_bundle(tmp_path: Path, bundle: Path) -> None:
    from stimuli.testing import build_test_bundle

    db = f"sqlite:///{tmp_path / 'serve.db'}"
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(maco_study, ["serve", "--bundle", str(bundle), "--db", db, "--import-only"])
        assert result.exit_code == 0, result.output
    other = tmp_path / "other"
    build_test_bundle(other, seed=1)  # same study name, different content
    refused = runner.invoke(maco_study, ["serve", "--bundle", str(other), "--db", db, "--import-only"])
    assert refused.exit_code != 0 and "already imported from a different bundle" in refused.output
    replaced = runner.invoke(maco_study, ["serve", "--bundle", str(other), "--db", db, "--import-only",
                                          "--replace"])
    assert replaced.exit_code == 0, replaced.output
    engine = make_engine(db)
    with Session(engine) as session:
        assert len(list(session.scalars(select(Study)))) == 1
        assert len(list(session.scalars(select(QueryPair)))) == 8 + 2 + 2
    engine.dispose()
