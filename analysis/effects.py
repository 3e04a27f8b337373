"""Contrasts, simple effects and predicted accuracies from the fitted fixed effects and their covariance.

Everything here is a linear function ``L beta`` (log-odds) or a back-transform
of one, with the delta method for standard errors, as R's ``emmeans`` computes
them for a ``glmer`` fit (asymptotic, no degrees of freedom):

- a cell is one condition x network at the population level (random effects
  at zero: a typical participant and unit);
- a marginal mean averages the cells of one level over the other factor's
  levels on the log-odds scale (``emmeans(m, ~ condition)``);
- a contrast is the difference of two marginal means in log-odds; its
  difference in percentage points is that of the two back-transformed marginal
  means (``regrid``), with a delta-method interval;
- a simple effect is a condition contrast within one network
  (``emmeans(m, ~ condition | network)``), for models with the interaction.

P-values are Holm-corrected within each family (``contrasts.Contrast.family``).
Holm has no interval of its own (emmeans turns ``adjust = "holm"`` into Bonferroni
for ``confint``), so each contrast also gets its Bonferroni-adjusted interval
(level 1 - alpha/m for a family of m tests: ``*_adj`` columns) beside the
unadjusted one, and the report names each on its line.

A contrast whose estimate is finite only through the normal prior (separation,
``--prior normal``) is marked ``prior_regularised``; its p-value is then a
likelihood-ratio test (``p_method``), given by the caller (``models.contrast_lrt``),
since its Wald p comes mostly from the prior.
Each row carries the fit's ``converged`` flag, ``warning`` (the kinds of the
diagnosed problems and notes, ``models.FitResult.warnings``, that touch its
terms) and ``trusted`` (converged, and no problem of the main model touches it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from analysis.contrasts import Contrast
from analysis.models import Design, FitResult, wald_table


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


def marginal_row(design: Design, factor: str, level: str, within: str | None = None) -> np.ndarray:
    """The design row of one level averaged over the other factor (or, ``within``, at one of its levels)."""
    if factor == "condition":
        return np.mean([design.row(level, n) for n in ([within] if within else design.networks)], axis=0)
    return np.mean([design.row(c, level) for c in ([within] if within else design.conditions)], axis=0)


def _quantile(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def adjusted_quantile(level: float, family_size: int) -> float:
    """The normal quantile of a Bonferroni interval: level 1 - (1 - level) / m for a family of m tests."""
    return _quantile(1 - (1 - level) / family_size)


ADJUSTMENT = "Bonferroni"  # the intervals matching Holm's p-values (as emmeans' confint)
WALD_CI = "Wald"  # ci_method of the intervals computed here (analysis.intervals offers the others)
DELTA_METHOD = "delta-method Wald"  # pp_method of the percentage points' intervals computed here


def adjust_within_families(table: pd.DataFrame, level: float) -> np.ndarray:
    """Add ``p_holm`` and ``family_size`` (after ``p``) and the Bonferroni interval ``ci_*_adj`` of
    ``estimate`` +- q ``se`` to a table with a ``family`` column; return each row's quantile q."""
    p_holm = pd.Series(np.nan, index=table.index)
    family_size = pd.Series(0, index=table.index)
    for _, members in table.groupby("family", sort=False).groups.items():
        p_holm[members] = holm(table.loc[members, "p"].to_numpy())
        family_size[members] = len(members)
    after = table.columns.get_loc("p_method" if "p_method" in table else "p") + 1
    table.insert(after, "p_holm", p_holm.to_numpy())
    table.insert(after + 1, "family_size", family_size.to_numpy())
    q_adj = np.array([adjusted_quantile(level, m) for m in family_size])
    table["ci_lower_adj"] = table["estimate"] - q_adj * table["se"]
    table["ci_upper_adj"] = table["estimate"] + q_adj * table["se"]
    return q_adj


def _estimate(fit: FitResult, rows: list[tuple[Contrast, str | None]], level: float,
              tests: dict[str, float] | None = None) -> pd.DataFrame:
    """Log-odds and percentage-point differences, Holm within each family, the fit's convergence.

    ``tests``: contrast label -> likelihood-ratio p-value, used instead of the Wald p (``p_method``).
    """
    a = np.array([marginal_row(fit.design, c.factor, c.level, within) for c, within in rows])
    b = np.array([marginal_row(fit.design, c.factor, c.versus, within) for c, within in rows])
    L = a - b
    estimate = L @ fit.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, fit.vcov, L))
    table = wald_table([c.label for c, _ in rows], estimate, se, level).rename(columns={"name": "contrast"})
    families = [c.family + (f" | {within}" if within else "") for c, within in rows]
    table.insert(1, "family", families)
    table.insert(2, "factor", [c.factor for c, _ in rows])
    table.insert(3, "level", [c.level for c, _ in rows])
    table.insert(4, "versus", [c.versus for c, _ in rows])
    if any(within for _, within in rows):
        table.insert(5, "within", [within for _, within in rows])
    terms = [{t for t, w in zip(fit.terms, row) if w != 0} for row in L]
    tests = tests or {}
    table.insert(table.columns.get_loc("p"), "p_wald", table["p"])
    table["p"] = [tests.get(label, p) for label, p in zip(table["contrast"], table["p_wald"])]
    table.insert(table.columns.get_loc("p") + 1, "p_method",
                 ["likelihood ratio" if label in tests else "Wald" for label in table["contrast"]])
    q_adj = adjust_within_families(table, level)
    pa, pb = expit(a @ fit.beta), expit(b @ fit.beta)
    gradient = 100 * ((pa * (1 - pa))[:, None] * a - (pb * (1 - pb))[:, None] * b)
    pp_se = np.sqrt(np.einsum("ij,jk,ik->i", gradient, fit.vcov, gradient))
    table["pp"] = 100 * (pa - pb)
    table["pp_se"] = pp_se
    table["pp_lower"] = table["pp"] - _quantile(level) * pp_se
    table["pp_upper"] = table["pp"] + _quantile(level) * pp_se
    table["pp_lower_adj"] = table["pp"] - q_adj * pp_se
    table["pp_upper_adj"] = table["pp"] + q_adj * pp_se
    table["ci_method"] = WALD_CI
    table["pp_method"] = DELTA_METHOD
    table["prior_regularised"] = [fit.prior_regularised(t) for t in terms]
    table["converged"] = fit.converged
    table["warning"] = [fit.warning_for(row) for row in L]  # kinds of the diagnosed problems and notes touching it
    # an error of the main model on one of its terms voids it; a note (singular, prior-regularised) does not
    table["trusted"] = [fit.trusts(t) for t in terms]
    return table


def estimate_contrasts(fit: FitResult, contrasts: list[Contrast], level: float = 0.95,
                       tests: dict[str, float] | None = None) -> pd.DataFrame:
    """Per contrast: log-odds difference with Wald interval (unadjusted and Bonferroni), z, p, p_holm,
    odds ratio, percentage points; ``tests`` replaces the Wald p of some contrasts by an LRT's."""
    return _estimate(fit, [(c, None) for c in contrasts], level, tests)


def simple_effects(fit: FitResult, contrasts: list[Contrast], level: float = 0.95) -> pd.DataFrame:
    """Each condition contrast within each network; Holm within the contrasts of one family and network."""
    rows = [(c, n) for n in fit.design.networks for c in contrasts if c.factor == "condition"]
    return _estimate(fit, rows, level)


def _predictions(fit: FitResult, names: list[tuple[str, str]], L: np.ndarray, level: float) -> pd.DataFrame:
    """Log-odds with Wald intervals and their back-transform (emmeans' ``type = "response"``)."""
    estimate = L @ fit.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, fit.vcov, L))
    q = _quantile(level)
    table = pd.DataFrame(names, columns=["condition", "network"])
    table["log_odds"] = estimate
    table["se"] = se
    table["ci_lower"] = estimate - q * se
    table["ci_upper"] = estimate + q * se
    table["probability"] = expit(estimate)
    table["probability_se"] = table["probability"] * (1 - table["probability"]) * se
    table["probability_lower"] = expit(table["ci_lower"])
    table["probability_upper"] = expit(table["ci_upper"])
    table["prior_regularised"] = [fit.prior_regularised({t for t, w in zip(fit.terms, row) if w != 0}) for row in L]
    return table


def cell_predictions(fit: FitResult, level: float = 0.95) -> pd.DataFrame:
    """Predicted log-odds and probability of a correct choice per condition x network."""
    design = fit.design
    cells = [(c, n) for c in design.conditions for n in design.networks]
    return _predictions(fit, cells, np.array([design.row(c, n) for c, n in cells]), level)


def marginal_predictions(fit: FitResult, level: float = 0.95) -> pd.DataFrame:
    """Per condition (averaged over networks) and per network (averaged over conditions); "all" marks the average."""
    design = fit.design
    names = [(c, "all") for c in design.conditions] + [("all", n) for n in design.networks]
    L = [marginal_row(design, "condition", c) for c in design.conditions]
    L += [marginal_row(design, "network", n) for n in design.networks]
    return _predictions(fit, names, np.array(L), level)


CHANCE = 0.5  # two images, one correct: the accuracy of a guess


def chance_tests(fit: FitResult, rows: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per condition: is accuracy above chance (50%)?

    The model's answer: the condition's marginal log-odds (averaged over networks, a typical participant
    and unit: emmeans' ``test(emmeans(m, ~ condition))``) against 0, Wald z, Holm across the conditions
    (one family) with Bonferroni intervals beside the unadjusted ones. The model-free check: the
    participants' mean accuracies (main trials the model sees) against 0.5, one-sample t-test and its
    t interval.
    """
    design = fit.design
    L = np.array([marginal_row(design, "condition", c) for c in design.conditions])
    table = _predictions(fit, [(c, "all") for c in design.conditions], L, level).drop(columns="network")
    m = len(table)
    q_adj = adjusted_quantile(level, m)
    table["ci_lower_adj"] = table["log_odds"] - q_adj * table["se"]
    table["ci_upper_adj"] = table["log_odds"] + q_adj * table["se"]
    table["probability_lower_adj"] = expit(table["ci_lower_adj"])
    table["probability_upper_adj"] = expit(table["ci_upper_adj"])
    table["z"] = table["log_odds"] / table["se"]
    table["p"] = 2 * stats.norm.sf(np.abs(table["z"]))
    table["p_holm"] = holm(table["p"].to_numpy())
    table["family_size"] = m
    people = rows.groupby(["condition", "participant_id"])["correct"].mean().astype(float)
    checks = []
    for condition in design.conditions:
        accuracy = people.loc[condition].to_numpy()
        if len(accuracy) < 2 or np.ptp(accuracy) == 0:  # no spread: the t-test is undefined
            checks.append((len(accuracy), accuracy.mean(), np.nan, np.nan, np.nan))
            continue
        test = stats.ttest_1samp(accuracy, CHANCE)
        interval = test.confidence_interval(level)
        checks.append((len(accuracy), accuracy.mean(), interval.low, interval.high, test.pvalue))
    columns = ["n_participants", "participant_mean", "participant_lower", "participant_upper", "t_p"]
    table[columns] = pd.DataFrame(checks, columns=columns, index=table.index)
    terms = [{t for t, w in zip(fit.terms, row) if w != 0} for row in L]
    table["trusted"] = [fit.trusts(t) for t in terms]
    return table
