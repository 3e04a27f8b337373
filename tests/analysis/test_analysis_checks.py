"""Data checks before the fit: one answer per query, the RT floor, small samples, catch and RT summaries."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.descriptives import trial_summary
from analysis.exclusions import (
    ExclusionRules, exclusion_summary, fast_trial_summary, model_rows, participant_table, sample_size_warnings,
)
from analysis.load import ExportError, validate_export

CONDITIONS = ["olah", "maco"]


def test_a_relogged_main_answer_is_an_error_naming_participant_query_and_rows(make_export):
    raw = make_export(dict(pid="p1"), dict(pid="p2", condition="maco"))
    again = raw[(raw["participant_id"] == "p2") & (raw["trial_kind"] == "main")].head(2).copy()
    again["trial_index"] = [100, 101]  # new trial_index, same query_id: the 10,803 of 10,800
    with pytest.raises(ExportError) as caught:
        validate_export(pd.concat([raw, again], ignore_index=True))
    message = str(caught.value)
    assert message.startswith("column 'query_id': 2 main-trial query pair(s) answered more than once")
    assert "p2 q2 in rows 12, 19" in message and "p2 q3 in rows 13, 20" in message


def test_a_repeated_catch_query_is_not_a_duplicate(make_export):
    raw = make_export(dict(pid="p1"))
    raw.loc[raw["trial_kind"] == "catch", "query_id"] = "catch-same-image"
    assert len(validate_export(raw)) == len(raw)


def test_an_empty_query_id_on_a_main_trial_is_an_error(make_export):
    raw = make_export(dict(pid="p1"))
    raw.loc[3, "query_id"] = ""
    with pytest.raises(ExportError, match="column 'query_id': 1 value.*empty on main trials"):
        validate_export(raw)


@pytest.fixture()
def timed(make_export) -> pd.DataFrame:
    """Two participants x 4 main trials; p1's third main trial is 150 ms by the client, p2's first is 120 ms
    by the server only; p2's second has no server time."""
    raw = make_export(dict(pid="p1"), dict(pid="p2", condition="maco"))
    raw["server_elapsed_ms"] = "2600"
    main = raw.index[raw["trial_kind"] == "main"]
    raw.loc[main[2], "rt_ms"] = "150"
    raw.loc[main[4], "server_elapsed_ms"] = "120"
    raw.loc[main[5], "server_elapsed_ms"] = ""
    raw.loc[raw["trial_kind"] == "catch", "rt_ms"] = "100"  # catch trials are not the floor's business
    return validate_export(raw)


def test_rt_floor_drops_main_trials_by_either_clock(timed):
    table = participant_table(timed)
    rows = model_rows(timed, table)
    assert len(rows) == 6
    assert 150 not in set(rows["rt_ms"]) and 120 not in set(rows["server_elapsed_ms"])
    assert rows["server_elapsed_ms"].isna().sum() == 1  # an empty server time does not drop the trial
    summary = fast_trial_summary(timed, table, CONDITIONS).set_index("condition")
    assert summary.loc["olah"].tolist() == [4, 1, 0, 1]
    assert summary.loc["maco"].tolist() == [4, 0, 1, 1]
    assert summary.loc["all"].tolist() == [8, 1, 1, 2]
    assert list(summary.columns) == ["main_trials", "under_floor_client", "under_floor_server", "dropped"]


def test_rt_floor_is_configurable_and_works_without_the_server_column(timed):
    table = participant_table(timed)
    assert len(model_rows(timed, table, ExclusionRules(min_rt_ms=0))) == 8
    client_only = timed.drop(columns=["server_elapsed_ms"])
    assert len(model_rows(client_only, table)) == 7
    summary = fast_trial_summary(client_only, table, CONDITIONS)
    assert list(summary.columns) == ["condition", "main_trials", "under_floor_client", "dropped"]


def test_small_samples_warn_and_one_per_condition_warns_clearly(make_export):
    raw = make_export(
        dict(pid="a1", condition="olah"), dict(pid="a2", condition="olah"), dict(pid="b1", condition="maco"),
        dict(pid="c1", condition="none"), dict(pid="c2", condition="none"), dict(pid="c3", condition="none"),
    )
    summary = exclusion_summary(participant_table(validate_export(raw)), ["olah", "maco", "none"])
    warnings = sample_size_warnings(summary, minimum=3)
    assert warnings == [
        "condition 'olah' has 2 included participants, fewer than 3 (--min-participants): its estimates and the "
        "participant SD are unstable",
        "condition 'maco' has 1 included participant: condition and participant are confounded, so the "
        "participant SD cannot be estimated (it collapses towards 0) and the p-values of its contrasts are "
        "meaningless",
    ]
    assert sample_size_warnings(summary, minimum=1)[0].startswith("condition 'maco' has 1 included participant")
    assert len(sample_size_warnings(summary, minimum=1)) == 1


def test_catch_and_rt_summary_by_hand(make_export):
    wrong_two = [("left", "right"), ("right", "left"), ("left", "left")]
    raw = make_export(
        dict(pid="good", condition="olah"),
        dict(pid="careless", condition="olah", catch=wrong_two),  # 1 of 3: excluded by the catch rule
        dict(pid="m1", condition="maco"),
    )
    raw.loc[(raw["participant_id"] == "good") & (raw["trial_kind"] == "catch"), "rt_ms"] = ["1000", "2000", "4000"]
    df = validate_export(raw)
    table = trial_summary(df, participant_table(df), ["olah", "maco"])
    catch = table[table["trial_kind"] == "catch"].set_index(["condition", "sample"])
    assert catch.index.tolist() == [("olah", "all"), ("olah", "included"), ("maco", "all"), ("maco", "included")]
    assert catch.loc[("olah", "all"), ["participants", "trials"]].tolist() == [2, 6]
    assert catch.loc[("olah", "all"), "accuracy"] == pytest.approx(4 / 6)
    assert catch.loc[("olah", "included"), "accuracy"] == 1.0
    assert catch.loc[("olah", "included"), ["rt_q1_ms", "rt_median_ms", "rt_q3_ms"]].tolist() == [1500, 2000, 3000]
    main = table[table["trial_kind"] == "main"].set_index(["condition", "sample"])
    assert main.loc[("maco", "included"), "accuracy"] == pytest.approx(2 / 4)
    assert np.issubdtype(table["rt_median_ms"].dtype, np.integer)
