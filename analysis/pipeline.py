"""From a validated export to every number the report shows.

The checks that can fail come before the fit: the levels of the export, the
declared contrasts (each level present), the reference levels; then the
warnings that do not stop the analysis (few participants per condition).
"""
from __future__ import annotations

from study_protocol.study import CONDITIONS, TRANSFORMER_NETWORK

from dataclasses import dataclass, replace

import pandas as pd

from analysis.contrasts import Contrast, check_contrasts, declare_contrasts, default_contrasts
from analysis.descriptives import cell_accuracy, participant_accuracy, trial_summary
from analysis.effects import (
    cell_predictions, chance_tests, estimate_contrasts, marginal_predictions, marginal_row, simple_effects,
)
from analysis.exclusions import (
    ExclusionRules, exclusion_summary, fast_trial_summary, model_rows, participant_table, sample_size_warnings,
)
from analysis.intervals import BOOTSTRAP_SAMPLES, apply_intervals, check_supported
from analysis.load import check_levels, check_study_conditions
from analysis.ordinal import OrdinalFit, fit_ordinal, ordinal_contrasts
from analysis.secondary import LogRtFit, fit_log_rt, log_rt_contrasts
from analysis.models import Design, FitResult, ModelSpec, build_design, contrast_lrt, fit_model

MIN_PARTICIPANTS_PER_CONDITION = 10  # below this, a warning: condition effects and the participant SD are unstable


@dataclass
class Analysis:
    participants: pd.DataFrame  # one row per participant: rule measures, exclusion and reasons
    exclusions: pd.DataFrame  # per condition: counts per rule, excluded, included
    fast_trials: pd.DataFrame  # per condition: main trials under the RT floor, by clock
    rows: pd.DataFrame  # the main trials the model sees
    per_participant: pd.DataFrame  # accuracy per participant x network
    descriptives: pd.DataFrame  # accuracy per condition x network, +-2 SEM
    trial_summary: pd.DataFrame  # catch and main accuracy and RT per condition
    fit: FitResult
    declared: list[Contrast]  # the contrasts tested, with their families
    contrasts: pd.DataFrame
    simple_effects: pd.DataFrame  # condition contrasts within each network (interaction models; else empty)
    cells: pd.DataFrame  # predicted log-odds and probability per condition x network
    marginals: pd.DataFrame  # the same per condition and per network
    chance: pd.DataFrame  # per condition: accuracy against 50%, model-based and model-free
    sensitivity: pd.DataFrame  # the contrasts refitted without exclusions / RT floor (long; empty if not asked)
    log_rt: LogRtFit | None  # the secondary outcome: log RT, same design (None if not asked)
    log_rt_contrasts: pd.DataFrame
    confidence: OrdinalFit | None  # the secondary outcome: confidence ratings, same design (None if not asked)
    confidence_contrasts: pd.DataFrame
    rules: ExclusionRules
    warnings: list[str]  # data warnings that did not stop the analysis


def run_analysis(
    df: pd.DataFrame,
    spec: ModelSpec = ModelSpec(),
    engine: str = "mixedlm",
    rules: ExclusionRules = ExclusionRules(),
    conditions: list[str] | None = None,
    networks: list[str] | None = None,
    vit: str = TRANSFORMER_NETWORK,
    lrt: bool = True,
    contrasts: list[str] | None = None,
    study_conditions: list[str] | None = None,
    min_participants: int = MIN_PARTICIPANTS_PER_CONDITION,
    sensitivity: bool = True,
    secondary: bool = True,
    ci: str = "wald",
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    jobs: int = 1,
) -> Analysis:
    """Exclusions, descriptives, model, contrasts for a validated export (``load.validate_export``).

    ``conditions`` and ``networks`` default to the levels present in the export (each condition one of
    ``study_conditions``, the study's declared ones (its ``study.json``; default the paper's,
    ``study_protocol.study.CONDITIONS``), or ``ExportError``);
    each must keep main trials after the exclusions, or this raises ``ExportError``.
    ``contrasts`` are ``--contrast`` declarations (default: ``default_contrasts`` of the study's
    conditions, the paper's set for the paper's four); a
    level they need and the data lacks raises ``ContrastError`` before any fit. ``sensitivity``
    refits the model without the participant exclusions and without the RT floor (``sensitivity_table``).
    ``secondary`` fits log RT and the confidence ratings with the same design (``analysis.secondary``,
    ``analysis.ordinal``). ``ci`` picks the contrasts' intervals (``analysis.intervals``: wald, profile, bootstrap with
    ``bootstrap_samples`` refits from ``seed`` on ``jobs`` processes).
    """
    check_supported(spec, engine, ci)
    study_conditions = list(study_conditions or CONDITIONS)
    if conditions is None:
        check_study_conditions(df, study_conditions)
    conditions = list(conditions or sorted(set(df["condition"])))
    networks = list(networks or sorted(set(df.loc[df["trial_kind"].eq("main"), "network"])))
    check_levels(df, "condition", conditions, "rows")
    check_levels(df[df["trial_kind"].eq("main")], "network", networks, "main trials")
    declared = declare_contrasts(contrasts or default_contrasts(study_conditions, spec.ref_condition), networks, vit)
    check_contrasts(declared, {"condition": conditions, "network": networks}, vit)
    participants = participant_table(df, rules)
    rows = model_rows(df, participants, rules)
    where = "main trials from included participants above the RT floor"
    check_levels(rows, "condition", conditions, where)
    check_levels(rows, "network", networks, where)
    design = build_design(rows, spec, conditions, networks)
    exclusions = exclusion_summary(participants, design.conditions)
    fit = fit_model(design, engine=engine, lrt=lrt)
    tests = likelihood_ratio_tests(fit, declared, every=ci == "profile") if lrt or ci == "profile" else {}
    contrasts = apply_intervals(estimate_contrasts(fit, declared, tests=tests), fit, declared, ci,
                                bootstrap_samples, seed, jobs)
    log_rt = fit_log_rt(design, rows) if secondary else None
    confidence = fit_ordinal(design, rows) if secondary else None
    return Analysis(
        participants=participants,
        exclusions=exclusions,
        fast_trials=fast_trial_summary(df, participants, design.conditions, rules),
        rows=rows,
        per_participant=participant_accuracy(rows),
        descriptives=cell_accuracy(rows, design.conditions, design.networks),
        trial_summary=trial_summary(df, participants, design.conditions),
        fit=fit,
        declared=declared,
        contrasts=contrasts,
        simple_effects=simple_effects(fit, declared) if spec.interaction else pd.DataFrame(),
        cells=cell_predictions(fit),
        marginals=marginal_predictions(fit),
        chance=chance_tests(fit, rows),
        sensitivity=sensitivity_table(df, participants, rules, design, engine, declared, contrasts)
        if sensitivity else pd.DataFrame(),
        log_rt=log_rt,
        log_rt_contrasts=log_rt_contrasts(log_rt, declared) if log_rt else pd.DataFrame(),
        confidence=confidence,
        confidence_contrasts=ordinal_contrasts(confidence, declared) if confidence else pd.DataFrame(),
        rules=rules,
        warnings=sample_size_warnings(exclusions, min_participants),
    )


def likelihood_ratio_tests(fit: FitResult, declared: list[Contrast], every: bool = False) -> dict[str, float]:
    """The likelihood-ratio p-value of each prior-regularised contrast (``every``: of each contrast, the test
    a profile-likelihood interval inverts) that the model can constrain to 0."""
    tests = {}
    for contrast in declared:
        row = marginal_row(fit.design, contrast.factor, contrast.level) - marginal_row(
            fit.design, contrast.factor, contrast.versus)
        if every or fit.prior_regularised({t for t, w in zip(fit.terms, row) if w != 0}):
            test = contrast_lrt(fit, contrast.factor, contrast.level, contrast.versus)
            if test is not None:
                tests[contrast.label] = test["p"]
    return tests


# (label, keep every participant, drop trials under the RT floor); the first is the reported analysis
SENSITIVITY_VARIANTS = (
    ("as reported", False, True),
    ("no participant exclusions", True, True),
    ("no RT floor", False, False),
    ("neither", True, False),
)


def sensitivity_table(df: pd.DataFrame, participants: pd.DataFrame, rules: ExclusionRules, design: Design,
                      engine: str, declared: list[Contrast], reported: pd.DataFrame) -> pd.DataFrame:
    """The declared contrasts refitted with and without the participant exclusions and the RT floor.

    Long: one row per variant and contrast (estimate, unadjusted and Bonferroni intervals, p, p_holm,
    trusted), with the participants and trials each fit saw; the first variant is ``reported`` (the
    main analysis, its own fit). Without exclusions every participant's answered main trials count,
    finished or not.
    """
    tables = []
    for label, everyone, floor in SENSITIVITY_VARIANTS:
        table = participants.assign(excluded=False) if everyone else participants
        rows = model_rows(df, table, rules if floor else replace(rules, min_rt_ms=0.0))
        if label == SENSITIVITY_VARIANTS[0][0]:
            contrasts = reported.copy()
        else:
            fit = fit_model(build_design(rows, design.spec, design.conditions, design.networks), engine=engine,
                            lrt=False)
            contrasts = estimate_contrasts(fit, declared)
        contrasts.insert(0, "variant", label)
        contrasts.insert(1, "participants", rows["participant_id"].nunique())
        contrasts.insert(2, "trials", len(rows))
        tables.append(contrasts)
    return pd.concat(tables, ignore_index=True)
