"""The ``mixedlm`` engine: the mixedlm package's ``glmer`` (Rust core), checked and vcov'd as lme4 does.

After each fit, the gradient and Hessian of the Laplace deviance over
(theta, beta) are taken by central differences (lme4's ``deriv12``) and put
through lme4's convergence checks. Standard errors are, like lme4's default
``vcov`` for a GLMM, the beta block of 2 H^-1; where H is not positive
definite they fall back to the fixed-effect information at the estimated
theta (lme4's RX approximation), and the fit says so.

With a normal prior the same Laplace deviance plus the prior's -2 log density
is minimised over (theta, beta), which is what blme's ``bglmer`` does with
``fixef.prior = normal`` and no covariance prior.
"""
from __future__ import annotations

import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd
from scipy import optimize

from analysis.diagnostics import FitWarning, classify, convergence_messages
from analysis.engines import GROUPS, EngineFit, NormalPrior, RandomEffects, formula

HESSIAN_VCOV = "Hessian of the Laplace deviance (as lme4)"
RX_VCOV = ("fixed-effect information at the estimated theta (lme4's RX approximation; "
           "the Hessian was not positive definite)")


def deriv12(fun, x: np.ndarray, delta: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and Hessian, as lme4's ``deriv12`` computes them."""
    n = len(x)
    fx = fun(x)
    gradient, hessian = np.zeros(n), np.zeros((n, n))
    for i in range(n):
        up, down = x.copy(), x.copy()
        up[i] += delta
        down[i] -= delta
        f_up, f_down = fun(up), fun(down)
        gradient[i] = (f_up - f_down) / (2 * delta)
        hessian[i, i] = (f_up - 2 * fx + f_down) / delta**2
        for j in range(i):
            uu, ud, du, dd = up.copy(), up.copy(), down.copy(), down.copy()
            uu[j] += delta
            ud[j] -= delta
            du[j] += delta
            dd[j] -= delta
            hessian[i, j] = hessian[j, i] = (fun(uu) - fun(ud) - fun(du) + fun(dd)) / (4 * delta**2)
    return gradient, hessian


def hessian_vcov(hessian: np.ndarray, n_theta: int) -> np.ndarray | None:
    """lme4's GLMM vcov: the beta block of 2 H^-1 over (theta, beta); None if not positive definite."""
    try:
        inverse = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return None
    block = inverse[n_theta:, n_theta:]
    vcov = block + block.T  # 2 H^-1, symmetrised
    if not np.all(np.isfinite(vcov)) or np.linalg.eigvalsh(vcov).min() <= 0:
        return None
    return vcov


def varcorr_frame(result) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(fit))`` layout: SDs, then correlations (var1 before var2)."""
    rows = []
    for group in GROUPS:
        g = result.VarCorr().groups[group]
        names = list(g.term_names)
        rows += [(group, name, "", float(g.stddev[name])) for name in names]
        if g.corr is not None:  # None: uncorrelated terms (||)
            rows += [(group, names[i], names[j], float(g.corr[i, j]))
                     for i in range(len(names)) for j in range(i + 1, len(names))]
    return pd.DataFrame(rows, columns=["group", "var1", "var2", "sdcor"])


RANEF_COLUMNS = ["group", "level", "term", "mode", "cond_sd"]


def ranef_frame(result) -> pd.DataFrame:
    """lme4's ``as.data.frame(ranef(fit, condVar = TRUE))`` layout: one row per group level and term."""
    modes = result.ranef(condVar=True)
    rows = []
    for structure in result.matrices.random_structures:
        group = structure.grouping_factor
        levels = sorted(structure.level_map, key=structure.level_map.get)
        for term in structure.term_names:
            values = modes.values[group][term]
            variances = modes.condVar[group][term]
            rows += [(group, level, term, float(v), float(np.sqrt(c))) for level, v, c in zip(levels, values, variances)]
    return pd.DataFrame(rows, columns=RANEF_COLUMNS)


def _optimiser(matrices, family):
    """The Laplace objective with ``mixedlm.glmer``'s default inner (PIRLS) settings."""
    from mixedlm.estimation.laplace import GLMMOptimizer
    from mixedlm.models.control import GlmerControl

    control = GlmerControl()
    return GLMMOptimizer(matrices, family, verbose=0, nAGQ=1, pirls_maxiter=control.pirls_maxiter,
                         pirls_tol=control.tolPwrss)


def _map_fit(model_formula: str, frame: pd.DataFrame, prior: NormalPrior):
    """The posterior mode under ``prior``: minimise Laplace deviance + prior deviance over (theta, beta).

    No ML fit first: on separated data it is the slow part, and its diverging
    beta is no start. Returns the result and the penalised objective.
    """
    from mixedlm.families import Binomial
    from mixedlm.models.glmer import GlmerResult
    from mixedlm.models.glmer_fit import GlmerMod

    model = GlmerMod(model_formula, frame, family=Binomial())
    optimiser = _optimiser(model.matrices, model.family)
    objective = optimiser.joint_objective()
    theta = optimiser.get_start_theta()
    n_theta, n_fixed = len(theta), model.matrices.n_fixed
    y = model.matrices.y
    start = np.r_[theta, np.log(y.mean() / (1 - y.mean())), np.zeros(n_fixed - 1)]  # a flat intercept

    def penalised(x: np.ndarray) -> float:
        return objective(x) + prior.deviance(x[n_theta:])

    found = optimize.minimize(penalised, start, method="L-BFGS-B", jac="3-point", bounds=objective.bounds,
                              options={"maxiter": 1000})
    x = _newton_polish(penalised, found.x, objective.bounds)
    theta, beta = x[:n_theta], x[n_theta:]
    deviance, beta, u, pirls_ok = optimiser._final_evaluation_with_status(theta, beta=beta)
    fitted = GlmerResult(
        formula=model.formula, matrices=model.matrices, family=model.family, theta=theta, beta=beta, u=u,
        deviance=deviance, converged=bool(found.success and pirls_ok), n_iter=int(found.nit), nAGQ=1,
        pirls_converged=pirls_ok, pirls_maxiter=optimiser.pirls_maxiter, pirls_tol=optimiser.pirls_tol,
        joint_fit=True, message=str(found.message), optimizer="L-BFGS-B",
    )
    return fitted, penalised


def _newton_polish(fun, x: np.ndarray, bounds, steps: int = 3) -> np.ndarray:
    """A few Newton steps on ``fun`` from ``x``, kept while they lower it.

    L-BFGS-B stops on a relative decrease of ~1e-9 of a deviance in the
    thousands, short of lme4's gradient tolerance along the flat direction of a
    separated term; Newton's steps on the finite-difference derivatives close it.
    """
    lower = np.array([-np.inf if lo is None else lo for lo, _ in bounds])
    upper = np.array([np.inf if hi is None else hi for _, hi in bounds])
    value = fun(x)
    for _ in range(steps):
        gradient, hessian = deriv12(fun, x)
        try:
            candidate = np.clip(x - np.linalg.solve(hessian, gradient), lower, upper)
        except np.linalg.LinAlgError:
            break
        candidate_value = fun(candidate)
        if not candidate_value < value:
            break
        x, value = candidate, candidate_value
    return x


def fit_one(frame: pd.DataFrame, name: str, columns: list[str], with_vcov: bool, random: RandomEffects,
            prior: NormalPrior | None) -> EngineFit:
    import mixedlm
    from mixedlm.families import Binomial

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if prior is None:
            result = mixedlm.glmer(formula(columns, random), frame, family=Binomial(), nAGQ=1)
            objective = _optimiser(result.matrices, result.family).joint_objective()
        else:
            result, objective = _map_fit(formula(columns, random), frame, prior)
        singular = bool(result.isSingular())
    messages = list(dict.fromkeys(str(w.message) for w in caught))
    found: list[FitWarning] = []
    if not result.converged:
        text = result.message or "the optimiser did not report convergence"
        messages.append(text)
        found.append(FitWarning("optimizer", f"optimiser did not converge: {text}", "error", (name,)))
    n_theta = len(result.theta)
    gradient, hessian = deriv12(objective, np.r_[result.theta, result.beta])
    found += [classify(m, name) for m in convergence_messages(gradient, hessian, n_theta, singular)]
    if singular:
        found.append(classify("boundary (singular) fit: see help('isSingular')", name))
    fit = EngineFit(
        beta=np.asarray(result.beta, dtype=float),
        loglik=float(result.logLik().value),
        npar=int(result.npar()),
        varcorr=varcorr_frame(result),
        converged=not any(w.kind in ("optimizer", "gradient", "hessian") for w in found),
        singular=singular,
        messages=messages,
        warnings=found,
    )
    if with_vcov:
        fit.ranef = ranef_frame(result)
        fit.vcov, fit.vcov_method = hessian_vcov(hessian, n_theta), HESSIAN_VCOV
        if fit.vcov is None:
            fit.vcov, fit.vcov_method = np.asarray(result.vcov(), dtype=float), RX_VCOV
            if prior is not None:  # the prior adds its precision to the information
                fit.vcov = np.linalg.inv(np.linalg.inv(fit.vcov) + np.diag(prior.sds(len(fit.beta)) ** -2.0))
            fit.warnings.append(classify("Hessian not positive definite: standard errors from the RX approximation",
                                         name))
    return fit


def fit_mixedlm(
    frame: pd.DataFrame, formulas: dict[str, list[str]], with_vcov: set[str], random: RandomEffects,
    prior: NormalPrior | None,
) -> tuple[dict[str, EngineFit], dict[str, str]]:
    """Fit each named model (its fixed columns of ``frame``); vcov for those in ``with_vcov``."""
    fits = {name: fit_one(frame, name, columns, name in with_vcov, random, prior)
            for name, columns in formulas.items()}
    return fits, {"mixedlm": version("mixedlm")}
