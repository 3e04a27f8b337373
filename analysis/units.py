"""Diagnostics of the unit random effects: which units are easy or hard, and how much the network
contrasts rest on a few of them (a network varies between units, so its contrasts rest on 10-18 units).

The conditional modes of the units' intercepts (lme4's ``ranef(condVar = TRUE)``: a unit's departure
from its network's average, log-odds, for a typical participant) with their conditional SDs, drawn
as a caterpillar plot (``figures.plot_caterpillar``).
"""
from __future__ import annotations

import pandas as pd

from analysis.engines import INTERCEPT
from analysis.models import FitResult

Z95 = 1.959964


def unit_effects(fit: FitResult) -> pd.DataFrame:
    """One row per unit: network, conditional mode, conditional SD, its +-1.96 SD interval, and whether
    that interval excludes 0; sorted from the hardest unit to the easiest."""
    modes = fit.ranef[(fit.ranef["group"] == "unit") & (fit.ranef["term"] == INTERCEPT)]
    network = fit.design.frame.drop_duplicates("unit").set_index("unit")["network"]
    table = pd.DataFrame({"unit": modes["level"].to_numpy(), "mode": modes["mode"].to_numpy(),
                          "cond_sd": modes["cond_sd"].to_numpy()})
    table.insert(1, "network", network.reindex(table["unit"]).to_numpy())
    table["lower"] = table["mode"] - Z95 * table["cond_sd"]
    table["upper"] = table["mode"] + Z95 * table["cond_sd"]
    table["away_from_0"] = (table["lower"] > 0) | (table["upper"] < 0)
    return table.sort_values("mode").reset_index(drop=True)


def extreme_units(units: pd.DataFrame, per_network: int = 2) -> list[str]:
    """Per network, its hardest and its easiest units, in words, for the report."""
    lines = []
    for network, part in units.groupby("network", sort=False):
        hardest = part.nsmallest(per_network, "mode")
        easiest = part.nlargest(per_network, "mode")

        def shown(rows: pd.DataFrame) -> str:
            return ", ".join(f"{r.unit} ({r.mode:+.2f} [{r.lower:.2f}, {r.upper:.2f}])" for r in rows.itertuples())

        away = int(part["away_from_0"].sum())
        lines.append(f"{network} ({len(part)} units, {away} with an interval away from 0): hardest "
                     f"{shown(hardest)}; easiest {shown(easiest)}")
    return lines
