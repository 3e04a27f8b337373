"""From a validated export to every number the report shows."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.contrasts import cell_log_odds, default_contrasts, estimate_contrasts
from analysis.descriptives import cell_accuracy, participant_accuracy
from analysis.exclusions import ExclusionRules, exclusion_summary, model_rows, participant_table
from analysis.load import check_levels
from analysis.models import FitResult, ModelSpec, build_design, fit_model


@dataclass
class Analysis:
    participants: pd.DataFrame  # one row per participant: rule measures, exclusion and reasons
    exclusions: pd.DataFrame  # per condition: counts per rule, excluded, included
    rows: pd.DataFrame  # the main trials the model sees
    per_participant: pd.DataFrame  # accuracy per participant x network
    descriptives: pd.DataFrame  # accuracy per condition x network, +-2 SEM
    fit: FitResult
    contrasts: pd.DataFrame
    cells: pd.DataFrame  # model log-odds per condition x network
    rules: ExclusionRules


def run_analysis(
    df: pd.DataFrame,
    spec: ModelSpec = ModelSpec(),
    engine: str = "mixedlm",
    rules: ExclusionRules = ExclusionRules(),
    conditions: list[str] | None = None,
    networks: list[str] | None = None,
    vit: str = "vit_b16",
    lrt: bool = True,
) -> Analysis:
    """Exclusions, descriptives, model, contrasts for a validated export (``load.validate_export``).

    ``conditions`` and ``networks`` default to the levels present in the export;
    each must keep main trials after the exclusions, or this raises ``ExportError``.
    """
    conditions = list(conditions or sorted(set(df["condition"])))
    networks = list(networks or sorted(set(df.loc[df["trial_kind"].eq("main"), "network"])))
    check_levels(df, "condition", conditions, "rows")
    participants = participant_table(df, rules)
    rows = model_rows(df, participants)
    where = "main trials from included participants"
    check_levels(rows, "condition", conditions, where)
    check_levels(rows, "network", networks, where)
    design = build_design(rows, spec, conditions, networks)
    fit = fit_model(design, engine=engine, lrt=lrt)
    return Analysis(
        participants=participants,
        exclusions=exclusion_summary(participants, design.conditions),
        rows=rows,
        per_participant=participant_accuracy(rows),
        descriptives=cell_accuracy(rows, design.conditions, design.networks),
        fit=fit,
        contrasts=estimate_contrasts(fit, default_contrasts(design.conditions, design.networks, vit)),
        cells=cell_log_odds(fit),
        rules=rules,
    )
