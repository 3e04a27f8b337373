"""What can make a GLMM fit untrustworthy, found and worded the same way for every engine.

- Convergence: the optimiser's own status, lme4's ``checkConv`` tests on the
  gradient and Hessian of the deviance at the optimum (same tolerances, same
  words, so both engines read alike), and the RX fallback of the covariance.
- Separation: a level (or, with the interaction, a cell) whose trials are all
  correct or all wrong has unbounded log-odds; the maximum-likelihood estimate
  then drifts to a huge value with a meaningless standard error. Found in the
  data before trusting any estimate, and in the estimates themselves.
- Likelihood-ratio tests: a larger model can never fit worse than a nested
  smaller one, so a negative chi-square means a failed fit, never a zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

# lme4 1.1-31's glmerControl() defaults
GRADIENT_TOL = 2e-3  # check.conv.grad
HESSIAN_TOL = 1e-6  # check.conv.hess
# no psychophysics effect is beyond an odds ratio of e^10 = 22,026, nor this uncertain
ESTIMATE_LIMIT = 10.0
SE_LIMIT = 5.0
LATENT_RESIDUAL_VARIANCE = np.pi**2 / 3  # the standard logistic's variance
REMEDY = "refit with --prior normal (weakly informative, as blme::bglmer), or drop or merge the level"


@dataclass(frozen=True)
class FitWarning:
    """One diagnosed problem. ``error``: estimates or tests are not to be trusted; ``note``: read with care."""

    kind: str  # optimizer, gradient, hessian, vcov_rx, singular, separation, lrt
    message: str
    severity: str = "error"  # or "note"
    models: tuple[str, ...] = ("full",)  # fitted models it concerns ("full", "additive", "no_condition", ...)
    terms: tuple[str, ...] = ()  # fixed-effect terms it concerns; () = every term of those models

    def concerns(self, model: str, terms: set[str] | None = None) -> bool:
        return model in self.models and (not self.terms or terms is None or bool(terms & set(self.terms)))


def _hessian_checks(hessian: np.ndarray, what: str) -> list[str]:
    """lme4's ``checkHess``: negative, zero or badly spread eigenvalues."""
    if not np.all(np.isfinite(hessian)):
        return ["Problem with Hessian check (infinite or missing values?)"]
    eigen = np.linalg.eigvalsh(hessian)
    negative = int(np.sum(eigen < -HESSIAN_TOL))
    if negative:
        return [f"Model failed to converge: degenerate {what} Hessian with {negative} negative eigenvalues"]
    if np.any(np.abs(eigen) < HESSIAN_TOL):
        return [f"{what} Hessian is numerically singular: parameters are not uniquely determined"]
    problems = []
    if eigen.max() * HESSIAN_TOL > 1:
        problems.append("Model is nearly unidentifiable: very large eigenvalue - Rescale variables?")
    if eigen.min() / eigen.max() < HESSIAN_TOL:
        problems.append("Model is nearly unidentifiable: large eigenvalue ratio - Rescale variables?")
    return problems


def convergence_messages(gradient: np.ndarray, hessian: np.ndarray, n_theta: int, singular: bool) -> list[str]:
    """lme4's ``checkConv`` on the deviance's derivatives over (theta, beta) at the optimum.

    As in lme4, a singular (boundary) fit is not checked further: there the
    derivatives of a variance at zero are one-sided.
    """
    if singular:
        return []
    if np.isnan(gradient).any():
        return ["Gradient contains NAs"]
    messages = []
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(hessian).T, gradient)
        worst = np.minimum(np.abs(scaled), np.abs(gradient))
        if worst.max() > GRADIENT_TOL:  # lme4 always prints "component 1"; this names the worst one
            messages.append(f"Model failed to converge with max|grad| = {worst.max():.6g} "
                            f"(tol = {GRADIENT_TOL:g}, component {int(worst.argmax()) + 1})")
    except np.linalg.LinAlgError:
        messages.append("unable to evaluate scaled gradient")
    if len(gradient) > n_theta:
        messages += _hessian_checks(hessian[n_theta:, n_theta:], "fixed-effect")
    messages += _hessian_checks(hessian, "")
    return [" ".join(m.split()) for m in messages]


def classify(message: str, model: str) -> FitWarning | None:
    """A FitWarning for an engine's message (lme4's words, which the mixedlm engine reuses); None if unknown."""
    if "max|grad|" in message or "scaled gradient" in message or "Gradient contains" in message:
        return FitWarning("gradient", message, "error", (model,))
    if "Hessian" in message and "RX" not in message or "unidentifiable" in message:
        return FitWarning("hessian", message, "error", (model,))
    if "RX" in message:
        return FitWarning("vcov_rx", message, "note", (model,))
    if "singular" in message:
        return FitWarning("singular", message, "note", (model,))
    if "converge" in message:
        return FitWarning("optimizer", message, "error", (model,))
    return None


def _level_terms(design, factor: str, level: str) -> tuple[str, ...]:
    """The terms a separated level makes unbounded: its own, or with the reference, the factor's and the intercept."""
    position = 0 if factor == "condition" else 1
    reference = (design.conditions if factor == "condition" else design.networks)[0]
    terms = design.terms[1:]
    if level == reference:
        return (design.terms[0],) + tuple(t for t, lv in zip(terms, design.levels) if lv[position] is not None)
    return tuple(t for t, lv in zip(terms, design.levels) if lv[position] == level)


def _cell_terms(design, condition: str, network: str) -> tuple[str, ...]:
    """The terms a separated cell makes unbounded: its interaction, else its main effects, else all (reference cell)."""
    on = [t for t, v in zip(design.terms, design.row(condition, network)) if v]
    return (tuple(t for t in on if ":" in t) or tuple(on[1:]) or tuple(design.terms))


def separation_in_data(design, prior: bool) -> list[FitWarning]:
    """Levels (and, with the interaction, cells) whose trials are all correct or all wrong."""
    rows = design.frame
    groups = [("condition", [c], rows["condition"].eq(c), _level_terms(design, "condition", c))
              for c in design.conditions]
    groups += [("network", [n], rows["network"].eq(n), _level_terms(design, "network", n)) for n in design.networks]
    if design.spec.interaction:
        for c in design.conditions:
            for n in design.networks:
                in_cell = rows["condition"].eq(c) & rows["network"].eq(n)
                groups.append(("cell", [c, n], in_cell, _cell_terms(design, c, n)))
    found = []
    for what, levels, mask, terms in groups:
        y = rows["y"].to_numpy()[mask.to_numpy()]
        if len(y) == 0 or 0 < y.mean() < 1:
            continue
        name = f"{what} {' x '.join(levels)}"
        outcome = "correct" if y.mean() == 1 else "wrong"
        if prior:
            found.append(FitWarning(
                "separation", f"separation in the data: all {len(y)} main trials of {name} are {outcome}; "
                f"the estimates of {', '.join(terms)} are finite only through the normal prior, which shrinks "
                "them toward 0: report them as prior-regularised", "note", ("full",), terms))
        else:
            found.append(FitWarning(
                "separation", f"separation: all {len(y)} main trials of {name} are {outcome}, so its log-odds "
                f"are unbounded and the estimates, SEs and p-values of {', '.join(terms)} are meaningless; "
                + REMEDY, "error", ("full",), terms))
    return found


def separation_in_estimates(terms: list[str], beta: np.ndarray, se: np.ndarray) -> list[FitWarning]:
    """Terms with a huge or non-finite estimate or standard error."""
    found = []
    for term, b, s in zip(terms, beta, se):
        if not (np.isfinite(b) and np.isfinite(s)) or abs(b) > ESTIMATE_LIMIT or s > SE_LIMIT:
            found.append(FitWarning(
                "separation", f"separation suspected: {term} = {b:.4g} log-odds (SE {s:.4g}), beyond "
                f"|estimate| {ESTIMATE_LIMIT:g} or SE {SE_LIMIT:g}; " + REMEDY, "error", ("full",), (term,)))
    return found


def likelihood_ratio(term: str, big: str, small: str, fits: dict) -> tuple[dict, list[FitWarning]]:
    """One LRT row of ``big`` against the nested ``small``; a negative chi-square is a failed fit, never clipped."""
    chisq = 2 * (fits[big].loglik - fits[small].loglik)
    df = fits[big].npar - fits[small].npar
    found = []
    if chisq < 0:
        found.append(FitWarning(
            "lrt", f"LRT of {term}: chi-square {chisq:.4g} < 0, i.e. the larger model ({big}) fits worse than "
            f"the nested smaller one ({small}): the fit of {big} failed, and the test is void", "error", (big,)))
    failed = [name for name in (big, small) if not fits[name].converged]
    row = {
        "term": term, "df": df, "chisq": chisq, "p": float(stats.chi2.sf(chisq, df)) if chisq >= 0 else np.nan,
        "loglik_full": fits[big].loglik, "loglik_reduced": fits[small].loglik,
        "converged": not failed and chisq >= 0,
    }
    return row, found


def latent_icc(variances: dict[str, float]) -> dict[str, float]:
    """Each group's share of the latent-scale variance (residual pi^2/3 of the logistic)."""
    total = sum(variances.values()) + LATENT_RESIDUAL_VARIANCE
    return {group: variance / total for group, variance in variances.items()}


def warning_label(warnings: list[FitWarning], models: tuple[str, ...], terms: set[str] | None = None) -> str:
    """The kinds of the warnings that concern these models (and terms), for a table's ``warning`` column."""
    kinds = [w.kind for w in warnings if any(w.concerns(m, terms) for m in models)]
    return "; ".join(dict.fromkeys(kinds))


def warnings_frame(warnings: list[FitWarning]) -> pd.DataFrame:
    return pd.DataFrame(
        [(w.severity, w.kind, ", ".join(w.models), ", ".join(w.terms), w.message) for w in warnings],
        columns=["severity", "kind", "models", "terms", "message"],
    )
