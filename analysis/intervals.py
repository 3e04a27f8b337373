"""Profile-likelihood and parametric-bootstrap intervals of the declared contrasts (``--ci``).

Network varies between units (10 to 18 units per network), so a network contrast rests on few
independent units and its Wald z interval is too narrow. Two intervals that do not lean on the
normal approximation of the estimate, as lme4's ``confint`` computes them:

- ``profile``: a pairwise contrast (two levels of one factor, additive model) is one coefficient
  when its ``versus`` level is the reference, so the model is refitted with that reference and the
  coefficient's likelihood profiled (mixedlm's ``confint(method="profile")``, as lme4's
  ``confint(method="profile")``); percentage points keep their delta-method interval.
- ``bootstrap``: parametric, as lme4's ``confint(method="boot")`` (``bootMer``, percentile): response
  vectors drawn from the fitted model (participant and unit effects from their estimated normal
  distributions, then a Bernoulli answer per trial), each refitted; percentile intervals of each
  contrast and of its percentage points.

Both give the unadjusted 95% interval and the family's Bonferroni interval (``effects.ADJUSTMENT``).
They need the additive model with random intercepts (in an interaction model a contrast averaged
over networks is not one coefficient) and the mixedlm engine; anything else is a clear error.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.special import expit

from analysis.contrasts import Contrast
from analysis.effects import WALD_CI, marginal_row
from analysis.engines import GROUPS, RandomEffects, formula
from analysis.models import FitResult, ModelSpec, build_design

CI_METHODS = ("wald", "profile", "bootstrap")
CI_NAMES = {"wald": WALD_CI, "profile": "profile-likelihood", "bootstrap": "parametric-bootstrap"}
BOOTSTRAP_SAMPLES = 1000  # enough for the 0.4% tails of a Bonferroni interval over three tests


class IntervalError(ValueError):
    """The requested interval cannot be computed for this model."""


def check_supported(spec: ModelSpec, engine: str, method: str) -> None:
    """Before any fit: the interval ``method`` exists and can be computed for this model."""
    if method not in CI_METHODS:
        raise IntervalError(f"unknown --ci {method!r}; choose one of {', '.join(CI_METHODS)}")
    if method == "wald":
        return
    if spec.interaction or not spec.intercepts_only or spec.prior != "none" or engine != "mixedlm":
        raise IntervalError(
            f"--ci {method} needs the additive model with random intercepts, no prior, and the mixedlm engine "
            "(a contrast is then one coefficient); for this model use --ci wald")


def _glmer(frame: pd.DataFrame, columns: list[str]):
    import mixedlm
    from mixedlm.families import Binomial

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bootstrap reports failed refits itself
        return mixedlm.glmer(formula(columns, RandomEffects()), frame, family=Binomial(), nAGQ=1)


def profile_intervals(fit: FitResult, declared: list[Contrast], family_sizes: dict[str, int],
                      level: float = 0.95) -> pd.DataFrame:
    """Per contrast: the profile-likelihood interval at ``level`` and at the family's Bonferroni level."""
    design = fit.design
    rows = design.frame.rename(columns={"y": "correct", "participant": "participant_id"})
    fitted: dict[tuple[str, str], tuple] = {}  # (factor, reference) -> (design, mixedlm result)
    out = []
    for c in declared:
        key = (c.factor, c.versus)
        if key not in fitted:
            spec = replace(design.spec, **{f"ref_{c.factor}": c.versus})
            refitted = build_design(rows, spec, design.conditions, design.networks)
            fitted[key] = (refitted, _glmer(refitted.frame, refitted.columns[1:]))
        refitted, result = fitted[key]
        column = dict(zip(refitted.terms, refitted.columns))[f"{c.factor}[{c.level}]"]
        adjusted_level = 1 - (1 - level) / family_sizes[c.label]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lower, upper = result.confint(parm=[column], level=level, method="profile")[column]
            lower_adj, upper_adj = result.confint(parm=[column], level=adjusted_level, method="profile")[column]
        out.append((c.label, lower, upper, lower_adj, upper_adj))
    return pd.DataFrame(out, columns=["contrast", "ci_lower", "ci_upper", "ci_lower_adj", "ci_upper_adj"])


def simulate_responses(fit: FitResult, n: int, seed: int) -> np.ndarray:
    """``n`` response vectors (rows) drawn from the fitted model: new participant and unit effects, then
    a Bernoulli answer per trial (lme4's ``simulate(m, use.u = FALSE)``)."""
    design = fit.design
    frame = design.frame
    rng = np.random.default_rng(seed)
    eta = frame[design.columns[1:]].to_numpy() @ fit.beta[1:] + fit.beta[0]
    eta = np.broadcast_to(eta, (n, len(frame))).copy()
    for group in GROUPS:
        codes, levels = pd.factorize(frame[group])
        effects = rng.normal(0.0, fit.re_sd[group], size=(n, len(levels)))
        eta += effects[:, codes]
    return (rng.random(eta.shape) < expit(eta)).astype(float)


def _refit_chunk(task: tuple) -> np.ndarray:
    """Fixed effects of each response vector of a chunk (NaN rows for refits that fail)."""
    frame, columns, responses = task
    betas = np.full((len(responses), len(columns) + 1), np.nan)
    for i, y in enumerate(responses):
        try:
            betas[i] = np.asarray(_glmer(frame.assign(y=y), columns).beta, dtype=float)
        except Exception:  # noqa: BLE001 - a failed refit is counted, as bootMer counts them
            pass
    return betas


def bootstrap_betas(fit: FitResult, n: int = BOOTSTRAP_SAMPLES, seed: int = 0, jobs: int = 1,
                    responses: np.ndarray | None = None) -> np.ndarray:
    """Refitted fixed effects of ``n`` simulated studies (``simulate_responses``), on ``jobs`` processes."""
    design = fit.design
    responses = simulate_responses(fit, n, seed) if responses is None else responses
    frame = design.frame[["participant", "unit", *design.columns[1:]]]
    chunks = np.array_split(responses, max(1, min(len(responses), 4 * jobs)))
    tasks = [(frame, design.columns[1:], chunk) for chunk in chunks if len(chunk)]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            return np.vstack(list(pool.map(_refit_chunk, tasks)))
    return np.vstack([_refit_chunk(task) for task in tasks])


def bootstrap_intervals(fit: FitResult, declared: list[Contrast], family_sizes: dict[str, int], betas: np.ndarray,
                        level: float = 0.95) -> pd.DataFrame:
    """Per contrast: percentile intervals (unadjusted and Bonferroni) of the log-odds difference and of the
    percentage points over the refits that succeeded."""
    ok = betas[~np.isnan(betas).any(axis=1)]
    out = []
    for c in declared:
        a = marginal_row(fit.design, c.factor, c.level)
        b = marginal_row(fit.design, c.factor, c.versus)
        difference = ok @ (a - b)
        points = 100 * (expit(ok @ a) - expit(ok @ b))
        tail = (1 - level) / 2
        tail_adj = tail / family_sizes[c.label]
        quantiles = [tail, 1 - tail, tail_adj, 1 - tail_adj]
        out.append((c.label, *np.quantile(difference, quantiles), *np.quantile(points, quantiles)))
    columns = ["contrast", "ci_lower", "ci_upper", "ci_lower_adj", "ci_upper_adj", "pp_lower", "pp_upper",
               "pp_lower_adj", "pp_upper_adj"]
    table = pd.DataFrame(out, columns=columns)
    table.attrs["samples"], table.attrs["failed"] = len(ok), len(betas) - len(ok)
    return table


def apply_intervals(contrasts: pd.DataFrame, fit: FitResult, declared: list[Contrast], method: str,
                    samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, jobs: int = 1) -> pd.DataFrame:
    """``contrasts`` (``effects.estimate_contrasts``) with the intervals of ``method`` and the columns
    ``ci_method`` and ``pp_method`` saying which intervals the row holds."""
    check_supported(fit.spec, fit.engine, method)
    if method == "wald":
        return contrasts
    table = contrasts.copy()
    table["ci_method"] = CI_NAMES[method]
    sizes = dict(zip(table["contrast"], table["family_size"]))
    if method == "profile":
        intervals = profile_intervals(fit, declared, sizes)
    else:
        intervals = bootstrap_intervals(fit, declared, sizes, bootstrap_betas(fit, samples, seed, jobs))
        failed = intervals.attrs["failed"]
        table["ci_method"] = f"parametric-bootstrap ({intervals.attrs['samples']} refits" + (
            f", {failed} failed)" if failed else ")")
        table["pp_method"] = table["ci_method"]
    intervals = intervals.set_index("contrast").reindex(table["contrast"])
    for column in intervals.columns:
        table[column] = intervals[column].to_numpy()
    return table
