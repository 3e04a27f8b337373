"""Secondary outcome: reaction time, as a linear mixed model of log RT with the primary model's design.

``log(rt_ms) ~ condition + network + (1|participant) + (1|unit)`` on the trials the primary model sees
(after the exclusions and the RT floor), fitted by REML as lme4's ``lmer`` (mixedlm's ``lmer``). The
declared contrasts are differences of log RT: a contrast of +0.10 means the first level's answers
take exp(0.10) = 1.105 times as long. Intervals are 95% Wald (asymptotic z, as the primary model's),
unadjusted and Bonferroni-adjusted within each family, and p-values Holm-adjusted within it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.contrasts import Contrast
from analysis.effects import ADJUSTMENT, adjust_within_families, marginal_row
from analysis.engines import INTERCEPT, RandomEffects, formula
from analysis.engines.mixedlm_engine import varcorr_frame
from analysis.models import Design
from analysis.render import format_p

LOG_RT_FORMULA = "log(rt_ms) ~ condition + network + (1|participant) + (1|unit)"


@dataclass
class LogRtFit:
    design: Design  # the primary model's design; its frame's ``y`` is log RT here
    beta: np.ndarray
    vcov: np.ndarray
    sigma: float  # residual SD on the log scale
    varcorr: pd.DataFrame
    singular: bool
    messages: list[str]

    @property
    def terms(self) -> list[str]:
        return self.design.terms


def fit_log_rt(design: Design, rows: pd.DataFrame) -> LogRtFit:
    """REML fit of log RT with ``design``'s fixed effects; ``rows`` are the primary model's rows."""
    import mixedlm

    frame = design.frame.assign(y=np.log(rows["rt_ms"].to_numpy(dtype=float)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = mixedlm.lmer(formula(design.columns[1:], RandomEffects()), frame, REML=True)
    names = dict(zip(design.columns, design.terms))
    return LogRtFit(
        design=design, beta=np.asarray(result.beta, dtype=float), vcov=np.asarray(result.vcov(), dtype=float),
        sigma=float(result.sigma), varcorr=varcorr_frame(result).replace({"var1": names, "var2": names}),
        singular=bool(result.isSingular()), messages=list(dict.fromkeys(str(w.message) for w in caught)),
    )


def log_rt_fixed_effects(fit: LogRtFit, level: float = 0.95) -> pd.DataFrame:
    """Per term: estimate, SE and Wald interval on the log scale, and the RT ratio exp(estimate)."""
    se = np.sqrt(np.diag(fit.vcov))
    q = float(stats.norm.ppf(0.5 + level / 2))
    table = pd.DataFrame({"term": fit.terms, "estimate": fit.beta, "se": se,
                          "ci_lower": fit.beta - q * se, "ci_upper": fit.beta + q * se})
    table["ratio"] = np.exp(table["estimate"])
    table.loc[table["term"] == INTERCEPT, "ratio"] = np.nan  # exp(intercept) is a median RT, not a ratio
    return table


def wald_contrasts(design: Design, beta: np.ndarray, vcov: np.ndarray, declared: list[Contrast],
                   level: float = 0.95) -> pd.DataFrame:
    """The declared contrasts of a linear predictor (``beta`` over ``design``'s terms): estimate, Wald
    intervals (unadjusted and Bonferroni), z, p, p_holm, and exp(estimate) with its unadjusted interval."""
    L = np.array([marginal_row(design, c.factor, c.level) - marginal_row(design, c.factor, c.versus)
                  for c in declared])
    estimate = L @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, vcov, L))
    q = float(stats.norm.ppf(0.5 + level / 2))
    table = pd.DataFrame({"contrast": [c.label for c in declared], "family": [c.family for c in declared],
                          "estimate": estimate, "se": se, "ci_lower": estimate - q * se,
                          "ci_upper": estimate + q * se})
    table["z"] = estimate / se
    table["p"] = 2 * stats.norm.sf(np.abs(table["z"]))
    adjust_within_families(table, level)
    table["ratio"] = np.exp(estimate)
    table["ratio_lower"] = np.exp(table["ci_lower"])
    table["ratio_upper"] = np.exp(table["ci_upper"])
    return table


def log_rt_contrasts(fit: LogRtFit, declared: list[Contrast], level: float = 0.95) -> pd.DataFrame:
    """The declared contrasts on log RT; ``ratio``: how many times as long."""
    return wald_contrasts(fit.design, fit.beta, fit.vcov, declared, level)


def ratio_verdict(row, ratio: str, scale: str) -> str:
    """One line per contrast of a secondary outcome, adjustments named, as ``report.verdict`` for accuracy:
    ``ratio`` names exp(estimate) (``RT x``), ``scale`` the estimate's scale (``log RT``)."""
    if row.family_size > 1:
        adjusted = (f", [{row.ci_lower_adj:.3f}, {row.ci_upper_adj:.3f}] {ADJUSTMENT}-adjusted for "
                    f"{row.family_size} tests")
        holm_text = f"p_holm = {format_p(row.p_holm)} (Holm over the {row.family_size} tests of family {row.family})"
    else:
        adjusted, holm_text = "", f"the only test of family {row.family}: no adjustment"
    return (f"{row.contrast}: {ratio} {row.ratio:.3f}, 95% Wald CI [{row.ratio_lower:.3f}, {row.ratio_upper:.3f}] "
            f"unadjusted ({scale} {row.estimate:+.3f}, [{row.ci_lower:.3f}, {row.ci_upper:.3f}] unadjusted{adjusted}); "
            f"p = {format_p(row.p)} (Wald z, unadjusted), {holm_text}")


def log_rt_verdict(row) -> str:
    return ratio_verdict(row, "RT x", "log RT")
