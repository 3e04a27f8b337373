"""The model: readable terms, reference levels, lme4's Hessian vcov, agreement with R's lme4.

Diagnostics, the prior and random slopes: test_analysis_fit_diagnostics.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from analysis.engines import lme4_engine
from analysis.engines.mixedlm_engine import deriv12
from analysis.exclusions import model_rows, participant_table
from analysis.load import validate_export
from analysis.models import EngineError, ModelSpec, build_design, fit_model

CONDITIONS = ["olah", "maco_mask", "maco", "none"]
NETWORKS = ["vgg16", "resnet50", "vit_b16"]


@pytest.fixture(scope="module")
def rows(small_export):
    df = validate_export(small_export)
    return model_rows(df, participant_table(df))


@pytest.fixture(scope="module")
def fitted(rows):
    return fit_model(build_design(rows, ModelSpec(), CONDITIONS, NETWORKS))


def test_terms_are_readable_with_reference_levels_first(rows):
    design = build_design(rows, ModelSpec(interaction=True), CONDITIONS, NETWORKS)
    assert design.conditions == ["olah", "maco_mask", "maco", "none"]
    assert design.networks == ["resnet50", "vgg16", "vit_b16"]
    assert design.terms[:6] == [
        "(Intercept)", "condition[maco_mask]", "condition[maco]", "condition[none]", "network[vgg16]",
        "network[vit_b16]",
    ]
    assert "condition[maco]:network[vit_b16]" in design.terms and len(design.terms) == 12
    # the design row of a cell switches on exactly its own terms
    row = dict(zip(design.terms, design.row("maco", "vit_b16")))
    on = {term for term, value in row.items() if value}
    assert on == {"(Intercept)", "condition[maco]", "network[vit_b16]", "condition[maco]:network[vit_b16]"}
    assert design.row("olah", "resnet50").tolist() == [1.0] + [0.0] * 11  # the reference cell
    # each frame column is the indicator of its term
    maco_vit = (rows["condition"].eq("maco") & rows["network"].eq("vit_b16")).to_numpy()
    column = design.columns[design.terms.index("condition[maco]:network[vit_b16]")]
    assert np.array_equal(design.frame[column].to_numpy(), maco_vit.astype(float))


def test_unknown_reference_level_is_an_error(rows):
    with pytest.raises(ValueError, match="reference network 'resnet18'"):
        build_design(rows, ModelSpec(ref_network="resnet18"), CONDITIONS, NETWORKS)


def test_fit_reports_effects_sds_convergence_and_lrts(rows, fitted):
    table = fitted.fixed_effects().set_index("term")
    assert fitted.converged and not fitted.singular and not fitted.warnings
    assert table["converged"].all() and table["warning"].eq("").all()
    assert np.allclose(table["z"], table["estimate"] / table["se"])
    assert np.allclose(table["ci_upper"] - table["estimate"], 1.959964 * table["se"], atol=1e-6)
    assert np.allclose(table["odds_ratio"], np.exp(table["estimate"]))
    assert set(fitted.re_sd) == {"participant", "unit"} and all(v > 0 for v in fitted.re_sd.values())
    assert fitted.lrt["term"].tolist() == ["condition", "network", "condition:network"]
    assert fitted.lrt["df"].tolist() == [3, 2, 6]
    assert (fitted.lrt["chisq"] > 0).all() and fitted.lrt["p"].between(0, 1).all()
    assert fitted.lrt["converged"].all() and fitted.lrt["warning"].eq("").all()
    assert fitted.n_obs == len(rows)
    assert fitted.n_groups == {"participant": rows["participant_id"].nunique(), "unit": 24}


def test_changing_the_reference_reparameterises_the_same_fit(rows, fitted):
    other = fit_model(build_design(rows, ModelSpec(ref_condition="maco"), CONDITIONS, NETWORKS), lrt=False)
    a = fitted.fixed_effects().set_index("term")
    b = other.fixed_effects().set_index("term")
    assert b.loc["condition[olah]", "estimate"] == pytest.approx(-a.loc["condition[maco]", "estimate"], abs=2e-3)
    assert b.loc["condition[olah]", "se"] == pytest.approx(a.loc["condition[maco]", "se"], rel=1e-2)
    assert other.loglik == pytest.approx(fitted.loglik, abs=1e-3)


def test_deriv12_is_exact_on_a_quadratic():
    A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, -0.2], [0.5, -0.2, 2.0]])
    x0 = np.array([0.3, -1.0, 2.0])
    at = x0 + np.array([0.1, 0.0, -0.2])
    gradient, hessian = deriv12(lambda x: 0.5 * (x - x0) @ A @ (x - x0) + 7.0, at)
    assert np.allclose(hessian, A, atol=1e-5)
    assert np.allclose(gradient, A @ (at - x0), atol=1e-6)


def test_interaction_adds_its_lrt(rows):
    fit = fit_model(build_design(rows, ModelSpec(interaction=True), CONDITIONS, NETWORKS))
    assert fit.lrt["term"].tolist() == ["condition", "network", "condition:network"]
    assert fit.lrt["df"].tolist() == [3, 2, 6]
    assert fit.vcov.shape == (12, 12)


def test_the_additive_model_reports_the_interaction_lrt(rows, fitted):
    """The paper's question (does a method help less on some network?) is tested without --interaction,
    by the same pair of models the interaction model's own LRT compares."""
    assert fitted.lrt["term"].tolist() == ["condition", "network", "condition:network"]
    assert fitted.lrt["df"].tolist() == [3, 2, 6]
    assert fitted.terms == ["(Intercept)", *[t for t in fitted.terms[1:] if ":" not in t]] and len(fitted.terms) == 6
    interaction = fit_model(build_design(rows, ModelSpec(interaction=True), CONDITIONS, NETWORKS))
    both = fitted.lrt.merge(interaction.lrt, on="term", suffixes=("", "_interaction"))
    assert np.allclose(both["chisq"], both["chisq_interaction"], atol=1e-3)
    assert np.allclose(both["p"], both["p_interaction"], atol=1e-4)


def test_lme4_engine_without_r_says_how_to_install(rows, monkeypatch):
    monkeypatch.setattr(lme4_engine.shutil, "which", lambda name: None)
    with pytest.raises(EngineError, match="Rscript is not on PATH .Debian: apt-get install r-base-core r-cran-lme4"):
        fit_model(build_design(rows, ModelSpec(), CONDITIONS, NETWORKS), engine="lme4")


def test_mixedlm_agrees_with_lme4(rows, fitted, rscript):
    lme4 = fit_model(build_design(rows, ModelSpec(), CONDITIONS, NETWORKS), engine="lme4")
    assert lme4.terms == fitted.terms
    assert np.abs(fitted.beta - lme4.beta).max() < 0.02
    assert np.abs(fitted.se / lme4.se - 1).max() < 0.05
    for group in ("participant", "unit"):
        assert fitted.re_sd[group] == pytest.approx(lme4.re_sd[group], abs=0.02)
    assert fitted.loglik == pytest.approx(lme4.loglik, abs=0.01)
    assert np.allclose(fitted.lrt["chisq"], lme4.lrt["chisq"], atol=0.05)
    assert lme4.converged and "lme4" in lme4.engine_versions
    # the units' conditional modes and SDs (the caterpillar plot's), as lme4's ranef(condVar = TRUE)
    ours = fitted.ranef.set_index(["group", "level"])
    theirs = lme4.ranef.set_index(["group", "level"]).loc[ours.index]
    assert len(ours.loc["unit"]) == 24 and set(ours["term"]) == {"(Intercept)"}
    np.testing.assert_allclose(ours["mode"], theirs["mode"], atol=0.02)  # the fits' own tolerance above
    np.testing.assert_allclose(ours["cond_sd"], theirs["cond_sd"], atol=0.01)
    assert lme4.vcov_method == lme4_engine.HESSIAN_VCOV
    both = fitted.varcorr.merge(lme4.varcorr, on=["group", "var1", "var2"])
    assert len(both) == 2 and np.allclose(both["sdcor_x"], both["sdcor_y"], atol=0.02)
