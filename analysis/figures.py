"""Figures (matplotlib, PNG and SVG), drawn on Figure objects: no pyplot, no global state."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter
from scipy.special import expit, logit

CONDITION_COLOURS = {"maco": "#c0392b", "maco_mask": "#e67e22", "olah": "#2c7fb8", "none": "#7f7f7f"}
FALLBACK = ["#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def _colour(condition: str, index: int) -> str:
    return CONDITION_COLOURS.get(condition, FALLBACK[index % len(FALLBACK)])


def _save(fig: Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    return paths


def _grouped(
    ax, table: pd.DataFrame, value: str, lower: str, upper: str, bars: bool, joined: bool = False,
    legend_x: float = 1.0,
) -> None:
    """One group per network, one mark (or bar) per condition within it, with its interval.

    ``joined``: a thin line links a condition's marks across networks (shows parallel profiles);
    ``legend_x``: where the legend starts, in axes widths (past a right-hand axis).
    """
    conditions = list(dict.fromkeys(table["condition"]))
    networks = list(dict.fromkeys(table["network"]))
    width = 0.8 / len(conditions)
    for i, condition in enumerate(conditions):
        part = table[table["condition"] == condition].set_index("network").reindex(networks)
        x = np.arange(len(networks)) - 0.4 + width * (i + 0.5)
        y = part[value].to_numpy(dtype=float)
        error = np.vstack([y - part[lower].to_numpy(dtype=float), part[upper].to_numpy(dtype=float) - y])
        colour = _colour(condition, i)
        if bars:
            ax.bar(x, y, width * 0.9, color=colour, label=condition, yerr=error, capsize=3, ecolor="black")
        else:
            ax.errorbar(x, y, yerr=error, fmt="o-" if joined else "o", color=colour, label=condition, capsize=3,
                        markersize=6, lw=0.8, alpha=0.85)
    ax.set_xticks(np.arange(len(networks)), networks)
    ax.set_xlabel("network")
    ax.legend(title="condition", frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(legend_x, 1.0))
    ax.spines[["top", "right"]].set_visible(False)


PROBABILITY_TICKS = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]
FIGURE5_INTERVALS = (
    "Bars: 95% Wald interval of each cell's prediction for a typical participant and unit. They include the "
    "intercept's uncertainty, shared by all cells, so they overlap even where a contrast is significant: "
    "read differences from the contrasts table, not from overlap."
)


def figure5_model(interaction: bool) -> str:
    """Which model Figure 5 shows, in words (also the report's caption)."""
    if interaction:
        return "interaction model (condition x network): each cell has its own mean"
    return "additive model (condition + network): the lines are parallel across networks by construction"


def plot_log_odds(cells: pd.DataFrame, stem: Path, interaction: bool, converged: bool = True) -> list[Path]:
    """Figure 5 layout: predicted log-odds of a correct choice per condition per network, 95% CI.

    Says which model it shows, what its intervals are, and when the fit did not converge; the right
    axis reads the same values as probabilities.
    """
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    _grouped(ax, cells, "log_odds", "ci_lower", "ci_upper", bars=False, joined=True, legend_x=1.14)
    ax.set_ylabel("log-odds of a correct choice (95% CI)")
    ax.set_title(f"Predicted log-odds by condition and network\n{figure5_model(interaction)}", fontsize=9)
    if converged:  # log-odds in the hundreds (separation) leave no probability scale to read
        right = ax.secondary_yaxis("right", functions=(expit, logit))
        right.set_ticks(PROBABILITY_TICKS)  # the default locator leaves the compressed end near 1 bare
        right.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        right.set_ylabel("probability correct")
    fig.text(0.01, -0.02, textwrap.fill(FIGURE5_INTERVALS, 115), fontsize=7, va="top", color="#444")
    if not converged:
        ax.text(0.5, 0.97, "THE MODEL DID NOT CONVERGE: do not interpret", transform=ax.transAxes, ha="center",
                va="top", color="#c0392b", fontsize=11, fontweight="bold")
    return _save(fig, stem)


def plot_accuracy(descriptives: pd.DataFrame, stem: Path) -> list[Path]:
    """Accuracy per condition x network cell, mean across participants ± 2 SEM."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    _grouped(ax, descriptives, "accuracy", "lower_2sem", "upper_2sem", bars=True)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (mean ± 2 SEM across participants)")
    ax.set_title("Accuracy on main trials", fontsize=10)
    return _save(fig, stem)


def plot_power(power: pd.DataFrame, stem: Path, target: float = 0.8) -> list[Path]:
    """Estimated power against the number of participants, with 95% binomial intervals."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    x = power["participants"].to_numpy(dtype=float)
    y = power["power"].to_numpy(dtype=float)
    error = np.vstack([y - power["ci_lower"], power["ci_upper"] - y])
    ax.errorbar(x, y, yerr=error, fmt="o-", color="#c0392b", capsize=3)
    ax.axhline(target, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("participants (all conditions)")
    ax.set_ylabel("power")
    ax.set_title(
        f"MACO vs Olah: true effect {power['true_effect'].iloc[0]:.2f} log-odds, alpha {power['alpha'].iloc[0]:g}",
        fontsize=10,
    )
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, stem)
