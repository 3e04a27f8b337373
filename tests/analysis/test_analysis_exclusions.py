"""Exclusion rules on hand-made participants whose outcomes are known."""
from __future__ import annotations

import pytest

from analysis.exclusions import ExclusionRules, exclusion_summary, model_rows, participant_table
from analysis.load import validate_export

SIX_CATCH = [("left", "left"), ("right", "right")] * 3


def wrong(n: int) -> list[tuple[str, str]]:
    """n of the six catch trials answered wrongly."""
    return [(c, ("right" if c == "left" else "left") if i < n else s) for i, (c, s) in enumerate(SIX_CATCH)]


@pytest.fixture()
def people(make_export):
    raw = make_export(
        dict(pid="keep", condition="olah"),
        dict(pid="catch_4_of_6", condition="olah", catch=wrong(2)),  # exactly 2/3: kept
        dict(pid="catch_3_of_6", condition="maco", catch=wrong(3)),
        dict(pid="instr_15000", condition="maco", instruction_ms=15_000),  # exactly 15 s: kept
        dict(pid="instr_14999", condition="maco", instruction_ms=14_999),
        dict(pid="too_fast", condition="none", total_ms=119_000),
        dict(pid="too_slow", condition="none", total_ms=5_400_001),
        dict(pid="left_only", condition="none", main=[("resnet50", "left", "left"), ("vgg16", "right", "left")]),
        dict(pid="practice_3_flagged", condition="maco_mask", practice_rounds=3, practice_flagged=1),
        dict(pid="practice_3_passed", condition="maco_mask", practice_rounds=3),  # passed in the last round: kept
        dict(pid="returned", condition="maco_mask", status="returned", total_ms=None),
        dict(pid="two_faults", condition="maco_mask", catch=wrong(6), instruction_ms=3_000),
        dict(pid="window_940x600", condition="olah", window=(940, 600)),  # exactly the minimum: kept
        dict(pid="one_small_window", condition="olah", small_window=(700, 450)),
        dict(pid="low_window", condition="olah", small_window=(1280, 599)),
    )
    return validate_export(raw)


def test_each_rule_excludes_exactly_its_participants(people):
    table = participant_table(people).set_index("participant_id")
    expected = {
        "keep": "",
        "catch_4_of_6": "",
        "catch_3_of_6": "catch accuracy below 2/3",
        "instr_15000": "",
        "instr_14999": "instructions under 15 s",
        "too_fast": "total time outside 120-5400 s",
        "too_slow": "total time outside 120-5400 s",
        "left_only": "answers on one side only",
        "practice_3_flagged": "still wrong in the last practice round",
        "practice_3_passed": "",
        "returned": "session not finished",
        "two_faults": "catch accuracy below 2/3; instructions under 15 s",
        "window_940x600": "",
        "one_small_window": "answered in a window under 940x600",
        "low_window": "answered in a window under 940x600",
    }
    assert table["reasons"].to_dict() == expected
    assert table["excluded"].to_dict() == {pid: bool(reason) for pid, reason in expected.items()}
    assert table.loc["catch_4_of_6", "catch_accuracy"] == pytest.approx(4 / 6)


def test_rules_are_configurable(people):
    lenient = ExclusionRules(min_catch_accuracy=0.5, min_instruction_s=10, require_both_sides=False,
                             exclude_practice_flagged=False, min_total_s=60, max_total_s=10_000)
    table = participant_table(people, lenient).set_index("participant_id")
    assert sorted(table.index[table["excluded"]]) == ["low_window", "one_small_window", "returned", "two_faults"]
    small = ExclusionRules(min_window_width=700, min_window_height=450)
    table = participant_table(people, small).set_index("participant_id")
    assert not table.loc[["one_small_window", "low_window"], "fail_window"].any()


def test_summary_counts_per_condition(people):
    table = participant_table(people)
    summary = exclusion_summary(table, ["olah", "maco", "maco_mask", "none"]).set_index("condition")
    assert summary.loc["olah", ["participants", "window", "excluded", "included"]].tolist() == [5, 2, 2, 3]
    assert summary.loc["maco", ["catch", "instructions", "excluded", "included"]].tolist() == [1, 1, 2, 1]
    assert summary.loc["none", ["total_time", "sides", "excluded"]].tolist() == [2, 1, 3]
    assert summary.loc["maco_mask", ["practice", "incomplete", "catch", "instructions", "excluded"]].tolist() == [
        1, 1, 1, 1, 3
    ]
    assert summary.loc["all", "participants"] == 15 and summary.loc["all", "excluded"] == 10


def test_model_sees_only_main_trials_of_included_participants(people):
    table = participant_table(people)
    rows = model_rows(people, table)
    assert set(rows["trial_kind"]) == {"main"}
    assert set(rows["participant_id"]) == {"keep", "catch_4_of_6", "instr_15000", "practice_3_passed",
                                          "window_940x600"}
    assert len(rows) == 5 * 4
