"""Inputs that used to be merged silently (issue 24): each is now one clear error, exit 1, no report."""
from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.cli import analyze
from analysis.load import ExportError, validate_export
from analysis.pipeline import run_analysis
from analysis.simulate import simulate_export


def run(tmp_path, export: pd.DataFrame, *options: str):
    responses = tmp_path / "responses.csv"
    export.to_csv(responses, index=False)
    out = tmp_path / "report"
    return CliRunner().invoke(analyze, [str(responses), "--out", str(out), *options]), out


def test_unit_keys_shared_across_networks_are_an_error(tmp_path, small_model):
    """Units relabelled as class positions shared by every network would merge units of different networks."""
    raw = simulate_export(small_model, n_participants=8, seed=21)
    main = raw["trial_kind"].eq("main")
    position = raw[main].groupby("network")["class_index"].rank(method="dense").astype(int)
    raw.loc[main, "unit"] = "class " + position.astype(str)
    with pytest.raises(ExportError, match=r"column 'unit': 8 unit key\(s\) appear under more than one network "
                                          r"\('class 1' in resnet50, vgg16, vit_b16;"):
        validate_export(raw)
    result, out = run(tmp_path, raw)
    assert result.exit_code == 1 and "must name one unit of one network" in result.stderr
    assert not out.exists()


def test_a_relabelled_condition_is_an_error_naming_the_label_and_the_study_conditions(tmp_path, small_model):
    raw = simulate_export(small_model, n_participants=16, seed=22)
    none = sorted(raw.loc[raw["condition"].eq("none"), "participant_id"].unique())
    raw.loc[raw["participant_id"].isin(none[: len(none) // 2]), "condition"] = "None"
    with pytest.raises(ExportError, match=r"column 'condition': 'None' \(2 participants, did you mean 'none'\?\) "
                                          r"not among the study's conditions \(olah, maco_mask, maco, none;"):
        run_analysis(validate_export(raw), lrt=False)
    result, out = run(tmp_path, raw)
    assert result.exit_code == 1 and "did you mean 'none'?" in result.stderr
    assert not out.exists()
    # naming the conditions to analyse is the way to analyse other labels on purpose
    assert run_analysis(validate_export(raw), conditions=["olah", "maco_mask", "maco", "none", "None"], lrt=False,
                        sensitivity=False, secondary=False,
                        contrasts=["maco_vs_olah"]).fit.n_groups["participant"] > 0


def test_practice_flagged_participants_are_excluded(small_model):
    """A participant still wrong in the last (third) practice round: the export's practice_flagged = 1."""
    raw = simulate_export(small_model, n_participants=8, seed=23)
    flagged = raw["participant_id"].iloc[0]
    raw.loc[raw["participant_id"].eq(flagged), ["practice_rounds", "practice_flagged"]] = [3, 1]
    analysis = run_analysis(validate_export(raw), lrt=False, sensitivity=False, secondary=False,
                            contrasts=["maco_vs_olah"])
    table = analysis.participants.set_index("participant_id")
    assert table.loc[flagged, "reasons"] == "still wrong in the last practice round"
    assert flagged not in set(analysis.rows["participant_id"])
    assert table["excluded"].sum() == 1


def test_an_export_without_the_practice_flag_is_an_error(small_model):
    raw = simulate_export(small_model, n_participants=4, seed=24)
    with pytest.raises(ExportError, match="missing column.*practice_flagged"):
        validate_export(raw.drop(columns=["practice_flagged"]))
