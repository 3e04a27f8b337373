"""Loading and validating the export: every error names the column (or level) at fault."""
from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from analysis.load import EXPORT_COLUMNS, ExportError, load_export, validate_export
from analysis.pipeline import run_analysis


@pytest.fixture()
def one_participant(make_export) -> pd.DataFrame:
    return make_export(dict(pid="p1"))


def test_missing_column_is_named(one_participant):
    with pytest.raises(ExportError, match="missing column.*participant_status"):
        validate_export(one_participant.drop(columns=["participant_status"]))


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("correct", "yes", "'correct'.*not numbers"),
        ("confidence", "5", "'confidence'.*not 1, 2 or 3"),
        ("chosen_side", "up", "'chosen_side'.*left, right"),
        ("trial_kind", "warmup", "'trial_kind'.*practice, main, catch"),
        ("rt_ms", "fast", "'rt_ms'.*not numbers"),
        ("rt_ms", "-3", "'rt_ms'.*negative"),
        ("trial_index", "1.5", "'trial_index'.*whole numbers"),
        ("participant_id", "", "'participant_id'.*empty"),
        ("participant_status", "paid", "'participant_status'.*completed"),
    ],
)
def test_malformed_value_names_column_and_row(column, value, message, one_participant):
    raw = one_participant.copy()
    raw.loc[3, column] = value
    with pytest.raises(ExportError, match=message) as caught:
        validate_export(raw)
    assert "row 4" in str(caught.value)


def test_correct_must_agree_with_sides(one_participant):
    raw = one_participant.copy()
    raw.loc[2, "correct"] = str(1 - int(raw.loc[2, "correct"]))
    with pytest.raises(ExportError, match="'correct'.*disagree"):
        validate_export(raw)


def test_main_trial_needs_network_and_unit(one_participant):
    raw = one_participant.copy()
    raw.loc[raw["trial_kind"].eq("main").idxmax(), "unit"] = ""
    with pytest.raises(ExportError, match="'unit'.*empty on main trials"):
        validate_export(raw)


def test_per_participant_column_must_be_constant(one_participant):
    raw = one_participant.copy()
    raw.loc[0, "instruction_ms"] = "1234"
    with pytest.raises(ExportError, match="'instruction_ms' must be constant"):
        validate_export(raw)


def test_repeated_trial_index_is_an_error(one_participant):
    raw = one_participant.copy()
    raw.loc[1, "trial_index"] = raw.loc[0, "trial_index"]
    with pytest.raises(ExportError, match="'trial_index'.*repeat"):
        validate_export(raw)


def test_empty_export_is_an_error(one_participant):
    with pytest.raises(ExportError, match="no rows"):
        validate_export(one_participant.iloc[:0])


def test_csv_round_trip_keeps_values(tmp_path, small_export):
    path = tmp_path / "responses.csv"
    small_export.to_csv(path, index=False)
    loaded = load_export(path)
    assert list(loaded.columns) == list(EXPORT_COLUMNS)
    assert loaded["correct"].sum() == small_export["correct"].sum()
    assert loaded["total_ms"].equals(small_export["total_ms"].astype(float))


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ExportError, match="not found"):
        load_export(tmp_path / "nope.csv")


def test_database_url_with_query(tmp_path, small_export):
    path = tmp_path / "study.sqlite"
    with sqlite3.connect(path) as connection:
        small_export.to_sql("responses", connection, index=False)
    loaded = load_export(f"sqlite:///{path}", query="SELECT * FROM responses")
    assert len(loaded) == len(small_export)
    assert loaded["participant_id"].nunique() == small_export["participant_id"].nunique()


def test_contract_matches_the_server_export():
    export = pytest.importorskip("study_server.export")
    assert list(EXPORT_COLUMNS) == export.COLUMN_NAMES


def test_expected_condition_without_rows_is_an_error(small_export):
    df = validate_export(small_export)
    with pytest.raises(ExportError, match="'condition'.*pixel"):
        run_analysis(df, conditions=["olah", "maco_mask", "maco", "none", "pixel"], lrt=False)


def test_condition_whose_participants_are_all_excluded_is_an_error(small_export):
    df = validate_export(small_export)
    df.loc[df["condition"].eq("none"), "total_ms"] = float("nan")  # nobody in "none" finished
    with pytest.raises(ExportError, match="no main trials from included participants.*none"):
        run_analysis(df, lrt=False)


def test_unexpected_network_is_an_error(small_export):
    df = validate_export(small_export)
    with pytest.raises(ExportError, match="'network'.*vit_b16.*not among"):
        run_analysis(df, networks=["vgg16", "resnet50"], lrt=False)
