"""Logistic mixed models of a correct choice, fitted as lme4's ``glmer`` (or blme's ``bglmer``) does.

``correct ~ condition + network + (1|participant) + (1|unit)`` (optionally
``+ condition:network``; with ``random_slopes`` the unit term is
``(1 + condition|unit)``, since every unit is seen under every condition),
binomial logit, Laplace approximation. The export's ``unit`` key is unique
across networks (``<network>:<class_index>``), so class 281 of vgg16 and class
281 of resnet50 are different units.

Both engines (``analysis.engines``) get the same design: treatment dummies
built here, named ``condition[maco]``, ``network[vit_b16]`` and
``condition[maco]:network[vgg16]`` against configurable reference levels.
Every fit is diagnosed (``analysis.diagnostics``): convergence, separation,
singularity and the LRTs' signs land in ``FitResult.warnings`` and in a
``converged``/``warning`` column of each table.
"""
from __future__ import annotations

from study_protocol.study import REFERENCE_NETWORK

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from analysis.diagnostics import (
    FitWarning,
    latent_icc,
    likelihood_ratio,
    separation_in_data,
    separation_in_estimates,
    warning_label,
)
from analysis.engines import (  # ENGINES, EngineError, PRIORS: callers import them from here
    ENGINES,
    GROUPS,
    INTERCEPT,
    PRIORS,
    EngineError,
    NormalPrior,
    RandomEffects,
    fit_engine,
)

SIMPLIFY = ("simplify the random part step by step (docs/analysis-models.md): first drop the slopes' "
            "correlations (--no-slope-correlations), then the slopes (--no-random-slopes), keeping (1|unit)")


@dataclass(frozen=True)
class ModelSpec:
    ref_condition: str = "olah"
    ref_network: str = REFERENCE_NETWORK
    interaction: bool = False
    random_slopes: bool = False  # (1 + condition|unit): Barr et al.'s (2013) maximal model for condition
    slope_correlations: bool = True  # False: (1 + condition||unit), the first simplification
    prior: str = "none"  # "normal": blme's weakly informative normal prior on the fixed effects
    participant_slopes: bool = False  # (1 + network|participant): each participant's own network differences

    @property
    def participant_term(self) -> str:
        return "(1 + network|participant)" if self.participant_slopes else "(1|participant)"

    @property
    def intercepts_only(self) -> bool:
        """Random intercepts alone: a pairwise contrast is then a merge of two levels, and the profile and
        bootstrap intervals apply."""
        return not (self.random_slopes or self.participant_slopes)

    @property
    def unit_term(self) -> str:
        if not self.random_slopes:
            return "(1|unit)"
        return "(1 + condition|unit)" if self.slope_correlations else "(1 + condition||unit)"

    @property
    def formula(self) -> str:
        fixed = "condition + network" + (" + condition:network" if self.interaction else "")
        return f"correct ~ {fixed} + {self.participant_term} + {self.unit_term}"


@dataclass
class Design:
    """The model frame (``y``, groups, their levels, dummy columns ``x1..xk``) and its term names."""

    frame: pd.DataFrame
    spec: ModelSpec
    conditions: list[str]  # reference first
    networks: list[str]  # reference first
    terms: list[str]  # readable names, intercept first, aligned with ``columns``
    columns: list[str]  # frame columns, "(Intercept)" first
    blocks: dict[str, list[str]]  # "condition" / "network" / "condition:network" -> columns
    # per column after the intercept: the (condition, network) it indicates; None = any
    levels: list[tuple[str | None, str | None]]
    # the frame's condition:network dummies, in the main model only with ``spec.interaction``; an additive
    # model still fits them once, for the interaction's LRT
    interaction_columns: list[str] = field(default_factory=list)

    def row(self, condition: str, network: str) -> np.ndarray:
        """The design row of one cell (population level, random effects at zero)."""
        return np.array(
            [1.0] + [float(c in (None, condition) and n in (None, network)) for c, n in self.levels]
        )


def _ordered(levels: list[str], reference: str, factor: str) -> list[str]:
    if reference not in levels:
        raise ValueError(
            f"reference {factor} {reference!r} is not among the {factor}s in the data "
            f"({', '.join(levels)}); choose another with --ref-{factor}"
        )
    return [reference] + [level for level in levels if level != reference]


def build_design(rows: pd.DataFrame, spec: ModelSpec, conditions: list[str], networks: list[str]) -> Design:
    """Treatment dummies for the main trials in ``rows`` (see ``exclusions.model_rows``)."""
    conditions = _ordered(list(conditions), spec.ref_condition, "condition")
    networks = _ordered(list(networks), spec.ref_network, "network")
    frame = pd.DataFrame(
        {
            "y": rows["correct"].astype(float).to_numpy(),
            "participant": rows["participant_id"].astype(str).to_numpy(),
            "unit": rows["unit"].astype(str).to_numpy(),
            "condition": rows["condition"].astype(str).to_numpy(),
            "network": rows["network"].astype(str).to_numpy(),
        }
    )
    terms, columns, levels = [INTERCEPT], [INTERCEPT], []
    blocks: dict[str, list[str]] = {"condition": [], "network": []}
    interaction_columns: list[str] = []

    def add(term: str, block: str, condition: str | None, network: str | None, in_model: bool = True) -> None:
        column = f"x{len(columns) + len(interaction_columns) * (not in_model)}"
        values = np.ones(len(rows), dtype=bool)
        if condition is not None:
            values &= rows["condition"].eq(condition).to_numpy()
        if network is not None:
            values &= rows["network"].eq(network).to_numpy()
        frame[column] = values.astype(float)
        if block == "condition:network":
            interaction_columns.append(column)
        if in_model:
            terms.append(term)
            columns.append(column)
            levels.append((condition, network))
            blocks.setdefault(block, []).append(column)

    for c in conditions[1:]:
        add(f"condition[{c}]", "condition", c, None)
    for n in networks[1:]:
        add(f"network[{n}]", "network", None, n)
    for c in conditions[1:]:
        for n in networks[1:]:
            add(f"condition[{c}]:network[{n}]", "condition:network", c, n, in_model=spec.interaction)
    return Design(frame, spec, conditions, networks, terms, columns, blocks, levels, interaction_columns)


# ---------------------------------------------------------------- results


@dataclass
class FitResult:
    engine: str
    spec: ModelSpec
    design: Design
    beta: np.ndarray
    vcov: np.ndarray
    vcov_method: str
    re_sd: dict[str, float]  # random-intercept SD per group
    loglik: float
    converged: bool  # the main model: optimiser status, gradient and Hessian checks all passed
    singular: bool
    messages: list[str]  # the engines' own words, for the record
    lrt: pd.DataFrame
    fit_s: float
    engine_versions: dict[str, str]
    warnings: list[FitWarning] = field(default_factory=list)  # the diagnosis, every fitted model
    # lme4's as.data.frame(VarCorr()) with readable terms: group, var1, var2 ("" = an SD), sdcor
    varcorr: pd.DataFrame | None = None
    ranef: pd.DataFrame | None = None  # the engine's conditional modes (EngineFit.ranef), terms readable

    @property
    def terms(self) -> list[str]:
        return self.design.terms

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    @property
    def n_obs(self) -> int:
        return len(self.design.frame)

    @property
    def n_groups(self) -> dict[str, int]:
        return {g: int(self.design.frame[g].nunique()) for g in GROUPS}

    @property
    def problems(self) -> list[FitWarning]:
        """Warnings of severity ``error``: some estimate or test is not to be trusted."""
        return [w for w in self.warnings if w.severity == "error"]

    def warning_for(self, weights: np.ndarray | None = None) -> str:
        """The warning kinds that touch an estimate ``weights @ beta`` (None: the whole main fit)."""
        terms = None if weights is None else {t for t, w in zip(self.terms, weights) if w != 0}
        return warning_label(self.warnings, ("full",), terms)

    def trusts(self, terms: set[str]) -> bool:
        """Converged, and no problem of the main model touches ``terms`` (a note does not void them)."""
        return self.converged and not any(w.concerns("full", terms) for w in self.problems)

    def prior_regularised(self, terms: set[str]) -> bool:
        """Whether an estimate on ``terms`` is finite only through the prior (a prior fit's separation note)."""
        return any(w.kind == "separation" and w.severity == "note" and w.concerns("full", terms)
                   for w in self.warnings)

    def fixed_effects(self, level: float = 0.95) -> pd.DataFrame:
        """Estimate, SE, Wald interval, z and p per term, odds ratios, and whether to trust them."""
        table = wald_table(self.terms, self.beta, self.se, level).rename(columns={"name": "term"})
        table["prior_regularised"] = [self.prior_regularised({t}) for t in self.terms]
        table["converged"] = self.converged
        table["warning"] = [self.warning_for(np.eye(len(self.terms))[i]) for i in range(len(self.terms))]
        return table

    def vcov_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.vcov, index=self.terms, columns=self.terms)

    def icc(self) -> pd.DataFrame:
        """Latent-scale ICCs (residual pi^2/3); with random slopes, the unit's per condition."""
        sd = self.varcorr[self.varcorr["var2"] == ""].set_index(["group", "var1"])["sdcor"]
        cor = self.varcorr[self.varcorr["var2"] != ""].set_index(["group", "var1", "var2"])["sdcor"]
        participant = float(sd["participant", INTERCEPT]) ** 2
        rows = []
        conditions = self.design.conditions if self.spec.random_slopes else ["all"]
        for condition in conditions:
            unit = float(sd["unit", INTERCEPT]) ** 2
            slope = f"condition[{condition}]"
            if ("unit", slope) in sd.index:  # var(intercept + slope) of a non-reference condition
                s0, s1 = float(sd["unit", INTERCEPT]), float(sd["unit", slope])
                unit += s1**2 + 2 * float(cor.get(("unit", INTERCEPT, slope), 0.0)) * s0 * s1
            icc = latent_icc({"participant": participant, "unit": unit})
            rows += [("participant", condition, participant, icc["participant"]),
                     ("unit", condition, unit, icc["unit"])]
        return pd.DataFrame(rows, columns=["group", "condition", "variance", "icc"])


def wald_table(names: list[str], estimate: np.ndarray, se: np.ndarray, level: float = 0.95) -> pd.DataFrame:
    q = stats.norm.ppf(0.5 + level / 2)
    z = estimate / se
    table = pd.DataFrame({"name": names, "estimate": estimate, "se": se, "z": z, "p": 2 * stats.norm.sf(np.abs(z))})
    table["ci_lower"] = estimate - q * se
    table["ci_upper"] = estimate + q * se
    with np.errstate(over="ignore"):  # a separated term's odds ratio is honestly inf
        table["odds_ratio"] = np.exp(estimate)
        table["or_lower"] = np.exp(table["ci_lower"])
        table["or_upper"] = np.exp(table["ci_upper"])
    return table


def _models(design: Design, lrt: bool) -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
    """The fixed columns of each model to fit, and the LRTs as (term, bigger model, smaller model).

    LRTs: condition and network each dropped from the additive model, and the
    interaction (the paper's question whether a method helps less on some network)
    added to it: the full model when it has the interaction, else a model fitted
    for this test alone.
    """
    additive = design.blocks["condition"] + design.blocks["network"]
    interaction = bool(design.blocks.get("condition:network"))
    formulas = {"full": design.columns[1:]}
    tests = []
    if lrt:
        base = "additive" if interaction else "full"
        formulas[base] = additive
        for block in ("condition", "network"):
            formulas[f"no_{block}"] = [c for c in additive if c not in design.blocks[block]]
            tests.append((block, base, f"no_{block}"))
        if design.interaction_columns:  # none when a factor has one level
            bigger = "full" if interaction else "interaction"
            formulas[bigger] = additive + design.interaction_columns
            tests.append(("condition:network", bigger, base))
    return formulas, tests


def fit_model(design: Design, engine: str = "mixedlm", lrt: bool = True) -> FitResult:
    """Fit the model of ``design`` (and, with ``lrt``, the reduced models of the LRTs), then diagnose it."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if design.spec.prior not in PRIORS:
        raise ValueError(f"unknown prior {design.spec.prior!r}; choose one of {', '.join(PRIORS)}")
    prior = NormalPrior() if design.spec.prior == "normal" else None
    random = RandomEffects(tuple(design.blocks["condition"]) if design.spec.random_slopes else (),
                           design.spec.slope_correlations,
                           tuple(design.blocks["network"]) if design.spec.participant_slopes else ())
    formulas, tests = _models(design, lrt)
    start = time.perf_counter()
    fits, versions = fit_engine(engine, design.frame, formulas, {"full"}, random, prior)
    elapsed = time.perf_counter() - start
    main = fits["full"]
    found = [w for fit in fits.values() for w in fit.warnings]
    for warning in separation_in_data(design, prior is not None):  # every model holding a separated term
        columns = {c for t, c in zip(design.terms, design.columns) if t in warning.terms}
        holding = tuple(name for name, cols in formulas.items() if columns & {INTERCEPT, *cols})
        found.append(replace(warning, models=holding))
    found += separation_in_estimates(design.terms, main.beta, np.sqrt(np.diag(main.vcov)))
    if not design.spec.intercepts_only and main.singular:
        slopes = " and ".join(term for term in (design.spec.participant_term, design.spec.unit_term) if "+" in term)
        found.append(FitWarning("singular", f"the random slopes {slopes} "
                                "give a singular fit: some variance or correlation is at its boundary, the data "
                                "cannot support it; " + SIMPLIFY, "note"))
    rows = []
    for term, big, small in tests:
        row, lrt_warnings = likelihood_ratio(term, big, small, fits)
        found += lrt_warnings
        rows.append(row)
    lrt_table = pd.DataFrame(rows, columns=["term", "df", "chisq", "p", "loglik_full", "loglik_reduced", "converged"])
    lrt_table["warning"] = [warning_label(found, (big, small)) for _, big, small in tests]
    names = dict(zip(design.columns, design.terms))
    varcorr = main.varcorr.replace({"var1": names, "var2": names})
    messages = list(main.messages) + [f"model {name}: {m}" for name, fit in fits.items() if name != "full"
                                      for m in fit.messages]
    return FitResult(
        engine=engine, spec=design.spec, design=design, beta=main.beta, vcov=main.vcov,
        vcov_method=main.vcov_method + ("; the deviance includes the normal prior (as blme::bglmer)" if prior else ""),
        re_sd=main.re_sd, loglik=main.loglik, converged=main.converged,
        singular=main.singular, messages=messages, lrt=lrt_table, fit_s=elapsed, engine_versions=versions,
        warnings=found, varcorr=varcorr, ranef=None if main.ranef is None else main.ranef.replace({"term": names}),
    )


# so wide it only keeps a separated estimate finite (near 17 log-odds for a few hundred trials), where the
# log-likelihood is within ~1e-5 of the supremum a maximum-likelihood fit only approaches: both engines then
# stop at the same place, where an unpenalised optimiser stops wherever its tolerance says
SUPREMUM_PRIOR = NormalPrior(sd_intercept=1e3, sd=1e3)


def contrast_lrt(fit: FitResult, factor: str, level: str, versus: str) -> dict | None:
    """The likelihood-ratio test of ``level`` = ``versus`` (one factor), from maximum-likelihood fits:
    ``diagnostics.likelihood_ratio``'s row (chisq, df, p, both log-likelihoods).

    The constrained model merges the two levels (one dummy for both, or none when ``versus`` or
    ``level`` is the reference): in an additive model without random slopes that is exactly the
    contrast set to 0. Both models are fitted for their likelihood, not under the study's prior: under
    separation the likelihood stays bounded while the estimate runs away, so the LRT stays valid where
    the Wald p of a prior-regularised estimate is mostly the prior's (``SUPREMUM_PRIOR`` only keeps
    the runaway estimate finite; the log-likelihoods compared exclude its density). None when the model has the interaction or
    random slopes (the contrast is then not a merge of two levels) or a fit failed.
    """
    design = fit.design
    if design.spec.interaction or not design.spec.intercepts_only:
        return None
    column = dict(zip(design.terms, design.columns))
    merged = [column[term] for term in (f"{factor}[{level}]", f"{factor}[{versus}]") if term in column]
    frame = design.frame.copy()
    reduced = [c for c in design.columns[1:] if c not in merged]
    if len(merged) == 2:
        frame["x_merged"] = frame[merged[0]] + frame[merged[1]]
        reduced.append("x_merged")
    fits, _ = fit_engine(fit.engine, frame, {"full": design.columns[1:], "merged": reduced}, set(),
                         RandomEffects(), SUPREMUM_PRIOR)
    row, _ = likelihood_ratio(f"{factor}: {level} vs {versus}", "full", "merged", fits)
    return None if np.isnan(row["p"]) else row
