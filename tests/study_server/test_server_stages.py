"""The stage table (stages.py) against the app: its templates and endpoints exist, its moves are the flow's."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from study_server import stages
from study_server.flow import move
from study_server.models import Participant

TEMPLATES = Path(__file__).parents[2] / "study_server" / "templates"


def test_every_stage_has_its_template_and_leads_to_known_stages(app):
    endpoints = set(app.view_functions)
    for stage in stages.STAGES:
        assert (TEMPLATES / stage.template).is_file(), stage.template
        assert set(stage.endpoints) <= endpoints, stage.name
        assert set(stage.leads_to) <= set(stages.BY_NAME), stage.name
    # every participant API endpoint belongs to exactly one stage
    owned = [e for s in stages.STAGES for e in s.endpoints]
    assert sorted(owned) == sorted(set(owned))
    assert {e for e in endpoints if e.startswith("api.")} == set(owned)


def test_moves_follow_the_table():
    participant = Participant(stage=stages.FIRST)
    for to in ("device", "instructions", "trials", "comment", "done"):
        move(participant, to)
    assert participant.stage == "done"
    with pytest.raises(stages.StageError, match="no move from stage 'done' to 'trials'"):
        move(participant, "trials")
    assert stages.before("trials") == ("consent", "device", "instructions")


def test_a_stored_stage_outside_the_table_is_never_a_template_name(app, walker):
    participant = walker("pstage01")
    assert participant.start().status_code == 302
    with Session(app.extensions["maco"].engine) as session:
        session.execute(update(Participant).where(Participant.prolific_pid == participant.pid)
                        .values(stage="../admin_login"))
        session.commit()
    with pytest.raises(stages.StageError, match="unknown participant stage '../admin_login'"):
        participant.client.get("/study")
