"""Contrasts against hand computations from beta and the covariance; Holm by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.contrasts import Contrast, cell_log_odds, default_contrasts, estimate_contrasts, holm
from analysis.models import FitResult, ModelSpec, build_design
from analysis.simulate import simulate_export
from analysis.load import validate_export
from analysis.exclusions import model_rows, participant_table

CONDITIONS = ["olah", "maco_mask", "maco", "none"]
NETWORKS = ["vgg16", "resnet50", "vit_b16"]


def fake_fit(model, interaction: bool, seed: int = 0) -> FitResult:
    """A FitResult with known beta and a random positive-definite covariance (no fitting)."""
    df = validate_export(simulate_export(model, n_participants=8, seed=seed))
    design = build_design(model_rows(df, participant_table(df)), ModelSpec(interaction=interaction),
                          CONDITIONS, NETWORKS)
    rng = np.random.default_rng(seed)
    k = len(design.terms)
    a = rng.normal(size=(k, k)) * 0.1
    return FitResult(
        engine="test", spec=design.spec, design=design, beta=rng.normal(size=k), vcov=a @ a.T + 0.01 * np.eye(k),
        vcov_method="", re_sd={}, loglik=0.0, converged=True, singular=False, messages=[],
        lrt=pd.DataFrame(), fit_s=0.0, engine_versions={},
    )


def test_holm_by_hand():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert np.allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm(np.array([0.5, 0.9])), [1.0, 1.0])


def test_default_contrasts_follow_the_levels():
    labels = [c.label for c in default_contrasts(CONDITIONS, NETWORKS)]
    assert labels == ["MACO vs Olah", "Olah vs none", "MACO with mask vs without", "vit_b16 vs vgg16",
                      "vit_b16 vs resnet50"]
    assert [c.label for c in default_contrasts(["olah", "maco"], ["resnet50"])] == ["MACO vs Olah"]


def test_additive_contrasts_equal_coefficient_differences(small_model):
    fit = fake_fit(small_model, interaction=False)
    b, V = fit.beta, fit.vcov
    i = {term: k for k, term in enumerate(fit.terms)}
    table = estimate_contrasts(fit, default_contrasts(CONDITIONS, NETWORKS)).set_index("contrast")

    def by_hand(plus: str | None, minus: str | None):
        L = np.zeros(len(b))
        if plus:
            L[i[plus]] += 1
        if minus:
            L[i[minus]] -= 1
        return L @ b, np.sqrt(L @ V @ L)

    hand = {
        "MACO vs Olah": by_hand("condition[maco]", None),
        "Olah vs none": by_hand(None, "condition[none]"),
        "MACO with mask vs without": by_hand("condition[maco_mask]", "condition[maco]"),
        "vit_b16 vs vgg16": by_hand("network[vit_b16]", "network[vgg16]"),
        "vit_b16 vs resnet50": by_hand("network[vit_b16]", None),
    }
    for label, (estimate, se) in hand.items():
        row = table.loc[label]
        assert row["estimate"] == pytest.approx(estimate)
        assert row["se"] == pytest.approx(se)
        assert row["p"] == pytest.approx(2 * stats.norm.sf(abs(estimate / se)))
        assert row["ci_lower"] == pytest.approx(estimate - 1.959964 * se, abs=1e-6)
        assert row["odds_ratio"] == pytest.approx(np.exp(estimate))
        assert row["or_upper"] == pytest.approx(np.exp(estimate + 1.959964 * se), rel=1e-6)
    assert np.allclose(table["p_holm"], holm(table["p"].to_numpy()))


def test_interaction_contrast_averages_over_networks(small_model):
    fit = fake_fit(small_model, interaction=True, seed=3)
    i = {term: k for k, term in enumerate(fit.terms)}
    L = np.zeros(len(fit.beta))
    L[i["condition[maco]"]] = 1.0
    L[i["condition[maco]:network[vgg16]"]] = 1 / 3  # resnet50 is the reference: no term
    L[i["condition[maco]:network[vit_b16]"]] = 1 / 3
    row = estimate_contrasts(fit, [Contrast("MACO vs Olah", "condition", "maco", "olah")]).iloc[0]
    assert row["estimate"] == pytest.approx(L @ fit.beta)
    assert row["se"] == pytest.approx(np.sqrt(L @ fit.vcov @ L))
    assert row["p_holm"] == pytest.approx(row["p"])  # a family of one


def test_cell_log_odds_by_hand(small_model):
    fit = fake_fit(small_model, interaction=True, seed=5)
    i = {term: k for k, term in enumerate(fit.terms)}
    cells = cell_log_odds(fit).set_index(["condition", "network"])
    b = fit.beta
    expected = b[i["(Intercept)"]] + b[i["condition[none]"]] + b[i["network[vgg16]"]] + b[
        i["condition[none]:network[vgg16]"]]
    assert cells.loc[("none", "vgg16"), "estimate"] == pytest.approx(expected)
    assert cells.loc[("olah", "resnet50"), "se"] == pytest.approx(np.sqrt(fit.vcov[0, 0]))
    assert cells.loc[("none", "vgg16"), "probability"] == pytest.approx(1 / (1 + np.exp(-expected)))
