"""Targets and live progress on the dashboard, its refresh endpoint, and the exclusion preview
against analysis.exclusions on the same participants."""
from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from analysis.exclusions import participant_table
from maco_study import main as maco_study
from stimuli.manifest import Protocol, load_manifest
from study_server.config import ConfigError, load_config
from study_server.models import Participant, Trial
from study_server.progress import exclusion_previews, main_trials_per_network

from .conftest import make_app
from . import test_server_export_admin
from .test_server_admin_pages import _admin, _engine, _status_counts, analysed_export
from .test_server_export_admin import ADMIN_PASSWORD, _finished

admin_app = test_server_export_admin.admin_app  # the fixture: the app with an admin password set
TARGETS = {"olah": 2, "maco_mask": 2, "maco": 3}  # none: no target


@pytest.fixture
def target_app(db_url: str, bundle: Path):
    CliRunner().invoke(maco_study, ["admin", "set-password", "--db", db_url, "--password-stdin"],
                       input=ADMIN_PASSWORD + "\n")
    app = make_app(db_url, bundle, TARGET_PER_CONDITION=TARGETS)
    app.config["WTF_CSRF_ENABLED"] = True
    yield app
    _engine(app).dispose()


def _bars(page: str, attribute: str) -> dict[str, tuple[int, int]]:
    rows = re.findall(rf'<tr data-{attribute}="(\w+)">(.*?)</tr>', page, re.DOTALL)
    return {key: tuple(map(int, m.groups())) for key, row in rows
            if (m := re.search(r'<progress value="(\d+)" max="(\d+)">', row))}


def _overall(page: str) -> tuple[int, int]:
    match = re.search(r'<tr id="overall">.*?<progress value="(\d+)" max="(\d+)">', page, re.S)
    return int(match.group(1)), int(match.group(2))


def test_progress_bars_per_condition_and_network(target_app, walker) -> None:
    client = _admin(target_app)
    page = client.get("/admin/").data.decode()
    # `none` has no target: no bar; 7 wanted participants x 4 main trials of each network
    assert _bars(page, "condition") == {c: (0, t) for c, t in TARGETS.items()}
    assert _bars(page, "network") == {"vgg16": (0, 28), "resnet50": (0, 28)}
    assert _overall(page) == (0, 7)
    done = _finished(walker)
    started = walker()
    started.to_trials()
    live = client.get("/admin/live")
    assert live.status_code == 200 and live.headers["Cache-Control"] == "no-store"
    fragment = live.data.decode()
    assert "<html" not in fragment and "<script" not in fragment
    condition = done.participant().condition
    assert _bars(fragment, "condition") == {c: (int(c == condition), t) for c, t in TARGETS.items()}
    assert _bars(fragment, "network") == {"vgg16": (4, 28), "resnet50": (4, 28)}
    assert _overall(fragment) == (1, 7)
    counts = _status_counts(fragment)
    assert counts[condition][2] == 1 and counts[started.participant().condition][1] >= 1
    # practice answers never count as answered trials, nor do repeated rounds change the total
    # (8 main + 2 catch for everyone); practice answers and rounds are apart
    assert re.search(rf"{started.participant().public_id}</a></td>\s*<td>\w+</td><td>trials</td>"
                     r'<td class="num">0 / 10</td><td class="num">0 \(1\)</td>', fragment)
    started.answer_current(correct=False)
    started.answer_current(correct=False)  # round 1 failed: round 2 adds two practice rows
    fragment = client.get("/admin/live").data.decode()
    assert re.search(rf"{started.participant().public_id}</a></td>\s*<td>\w+</td><td>trials</td>"
                     r'<td class="num">0 / 10</td><td class="num">2 \(2\)</td>', fragment)
    done_row = re.search(rf"{done.participant().public_id}</a></td>(.*?)</tr>", fragment.split('id="exclusions"')[1],
                         re.S).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', done_row) == ["10"]  # main and catch, not its practice


def test_the_refresh_is_no_sign_of_activity(target_app) -> None:
    """The dashboard left open must still time out: its polls do not extend the admin session."""
    client = _admin(target_app)
    with client.session_transaction() as session:
        session["admin_seen"] -= 100
        marked = session["admin_seen"]
    assert client.get("/admin/live").status_code == 200
    with client.session_transaction() as session:
        assert session["admin_seen"] == marked
    with client.session_transaction() as session:
        session["admin_seen"] -= target_app.config["ADMIN_SESSION_MIN"] * 60
    expired = client.get("/admin/live")  # admin.js follows this redirect to the login page
    assert expired.status_code == 302 and "expired=1" in expired.headers["Location"]
    assert client.get("/admin/").status_code == 302


def test_no_target_no_bars(admin_app) -> None:
    page = _admin(admin_app).get("/admin/").data.decode()
    assert "<progress" not in page and "No target set" in page


def test_targets_configuration_errors(db_url: str, bundle: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="TARGET_PER_CONDITION names 'mcao', not a condition"):
        make_app(db_url, bundle, TARGET_PER_CONDITION={"mcao": 3})
    with pytest.raises(ConfigError, match="for 'maco' must be a whole number >= 0"):
        make_app(db_url, bundle, TARGET_PER_CONDITION={"maco": -1})
    monkeypatch.setenv("MACO_TARGET_PER_CONDITION", "forty")
    with pytest.raises(ConfigError, match="MACO_TARGET_PER_CONDITION must be a whole number, not 'forty'"):
        load_config()
    monkeypatch.setenv("MACO_TARGET_PER_CONDITION", "40")
    app = make_app(db_url, bundle)
    assert app.config["TARGET_PER_CONDITION"] == dict.fromkeys(load_manifest(bundle).conditions, 40)
    _engine(app).dispose()


def test_main_trials_per_network_follow_the_protocol(bundle: Path) -> None:
    manifest = load_manifest(bundle)  # 8 main pairs, 4 per network
    assert main_trials_per_network(manifest) == {"vgg16": 4, "resnet50": 4}
    drawn = dataclasses.replace(manifest, protocol=Protocol(main_trials_per_participant=2))
    assert main_trials_per_network(drawn) == {"vgg16": 1, "resnet50": 1}


def test_exclusion_preview_agrees_with_the_analysis(app, walker, db_url: str, tmp_path: Path) -> None:
    """Six completed participants, each failing different rules; the admin's preview gives the
    same reasons as analysis.participant_table on the export of the same database."""
    people = [_finished(walker) for _ in range(6)]
    ids = [w.participant().id for w in people]
    engine = _engine(app)
    with Session(engine) as session:
        # 0: fine; 1: slow instructions but 1 of 2 catch right; 2: all on the left (one side);
        # 3: 3 hours in total; 4: instructions 14.9 s; 5: one answer in a window of 800x500 (stored
        # by a server configured below the rule's minimum: this one refuses it)
        session.execute(update(Participant).where(Participant.id.in_(ids)).values(instruction_ms=20_000))
        for k, pid in enumerate(ids):
            completed = session.scalar(select(Participant.completed_at).where(Participant.id == pid))
            session.execute(update(Participant).where(Participant.id == pid).values(
                created_at=completed - (timedelta(hours=3) if k == 3 else timedelta(minutes=10))))
        catch = session.scalars(select(Trial).where(Trial.participant_id == ids[1], Trial.kind == "catch")).first()
        catch.chosen_side = "left" if catch.correct_side == "right" else "right"
        session.execute(update(Trial).where(Trial.participant_id == ids[2], Trial.kind == "main")
                        .values(chosen_side="left"))
        session.execute(update(Participant).where(Participant.id == ids[4]).values(instruction_ms=14_900))
        small = session.scalars(select(Trial).where(Trial.participant_id == ids[5], Trial.kind == "main")).first()
        small.window_width, small.window_height = 800, 500
        session.commit()
        participants = list(session.scalars(select(Participant).where(Participant.id.in_(ids))))
        previews = exclusion_previews(session, participants)
        admin = {p.public_id: previews[p.id]["reasons"] for p in participants}
    table = participant_table(analysed_export(db_url, tmp_path))
    analysis = {row.participant_id: [r for r in row.reasons.split("; ") if r] for row in table.itertuples()}
    assert admin == analysis
    assert sorted(map(len, admin.values())) == [0, 1, 1, 1, 1, 1]
    assert admin[people[1].participant().public_id] == ["catch accuracy below 2/3"]
    assert admin[people[5].participant().public_id] == ["answered in a window under 940x600"]


def test_practice_still_wrong_in_the_last_round_is_excluded_by_the_preview_and_the_analysis(
        app, walker, db_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    """The server caps practice at 3 rounds and flags who is still wrong; the export carries the flag, so
    the analysis and the admin's preview both exclude that participant (and only them)."""
    flagged = walker()
    flagged.to_trials()
    for _ in range(6):  # 2 practice trials a round, every one wrong, 3 rounds
        flagged.answer_current(correct=False)
    flagged.answer_all()
    assert flagged.complete().status_code == 200
    passed = _finished(walker)  # one wrong practice answer, passed in round 2
    ids = [flagged.participant().id, passed.participant().id]
    with Session(_engine(app)) as session:  # instructions and total time within the rules
        session.execute(update(Participant).where(Participant.id.in_(ids)).values(instruction_ms=20_000))
        for pid in ids:
            completed = session.scalar(select(Participant.completed_at).where(Participant.id == pid))
            session.execute(update(Participant).where(Participant.id == pid)
                            .values(created_at=completed - timedelta(minutes=10)))
        session.commit()
        participants = list(session.scalars(select(Participant).where(Participant.id.in_(ids))))
        previews = exclusion_previews(session, participants)
        admin = {p.public_id: previews[p.id]["reasons"] for p in participants}
    export = analysed_export(db_url, tmp_path)
    assert export.groupby("participant_id")["practice_rounds"].first().to_dict() == {
        flagged.participant().public_id: 3, passed.participant().public_id: 2}
    table = participant_table(export).set_index("participant_id")
    analysis = {pid: [r for r in reasons.split("; ") if r] for pid, reasons in table["reasons"].items()}
    assert admin == analysis == {flagged.participant().public_id: ["still wrong in the last practice round"],
                                 passed.participant().public_id: []}


def test_serve_refuses_a_target_for_an_unknown_condition(tmp_path: Path, bundle: Path, monkeypatch) -> None:  # noqa: ANN001
    config = tmp_path / "study.toml"
    config.write_text('secret_key = "k"\ntarget_per_condition = { maco = 40, mcao = 40 }\n')
    monkeypatch.setenv("MACO_CONFIG", str(config))
    result = CliRunner().invoke(maco_study, ["serve", "--bundle", str(bundle), "--db",
                                             f"sqlite:///{tmp_path / 'serve.db'}"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: TARGET_PER_CONDITION names 'mcao', not a condition of the bundle (olah, maco_mask, maco, none)")
