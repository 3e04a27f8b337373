"""Accuracy per participant and per condition x network cell (+-2 SEM across participants)."""
from __future__ import annotations

import numpy as np
import pandas as pd


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
