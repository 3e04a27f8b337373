"""GLMM engines: one formula family, fitted by mixedlm (Python, Rust core) or R's lme4/blme.

Both engines receive the model frame (``y``, ``participant``, ``unit``, dummy
columns ``x1..xk``) and, per model name, its fixed columns; they return an
:class:`EngineFit` per model. Every engine reports the same diagnostics
(``analysis.diagnostics``), so the report reads one list whichever engine ran.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.diagnostics import FitWarning

INTERCEPT = "(Intercept)"
GROUPS = ("participant", "unit")
ENGINES = ("mixedlm", "lme4")
PRIORS = ("none", "normal")


class EngineError(RuntimeError):
    """The engine is missing or failed."""


@dataclass(frozen=True)
class NormalPrior:
    """Independent normal priors on the fixed effects, centred at 0 (log-odds scale).

    The defaults are blme's ``normal()`` (``sd = c(10, 2.5)``): wide on the
    intercept, weakly informative on the effects (an odds ratio beyond
    exp(2 x 2.5) = 150 is a priori unlikely), as Gelman et al. (2008) advise.
    """

    sd_intercept: float = 10.0
    sd: float = 2.5

    def sds(self, n_fixed: int) -> np.ndarray:
        return np.r_[self.sd_intercept, np.full(n_fixed - 1, self.sd)]

    def deviance(self, beta: np.ndarray) -> float:
        """-2 log density of ``beta`` (blme's "prior dev")."""
        sds = self.sds(len(beta))
        return float(np.sum((beta / sds) ** 2) + np.sum(np.log(2 * np.pi * sds**2)))


@dataclass(frozen=True)
class RandomEffects:
    """The random part: intercepts for participants and units, optionally slopes of units."""

    slopes: tuple[str, ...] = ()  # frame columns with a by-unit random slope
    correlated: bool = True  # False: lme4's || (exact here: the slope columns are numeric dummies)
    participant_slopes: tuple[str, ...] = ()  # frame columns with a by-participant random slope (correlated)

    def formula(self) -> str:
        unit = " + ".join(("1",) + self.slopes)
        bar = "|" if self.correlated or not self.slopes else "||"
        participant = " + ".join(("1",) + self.participant_slopes)
        return f"({participant}|participant) + ({unit}{bar}unit)"


@dataclass
class EngineFit:
    """What an engine returns for one formula."""

    beta: np.ndarray
    loglik: float  # log-likelihood (Laplace), without the prior's density
    npar: int
    # lme4's as.data.frame(VarCorr()): group, var1, var2 ("" on the diagonal), sdcor
    varcorr: pd.DataFrame
    converged: bool
    singular: bool
    messages: list[str] = field(default_factory=list)
    warnings: list[FitWarning] = field(default_factory=list)
    vcov: np.ndarray | None = None
    vcov_method: str = ""
    # conditional modes of the random effects with their conditional SDs (lme4's ranef(condVar = TRUE)):
    # group, level, term, mode, cond_sd; with the vcov only
    ranef: pd.DataFrame | None = None

    @property
    def re_sd(self) -> dict[str, float]:
        """Random-intercept standard deviation per group."""
        sds = self.varcorr[(self.varcorr["var1"] == INTERCEPT) & (self.varcorr["var2"] == "")]
        return dict(zip(sds["group"], sds["sdcor"].astype(float)))


def formula(columns: list[str], random: RandomEffects) -> str:
    fixed = " + ".join(["1"] + [c for c in columns if c != INTERCEPT])
    return f"y ~ {fixed} + {random.formula()}"


def fit_engine(
    engine: str,
    frame: pd.DataFrame,
    formulas: dict[str, list[str]],
    with_vcov: set[str],
    random: RandomEffects,
    prior: NormalPrior | None,
) -> tuple[dict[str, EngineFit], dict[str, str]]:
    """Fit each named model (its fixed columns of ``frame``); vcov for those in ``with_vcov``."""
    if engine == "mixedlm":
        from analysis.engines.mixedlm_engine import fit_mixedlm as fitter
    elif engine == "lme4":
        from analysis.engines.lme4_engine import fit_lme4 as fitter
    else:
        raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return fitter(frame, formulas, with_vcov, random, prior)
