"""End to end: `maco-study demo --simulate N --exit` on a small study, checked against the stored data."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from maco_study import main

PARTICIPANTS = 40
CONFIG = Path(__file__).with_name("study_e2e.toml")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(main, ["demo", "--dir", str(folder), "--config", str(CONFIG), "--simulate",
                                       str(PARTICIPANTS), "--profile", "strong", "--exit", "--port", "0",
                                       "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "report: " in result.output
    return folder


def test_every_acknowledged_answer_is_exported_once(demo_dir: Path) -> None:
    acknowledged = pd.read_csv(demo_dir / "simulation" / "answers.csv")
    exported = pd.read_csv(demo_dir / "export" / "responses.csv")
    ids = pd.read_csv(demo_dir / "export" / "prolific_ids.csv")
    exported["prolific_pid"] = exported["participant_id"].map(dict(zip(ids["participant_id"], ids["prolific_pid"])))
    key = ["prolific_pid", "trial_index"]
    assert not exported.duplicated(key).any()
    assert not acknowledged.duplicated(key).any()
    assert not acknowledged["answer_id"].duplicated().any()
    merged = acknowledged.merge(exported, on=key, how="outer", suffixes=("_sim", "_export"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged.loc[merged["_merge"] != "both", key + ["_merge"]]
    assert len(exported) == len(acknowledged) > PARTICIPANTS * 20
    # the driver's reading of the bundle (kind, pair, correct side) is the server's ground truth
    for column in ("trial_kind", "query_id", "unit", "network", "correct_side", "chosen_side", "correct",
                   "confidence"):
        assert (merged[f"{column}_sim"] == merged[f"{column}_export"]).all(), column
    assert (merged["rt_ms_sim"] - merged["rt_ms_export"]).abs().max() < 1e-6


def test_participants_match_the_simulation(demo_dir: Path) -> None:
    people = pd.read_csv(demo_dir / "simulation" / "participants.csv").set_index("prolific_pid")
    exported = pd.read_csv(demo_dir / "export" / "responses.csv")
    ids = pd.read_csv(demo_dir / "export" / "prolific_ids.csv").set_index("participant_id")
    assert len(people) == len(ids) == PARTICIPANTS
    assert (people["outcome"] != "failed").all(), people.loc[people["outcome"] == "failed", "error"]
    # the seeded profile has dropouts and reloads: both paths of the server were exercised
    assert (people["outcome"] == "dropped").sum() >= 1
    assert people["reloads"].sum() >= 1
    status = exported.groupby("participant_id")["participant_status"].first().rename(index=ids["prolific_pid"])
    condition = exported.groupby("participant_id")["condition"].first().rename(index=ids["prolific_pid"])
    expected = people["outcome"].map({"completed": "completed", "dropped": "in_progress"})
    assert (status.sort_index() == expected.loc[status.index].sort_index()).all()
    assert (condition.sort_index() == people.loc[condition.index, "condition"].sort_index()).all()
    # balanced assignment
    assert people["condition"].value_counts().tolist() == [PARTICIPANTS // 4] * 4


def test_report_recovers_the_profile_signs(demo_dir: Path) -> None:
    from demo.driver import PROFILES

    fixed = pd.read_csv(demo_dir / "report" / "fixed_effects.csv").set_index("term")["estimate"]
    truth = PROFILES["strong"].model.true_coefficients()
    for term in ("condition[maco]", "condition[maco_mask]", "condition[none]", "network[vgg16]",
                 "network[vit_b16]"):
        assert truth[term] != 0 and (fixed[term] > 0) == (truth[term] > 0), (term, fixed[term], truth[term])
    report = (demo_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert "random weights" in report and "simulated" in report
    verdicts = (demo_dir / "report" / "report.md").read_text(encoding="utf-8").split("## Verdicts")[1].split("\n#")[0]
    lines = [line for line in verdicts.splitlines() if line.startswith("- ")]
    assert lines and all(line.endswith("(DEMO: planted by the simulator (profile 'strong'), not measured)")
                         for line in lines)


def test_random_and_config_exclude_each_other(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path), "--config", str(CONFIG), "--random"])
    assert result.exit_code == 2 and "give --config or --random, not both" in result.output
    assert not (tmp_path / "study.toml").exists()


def test_simulate_command_against_a_running_server(demo_dir: Path, tmp_path: Path) -> None:
    from demo.run import DemoPaths, start_server
    from stimuli.testing import build_test_bundle
    from study_server.client import free_port

    paths = DemoPaths(demo_dir)
    other_bundle = tmp_path / "other"
    build_test_bundle(other_bundle, networks=("vgg16", "resnet50", "vit_b16"))
    runner = CliRunner()
    with start_server(paths, "127.0.0.1", free_port(), time_scale=0) as server:  # its floors on the same clock
        good = runner.invoke(main, ["simulate", "--url", server.url, "--bundle", str(paths.bundle),
                                    "--participants", "3", "--time-scale", "0", "--out", str(tmp_path / "good")])
        wrong = runner.invoke(main, ["simulate", "--url", server.url, "--bundle", str(other_bundle),
                                     "--participants", "1", "--time-scale", "0", "--out", str(tmp_path / "wrong")])
    assert good.exit_code == 0, good.output
    people = pd.read_csv(tmp_path / "good" / "participants.csv")
    assert len(people) == 3 and (people["outcome"] != "failed").all()
    assert len(pd.read_csv(tmp_path / "good" / "answers.csv")) == people["answers"].sum() > 0
    assert wrong.exit_code != 0
    assert "not a query pair of this bundle" in wrong.output


def test_report_numbers_are_the_exported_answers(demo_dir: Path) -> None:
    exported = pd.read_csv(demo_dir / "export" / "responses.csv")
    report = demo_dir / "report"
    people = pd.read_csv(report / "exclusions.csv").set_index("participant_id")
    assert set(people.index) == set(exported["participant_id"])
    assert people.loc[people["participant_status"] != "completed", "excluded"].all()
    included = people.index[~people["excluded"]]
    main = exported[exported["trial_kind"].eq("main") & exported["participant_id"].isin(included)]
    per_participant = main.groupby(["condition", "network", "participant_id"])["correct"].mean()
    expected = pd.DataFrame({"n_trials": main.groupby(["condition", "network"]).size(),
                             "accuracy": per_participant.groupby(["condition", "network"]).mean()})
    table = pd.read_csv(report / "descriptives.csv").set_index(["condition", "network"])
    assert len(table) == 12
    assert (table["n_trials"] == expected.loc[table.index, "n_trials"]).all()
    assert (table["accuracy"] - expected.loc[table.index, "accuracy"]).abs().max() < 1e-9
