"""Secondary outcome: confidence ratings as a cumulative-link (ordinal) mixed model, as R's ``ordinal::clmm``.

``confidence ~ condition + network + (1|participant) + (1|unit)``, logit link, on the trials of the
primary model: ``logit P(confidence <= j) = theta_j - eta`` with ``eta = X beta + u_participant +
u_unit`` (no intercept: the thresholds ``theta`` take its place), so a positive coefficient means
higher ratings. Fitted by maximum likelihood with the Laplace approximation (clmm's default,
``nAGQ = 1``): for given parameters, the random effects' conditional modes by Newton's method, then
log p(y | u) + log N(u; 0, Lambda) - 1/2 log det(Lambda Z'WZ + I). Standard errors: the inverse
Hessian of the Laplace deviance over (thresholds, beta, log SDs), by central differences; the beta
block does not depend on how the other parameters are written. The declared contrasts are
differences of eta: log cumulative odds ratios of a higher rating.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import expit

from analysis.contrasts import Contrast
from analysis.engines import GROUPS
from analysis.engines.mixedlm_engine import deriv12
from analysis.models import Design
from analysis.secondary import ratio_verdict, wald_contrasts

ORDINAL_FORMULA = "confidence ~ condition + network + (1|participant) + (1|unit)"


@dataclass
class OrdinalFit:
    design: Design  # the primary model's design; the thresholds replace its intercept
    levels: list[int]  # the rating levels, ascending
    thresholds: np.ndarray  # theta_1 < ... < theta_{K-1}
    beta: np.ndarray  # the design's effects, without the intercept
    vcov: np.ndarray  # over (thresholds, beta)
    sd: dict[str, float]  # random-intercept SD per group
    loglik: float
    converged: bool
    message: str

    @property
    def terms(self) -> list[str]:
        return self.design.terms[1:]

    @property
    def beta_vcov(self) -> np.ndarray:
        k = len(self.thresholds)
        return self.vcov[k:, k:]


class _Laplace:
    """The Laplace log-likelihood of the cumulative-logit model with crossed random intercepts."""

    def __init__(self, y: np.ndarray, X: np.ndarray, groups: list[np.ndarray]):
        self.y, self.X = y, X
        self.n_levels = int(y.max()) + 1
        self.codes = groups
        self.sizes = [int(c.max()) + 1 for c in groups]
        offsets = np.cumsum([0, *self.sizes[:-1]])
        self.columns = np.stack([c + o for c, o in zip(groups, offsets)], axis=1)  # each row's u indices
        self.q = sum(self.sizes)
        self.u = np.zeros(self.q)  # warm start of the conditional modes

    def unpack(self, x: np.ndarray):
        k = self.n_levels - 1
        thresholds = np.cumsum(np.r_[x[0], np.exp(x[1:k])])
        beta = x[k:k + self.X.shape[1]]
        sds = np.exp(x[k + self.X.shape[1]:])
        return thresholds, beta, sds

    def _derivatives(self, eta: np.ndarray, thresholds: np.ndarray):
        """log p(y_i | eta_i) and its first and second derivatives in eta."""
        bounds = np.r_[-np.inf, thresholds, np.inf]
        a = bounds[self.y + 1] - eta
        b = bounds[self.y] - eta
        Fa, Fb = expit(a), expit(b)
        fa, fb = Fa * (1 - Fa), Fb * (1 - Fb)
        dfa, dfb = fa * (1 - 2 * Fa), fb * (1 - 2 * Fb)
        p = np.clip(Fa - Fb, 1e-300, None)
        first = (fb - fa) / p
        second = (dfa - dfb) / p - first**2
        return np.log(p), first, second

    def loglik(self, x: np.ndarray) -> float:
        thresholds, beta, sds = self.unpack(x)
        variances = np.repeat(sds**2, self.sizes)
        fixed = self.X @ beta
        u = self.u.copy()
        for _ in range(50):  # Newton on the conditional modes
            eta = fixed + u[self.columns].sum(axis=1)
            _, first, second = self._derivatives(eta, thresholds)
            gradient = np.bincount(self.columns.ravel(), np.repeat(first, 2), self.q) - u / variances
            precision = self._ztwz(-second) + np.diag(1 / variances)
            step = np.linalg.solve(precision, gradient)
            u += step
            if np.abs(step).max() < 1e-10:
                break
        self.u = u
        eta = fixed + u[self.columns].sum(axis=1)
        logp, _, second = self._derivatives(eta, thresholds)
        ztwz = self._ztwz(-second)
        scaled = np.sqrt(variances)
        _, logdet = np.linalg.slogdet(scaled[:, None] * ztwz * scaled[None, :] + np.eye(self.q))
        return float(logp.sum() - 0.5 * np.sum(u**2 / variances) - 0.5 * logdet)

    def _ztwz(self, w: np.ndarray) -> np.ndarray:
        """Z' diag(w) Z for the two crossed indicator blocks."""
        matrix = np.zeros((self.q, self.q))
        i, j = self.columns[:, 0], self.columns[:, 1]
        np.add.at(matrix, (i, i), w)
        np.add.at(matrix, (j, j), w)
        np.add.at(matrix, (i, j), w)
        np.add.at(matrix, (j, i), w)
        return matrix


def fit_ordinal(design: Design, rows: pd.DataFrame) -> OrdinalFit:
    """Fit confidence with ``design``'s fixed effects (``rows``: the primary model's rows)."""
    ratings = rows["confidence"].astype(int).to_numpy()
    levels = sorted(set(ratings.tolist()))
    y = np.searchsorted(levels, ratings)
    X = design.frame[design.columns[1:]].to_numpy(dtype=float)
    groups = [pd.factorize(design.frame[g], sort=True)[0] for g in GROUPS]
    model = _Laplace(y, X, groups)
    cumulative = np.cumsum(np.bincount(y, minlength=len(levels)))[:-1] / len(y)
    start_thresholds = np.log(cumulative / (1 - cumulative))
    start = np.r_[start_thresholds[0], np.log(np.diff(start_thresholds)), np.zeros(X.shape[1]),
                  np.log([0.5, 0.5])]

    def deviance(x: np.ndarray) -> float:
        return -2 * model.loglik(x)

    found = optimize.minimize(deviance, start, method="BFGS", options={"gtol": 1e-6, "maxiter": 500})
    x = found.x
    k = len(levels) - 1
    thresholds, beta, sds = model.unpack(x)
    # the vcov over (thresholds, beta): the Laplace deviance's Hessian in a parametrisation with the
    # thresholds themselves (x holds log increments), log SDs kept
    natural = np.r_[thresholds, beta, np.log(sds)]

    def natural_deviance(z: np.ndarray) -> float:
        t = z[:k]
        if np.any(np.diff(t) <= 0):
            return np.inf
        return deviance(np.r_[t[0], np.log(np.diff(t)), z[k:]])

    gradient, hessian = deriv12(natural_deviance, natural)
    converged = bool(found.success) or float(np.abs(gradient).max()) < 1e-3
    message = str(found.message)
    try:
        if not np.isfinite(hessian).all():
            raise np.linalg.LinAlgError("the Hessian is not finite")
        vcov = 2 * np.linalg.inv(hessian)
    except np.linalg.LinAlgError:  # e.g. a level rated all one way: a secondary outcome must not stop the report
        vcov = np.full_like(hessian, np.nan)
        converged, message = False, "singular Hessian at the optimum (a level rated all one way?): no standard errors"
    n_fixed = k + X.shape[1]
    return OrdinalFit(
        design=design, levels=levels, thresholds=thresholds, beta=beta, vcov=vcov[:n_fixed, :n_fixed],
        sd=dict(zip(GROUPS, sds.tolist())), loglik=-found.fun / 2, converged=converged, message=message,
    )


def ordinal_contrasts(fit: OrdinalFit, declared: list[Contrast], level: float = 0.95) -> pd.DataFrame:
    """The declared contrasts of eta: log cumulative odds ratios of a higher rating (``ratio``: the odds ratio)."""
    beta = np.r_[0.0, fit.beta]  # the design's intercept column, absent here, cancels in every contrast
    vcov = np.zeros((len(beta), len(beta)))
    vcov[1:, 1:] = fit.beta_vcov
    return wald_contrasts(fit.design, beta, vcov, declared, level)


def ordinal_verdict(row) -> str:
    return ratio_verdict(row, "odds of a higher rating x", "log odds")


def ordinal_coefficients(fit: OrdinalFit, level: float = 0.95) -> pd.DataFrame:
    """Thresholds and effects with their SEs and Wald intervals (clmm's ``summary`` layout)."""
    names = [f"threshold {a}|{b}" for a, b in zip(fit.levels[:-1], fit.levels[1:])] + fit.terms
    estimate = np.r_[fit.thresholds, fit.beta]
    se = np.sqrt(np.diag(fit.vcov))
    q = float(stats.norm.ppf(0.5 + level / 2))
    return pd.DataFrame({"term": names, "estimate": estimate, "se": se, "ci_lower": estimate - q * se,
                         "ci_upper": estimate + q * se})
