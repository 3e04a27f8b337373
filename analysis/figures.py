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


def _bars(ax, table: pd.DataFrame, value: str, lower: str, upper: str) -> None:
    """One group per network, one bar per condition within it, with its interval."""
    conditions = list(dict.fromkeys(table["condition"]))
    networks = list(dict.fromkeys(table["network"]))
    width = 0.8 / len(conditions)
    for i, condition in enumerate(conditions):
        part = table[table["condition"] == condition].set_index("network").reindex(networks)
        x = np.arange(len(networks)) - 0.4 + width * (i + 0.5)
        y = part[value].to_numpy(dtype=float)
        error = np.vstack([y - part[lower].to_numpy(dtype=float), part[upper].to_numpy(dtype=float) - y])
        colour = _colour(condition, i)
        ax.bar(x, y, width * 0.9, color=colour, label=condition, yerr=error, capsize=3, ecolor="black")
    ax.set_xticks(np.arange(len(networks)), networks)
    ax.set_xlabel("network")
    ax.legend(title="condition", frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)


PROBABILITY_TICKS = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]
FIGURE5_INTERVALS = (
    "Each condition's points sit at the network's own position and its line joins them, so vertical gaps "
    "between lines are differences between conditions at that network; the 95% Wald interval of each cell "
    "(a typical participant and unit) is drawn just beside its point, in legend order. The intervals include "
    "the intercept's uncertainty, shared by all cells, so they overlap even where a contrast is significant: "
    "read differences from the contrasts table, not from overlap."
)
REGULARISED_NOTE = "open marker: prior-regularised (separation; finite only through the normal prior)"
INTERVAL_STEP = 0.05  # horizontal step between the intervals drawn beside one network's points


def figure5_model(interaction: bool) -> str:
    """Which model Figure 5 shows, in words (also the report's caption)."""
    if interaction:
        return "interaction model (condition x network): each cell has its own mean"
    return "additive model (condition + network): the lines are parallel across networks by construction"


def log_odds_figure(cells: pd.DataFrame, interaction: bool, converged: bool = True) -> Figure:
    """Figure 5: predicted log-odds of a correct choice per condition (one line) across networks, 95% CI.

    Points are not dodged (a dodge shifts each line sideways, and steep parallel lines then seem to
    cross); only the intervals step aside. Says which model it shows, marks prior-regularised cells,
    and says when the fit did not converge; the right axis reads the values as probabilities.
    """
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    conditions = list(dict.fromkeys(cells["condition"]))
    networks = list(dict.fromkeys(cells["network"]))
    x = np.arange(len(networks), dtype=float)
    regularised = cells.get("prior_regularised", pd.Series(False, index=cells.index)).astype(bool)
    for i, condition in enumerate(conditions):
        mine = cells["condition"] == condition
        part = cells[mine].set_index("network").reindex(networks)
        y = part["log_odds"].to_numpy(dtype=float)
        colour = _colour(condition, i)
        ax.plot(x, y, "-", color=colour, lw=1.2, alpha=0.9, label=condition, marker="o", markersize=6)
        hollow = regularised[mine].set_axis(cells.loc[mine, "network"]).reindex(networks).fillna(False).to_numpy()
        if hollow.any():
            ax.plot(x[hollow], y[hollow], "o", color="white", markeredgecolor=colour, markersize=6, zorder=3)
        step = (i - (len(conditions) - 1) / 2) * INTERVAL_STEP
        error = np.vstack([y - part["ci_lower"].to_numpy(dtype=float), part["ci_upper"].to_numpy(dtype=float) - y])
        ax.errorbar(x + step, y, yerr=error, fmt="none", ecolor=colour, capsize=2, lw=0.9, alpha=0.8)
    ax.set_xticks(x, networks)
    ax.set_xlim(-0.5, len(networks) - 0.5)
    ax.set_xlabel("network")
    ax.spines[["top"]].set_visible(False)
    ax.legend(title="condition", frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.14, 1.0))
    ax.set_ylabel("log-odds of a correct choice (95% CI)")
    ax.set_title(f"Predicted log-odds by condition and network\n{figure5_model(interaction)}", fontsize=9)
    if converged:  # log-odds in the hundreds (separation) leave no probability scale to read
        right = ax.secondary_yaxis("right", functions=(expit, logit))
        right.set_ticks(PROBABILITY_TICKS)  # the default locator leaves the compressed end near 1 bare
        right.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        right.set_ylabel("probability correct")
    caption = FIGURE5_INTERVALS + (f" {REGULARISED_NOTE[0].upper()}{REGULARISED_NOTE[1:]}." if regularised.any() else "")
    fig.text(0.01, -0.02, textwrap.fill(caption, 115), fontsize=7, va="top", color="#444")
    if not converged:
        ax.text(0.5, 0.97, "THE MODEL DID NOT CONVERGE: do not interpret", transform=ax.transAxes, ha="center",
                va="top", color="#c0392b", fontsize=11, fontweight="bold")
    return fig


def plot_log_odds(cells: pd.DataFrame, stem: Path, interaction: bool, converged: bool = True) -> list[Path]:
    """Figure 5 (``log_odds_figure``) as PNG and SVG."""
    return _save(log_odds_figure(cells, interaction, converged), stem)


def plot_accuracy(descriptives: pd.DataFrame, stem: Path) -> list[Path]:
    """Accuracy per condition x network cell, mean across participants ± 2 SEM."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    _bars(ax, descriptives, "accuracy", "lower_2sem", "upper_2sem")
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


NETWORK_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]


def plot_caterpillar(units: pd.DataFrame, stem: Path) -> list[Path]:
    """The units' conditional modes (log-odds), sorted, +-1.96 conditional SD, one colour per network."""
    ordered = units.sort_values("mode").reset_index(drop=True)
    networks = sorted(set(units["network"]))  # the same colour for a network in every report
    fig = Figure(figsize=(6.5, 1.2 + 0.16 * len(ordered)))
    ax = fig.subplots()
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    for i, network in enumerate(networks):
        part = ordered[ordered["network"] == network]
        ax.errorbar(part["mode"], part.index, xerr=1.959964 * part["cond_sd"], fmt="o", markersize=3.5, lw=0.8,
                    capsize=0, color=NETWORK_COLOURS[i % len(NETWORK_COLOURS)], label=network)
    ax.set_yticks(ordered.index, ordered["unit"], fontsize=6)
    ax.set_ylim(-0.8, len(ordered) - 0.2)
    ax.set_xlabel("unit random intercept (log-odds; conditional mode ± 1.96 conditional SD)")
    ax.set_title("Units: easier (right) or harder (left) than their network's average", fontsize=9)
    ax.legend(title="network", frameon=False, fontsize=7, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, stem)
