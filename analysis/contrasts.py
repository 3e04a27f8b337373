"""Planned contrasts and cell log-odds from the fitted fixed effects and their covariance.

A contrast between two levels of one factor is the difference of their
population-level log-odds averaged over the levels of the other factor (with
no interaction in the model this is simply a difference of coefficients). Its
variance is ``L V L'``; p-values are Holm-corrected across the family.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.models import FitResult, wald_table


@dataclass(frozen=True)
class Contrast:
    label: str
    factor: str  # "condition" or "network"
    level: str
    versus: str


def default_contrasts(conditions: list[str], networks: list[str], vit: str = "vit_b16") -> list[Contrast]:
    """MACO vs Olah, Olah vs none, MACO with mask vs without, ViT vs each CNN.

    Contrasts whose levels the study does not have are left out.
    """
    planned = [
        Contrast("MACO vs Olah", "condition", "maco", "olah"),
        Contrast("Olah vs none", "condition", "olah", "none"),
        Contrast("MACO with mask vs without", "condition", "maco_mask", "maco"),
    ]
    planned += [Contrast(f"{vit} vs {cnn}", "network", vit, cnn) for cnn in networks if cnn != vit]
    levels = {"condition": set(conditions), "network": set(networks)}
    return [c for c in planned if {c.level, c.versus} <= levels[c.factor]]


def contrast_vector(fit: FitResult, contrast: Contrast) -> np.ndarray:
    design = fit.design
    if contrast.factor == "condition":
        pairs = [((contrast.level, n), (contrast.versus, n)) for n in design.networks]
    else:
        pairs = [((c, contrast.level), (c, contrast.versus)) for c in design.conditions]
    return np.mean([design.row(*a) - design.row(*b) for a, b in pairs], axis=0)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted


def estimate_contrasts(fit: FitResult, contrasts: list[Contrast], level: float = 0.95) -> pd.DataFrame:
    """Log-odds difference, SE, Wald interval, z, p, Holm p and odds ratio per contrast."""
    if not contrasts:
        return pd.DataFrame(columns=["contrast", "estimate", "se", "z", "p", "p_holm"])
    L = np.array([contrast_vector(fit, c) for c in contrasts])
    estimate = L @ fit.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, fit.vcov, L))
    table = wald_table([c.label for c in contrasts], estimate, se, level).rename(columns={"name": "contrast"})
    table.insert(1, "factor", [c.factor for c in contrasts])
    table.insert(2, "level", [c.level for c in contrasts])
    table.insert(3, "versus", [c.versus for c in contrasts])
    table.insert(table.columns.get_loc("p") + 1, "p_holm", holm(table["p"].to_numpy()))
    return table


def cell_log_odds(fit: FitResult, level: float = 0.95) -> pd.DataFrame:
    """Population-level log-odds of a correct choice per condition x network, with intervals."""
    design = fit.design
    cells = [(c, n) for c in design.conditions for n in design.networks]
    L = np.array([design.row(c, n) for c, n in cells])
    estimate = L @ fit.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, fit.vcov, L))
    table = wald_table([f"{c} x {n}" for c, n in cells], estimate, se, level)
    table.insert(0, "condition", [c for c, _ in cells])
    table.insert(1, "network", [n for _, n in cells])
    table["probability"] = 1 / (1 + np.exp(-estimate))
    return table.drop(columns=["name", "z", "p", "odds_ratio", "or_lower", "or_upper"])
