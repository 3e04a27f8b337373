"""Participant exclusions: analysis decisions, never payment decisions.

The rules and their defaults live in study_protocol.exclusions (shared with the admin
dashboard's preview). A session that did not finish (``participant_status`` other than
``completed``, or ``total_ms`` empty) is excluded as incomplete. Practice and catch trials
never enter the model.

One rule acts on trials, not participants: a main trial answered faster than
``min_rt_ms`` (200 ms by default: faster than one can see two images and
press a key) is dropped. It reads the client's ``rt_ms`` and, when the export
has it, the server's ``server_elapsed_ms`` (trial served to answer stored, so
never shorter than the true time), and drops the trial when either is under
the floor: a forged or broken client clock cannot hide an answer the server
saw arrive too soon.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from study_protocol.exclusions import CATCH_TOLERANCE, REASONS, ExclusionRules

__all__ = ["REASONS", "ExclusionRules", "exclusion_summary", "fast_trial_summary", "fast_trials", "model_rows",
           "participant_table", "sample_size_warnings"]


def participant_table(df: pd.DataFrame, rules: ExclusionRules = ExclusionRules()) -> pd.DataFrame:
    """One row per participant: the measures each rule reads, pass/fail, and why.

    Columns ``fail_<rule>`` are booleans; ``excluded`` is their union and
    ``reasons`` lists the failed rules in words.
    """
    kind = df["trial_kind"]
    people = df.groupby("participant_id", sort=True).agg(
        condition=("condition", "first"),
        participant_status=("participant_status", "first"),
        instruction_ms=("instruction_ms", "first"),
        total_ms=("total_ms", "first"),
        practice_rounds=("practice_rounds", "first"),
        practice_flagged=("practice_flagged", "first"),
    )
    main = df[kind.eq("main")].groupby("participant_id")
    catch = df[kind.eq("catch")].groupby("participant_id")["correct"]
    people["n_main"] = main.size().reindex(people.index, fill_value=0)
    people["main_accuracy"] = main["correct"].mean().astype(float).reindex(people.index)
    people["n_catch"] = catch.size().reindex(people.index, fill_value=0)
    people["n_catch_correct"] = catch.sum().astype(float).reindex(people.index, fill_value=0.0)
    people["catch_accuracy"] = people["n_catch_correct"] / people["n_catch"].replace(0, np.nan)
    sides = df[kind.eq("main")].groupby("participant_id")["chosen_side"].nunique()
    people["sides_used"] = sides.reindex(people.index, fill_value=0)
    # every exported row is an answer; a window not recorded (an older export) breaks no rule
    small = ((df["window_width"] < rules.min_window_width) | (df["window_height"] < rules.min_window_height))
    small = small.fillna(False).astype(bool)
    people["small_window_answers"] = small.groupby(df["participant_id"]).sum().reindex(people.index, fill_value=0)

    total_s = people["total_ms"] / 1000.0
    people["fail_incomplete"] = people["participant_status"].ne("completed") | people["total_ms"].isna()
    people["fail_catch"] = (people["n_catch"] > 0) & (
        people["n_catch_correct"] < rules.min_catch_accuracy * people["n_catch"] - CATCH_TOLERANCE
    )
    people["fail_instructions"] = ~(people["instruction_ms"] / 1000.0 >= rules.min_instruction_s)
    people["fail_total_time"] = total_s.notna() & ~total_s.between(rules.min_total_s, rules.max_total_s)
    people["fail_sides"] = rules.require_both_sides & (people["sides_used"] < 2)
    people["fail_practice"] = rules.exclude_practice_flagged & people["practice_flagged"].astype(int).eq(1)
    people["fail_window"] = people["small_window_answers"] > 0
    fails = [f"fail_{key}" for key in REASONS]
    people[fails] = people[fails].astype(bool)
    people["excluded"] = people[fails].any(axis=1)
    people["reasons"] = [
        "; ".join(rules.reason(key) for key in REASONS if row[f"fail_{key}"]) for _, row in people.iterrows()
    ]
    return people.reset_index()


def exclusion_summary(table: pd.DataFrame, conditions: list[str] | None = None) -> pd.DataFrame:
    """Per condition: participants, how many failed each rule, excluded, included."""
    conditions = conditions or sorted(table["condition"].unique())
    grouped = table.groupby("condition")
    summary = pd.DataFrame(
        {
            "participants": grouped.size(),
            **{key: grouped[f"fail_{key}"].sum() for key in REASONS},
            "excluded": grouped["excluded"].sum(),
        }
    ).reindex(conditions, fill_value=0)
    summary["included"] = summary["participants"] - summary["excluded"]
    summary.loc["all"] = summary.sum()
    summary.index.name = "condition"
    return summary.reset_index().astype({c: int for c in summary.columns})


RT_CLOCKS = {"rt_ms": "client", "server_elapsed_ms": "server"}  # clock columns read by the RT floor


def included_ids(table: pd.DataFrame) -> set[str]:
    """The participants of ``participant_table`` that no rule excluded."""
    return set(table.loc[~table["excluded"], "participant_id"])


def fast_trials(df: pd.DataFrame, rules: ExclusionRules = ExclusionRules()) -> pd.DataFrame:
    """Per row, whether each clock present in the export is under the RT floor (main trials only)."""
    main = df["trial_kind"].eq("main")
    return pd.DataFrame(
        {clock: main & (df[column] < rules.min_rt_ms) for column, clock in RT_CLOCKS.items() if column in df}
    )


def fast_trial_summary(
    df: pd.DataFrame, table: pd.DataFrame, conditions: list[str], rules: ExclusionRules = ExclusionRules()
) -> pd.DataFrame:
    """Per condition, among included participants' main trials: how many each clock puts under the floor."""
    main = df["trial_kind"].eq("main") & df["participant_id"].isin(included_ids(table))
    fast = fast_trials(df, rules)[main]
    summary = fast.groupby(df.loc[main, "condition"]).sum()
    summary.columns = [f"under_floor_{clock}" for clock in summary.columns]
    summary.insert(0, "main_trials", df[main].groupby("condition").size())
    summary["dropped"] = fast.any(axis=1).groupby(df.loc[main, "condition"]).sum()
    summary = summary.reindex(conditions, fill_value=0)
    summary.loc["all"] = summary.sum()
    summary.index.name = "condition"
    return summary.reset_index().astype({c: int for c in summary.columns})


def model_rows(df: pd.DataFrame, table: pd.DataFrame, rules: ExclusionRules = ExclusionRules()) -> pd.DataFrame:
    """The main trials of the included participants, minus those under the RT floor: what the model sees."""
    included = df["participant_id"].isin(included_ids(table))
    keep = df["trial_kind"].eq("main") & included & ~fast_trials(df, rules).any(axis=1)
    return df[keep].reset_index(drop=True)


def sample_size_warnings(summary: pd.DataFrame, minimum: int) -> list[str]:
    """A warning per condition with fewer than ``minimum`` included participants (``exclusion_summary``)."""
    warnings = []
    for row in summary[summary["condition"] != "all"].itertuples():
        if row.included == 1:
            warnings.append(
                f"condition {row.condition!r} has 1 included participant: condition and participant are confounded, "
                "so the participant SD cannot be estimated (it collapses towards 0) and the p-values of its "
                "contrasts are meaningless"
            )
        elif row.included < minimum:
            warnings.append(
                f"condition {row.condition!r} has {row.included} included participants, fewer than {minimum} "
                "(--min-participants): its estimates and the participant SD are unstable"
            )
    return warnings
