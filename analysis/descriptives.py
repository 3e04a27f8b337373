"""Accuracy per participant and per condition x network cell (+-2 SEM across participants), catch and RT summaries."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.exclusions import included_ids


def participant_accuracy(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per participant and network: main trials answered and the share correct."""
    grouped = rows.groupby(["participant_id", "condition", "network"], sort=True)["correct"]
    out = grouped.agg(n_trials="size", n_correct="sum").reset_index()
    out["n_correct"] = out["n_correct"].astype(int)
    out["accuracy"] = out["n_correct"] / out["n_trials"]
    return out


def cell_accuracy(rows: pd.DataFrame, conditions: list[str], networks: list[str]) -> pd.DataFrame:
    """Mean of participants' accuracies per cell, its SEM and the +-2 SEM band."""
    per_participant = participant_accuracy(rows)
    grouped = per_participant.groupby(["condition", "network"])
    cells = grouped.agg(
        n_participants=("participant_id", "nunique"),
        n_trials=("n_trials", "sum"),
        accuracy=("accuracy", "mean"),
        sd=("accuracy", "std"),
    )
    index = pd.MultiIndex.from_product([conditions, networks], names=["condition", "network"])
    cells = cells.reindex(index).reset_index()
    cells["sem"] = cells["sd"] / np.sqrt(cells["n_participants"])
    cells["lower_2sem"] = cells["accuracy"] - 2 * cells["sem"]
    cells["upper_2sem"] = cells["accuracy"] + 2 * cells["sem"]
    return cells


def trial_summary(df: pd.DataFrame, participants: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Catch and main trials per condition, for all participants and the included ones: accuracy and RT quartiles.

    Catch accuracy of all participants shows what the catch rule saw; RTs are the client's ``rt_ms``,
    before the RT floor.
    """
    samples = {"all": df, "included": df[df["participant_id"].isin(included_ids(participants))]}
    parts = []
    for sample, rows in samples.items():
        rows = rows[rows["trial_kind"].isin(["catch", "main"])]
        grouped = rows.groupby(["condition", "trial_kind"], sort=True)
        part = grouped.agg(
            participants=("participant_id", "nunique"),
            trials=("correct", "size"),
            accuracy=("correct", "mean"),
            rt_q1_ms=("rt_ms", lambda rt: rt.quantile(0.25)),
            rt_median_ms=("rt_ms", "median"),
            rt_q3_ms=("rt_ms", lambda rt: rt.quantile(0.75)),
        ).reset_index()
        part.insert(2, "sample", sample)
        parts.append(part)
    table = pd.concat(parts)
    table["order"] = table["condition"].map({c: i for i, c in enumerate(conditions)})
    table = table.sort_values(["trial_kind", "order", "sample"]).drop(columns="order")
    table["accuracy"] = table["accuracy"].astype(float)
    rt = ["rt_q1_ms", "rt_median_ms", "rt_q3_ms"]
    table[rt] = table[rt].round().astype(int)  # milliseconds: decimals are noise
    return table.reset_index(drop=True)
