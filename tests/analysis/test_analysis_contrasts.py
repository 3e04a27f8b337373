"""Declared contrasts and their families; estimates against hand computations from beta and the covariance."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

from analysis.contrasts import Contrast, ContrastError, check_contrasts, declare_contrasts
from analysis.diagnostics import FitWarning
from analysis.effects import cell_predictions, estimate_contrasts, holm
from analysis.exclusions import model_rows, participant_table
from analysis.load import validate_export
from analysis.models import FitResult, ModelSpec, build_design
from analysis.simulate import simulate_export

CONDITIONS = ["olah", "maco_mask", "maco", "none"]
NETWORKS = ["vgg16", "resnet50", "vit_b16"]
LEVELS = {"condition": CONDITIONS, "network": NETWORKS}


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


def test_paper_set_and_its_default_families():
    contrasts = declare_contrasts(None, NETWORKS)
    assert [c.label for c in contrasts] == ["MACO vs Olah", "Olah vs none", "MACO with mask vs without",
                                            "vit_b16 vs vgg16", "vit_b16 vs resnet50"]
    assert [c.family for c in contrasts] == ["conditions"] * 3 + ["networks"] * 2
    check_contrasts(contrasts, LEVELS)  # all levels present: no error


def test_declarations_by_name_by_levels_and_with_a_family():
    contrasts = declare_contrasts(["maco_vs_olah", "condition: MACO vs Olah_v2", "h1 = network: vgg16 vs resnet50",
                                   "h1 = mask_vs_no_mask"], NETWORKS)
    assert contrasts == [
        Contrast("MACO vs Olah", "condition", "maco", "olah", "conditions", "maco_vs_olah"),
        Contrast("MACO vs Olah_v2", "condition", "MACO", "Olah_v2", "conditions"),
        Contrast("vgg16 vs resnet50", "network", "vgg16", "resnet50", "h1"),
        Contrast("MACO with mask vs without", "condition", "maco_mask", "maco", "h1", "mask_vs_no_mask"),
    ]


@pytest.mark.parametrize(
    "declaration, message",
    [
        ("pixel_vs_olah", "unknown contrast 'pixel_vs_olah': use one of maco_vs_olah"),
        ("unit: a vs b", "the factor must be one of condition, network, not 'unit'"),
        ("condition: maco versus olah", "write two different levels as 'level vs versus'"),
        ("condition: maco vs maco", "write two different levels"),
    ],
)
def test_malformed_declarations_are_errors(declaration, message):
    with pytest.raises(ContrastError, match=message):
        declare_contrasts([declaration], NETWORKS)


def test_a_contrast_declared_twice_is_an_error():
    with pytest.raises(ContrastError, match="declared twice: maco vs olah"):
        declare_contrasts(["maco_vs_olah", "condition: maco vs olah"], NETWORKS)
    with pytest.raises(ContrastError, match="declared twice: olah vs maco"):  # the same test, reversed
        declare_contrasts(["maco_vs_olah", "h2 = condition: olah vs maco"], NETWORKS)


def test_missing_none_is_an_error_listing_levels_and_the_contrasts_that_fit():
    levels = {"condition": ["olah", "maco_mask", "maco"], "network": NETWORKS}
    with pytest.raises(ContrastError) as caught:
        check_contrasts(declare_contrasts(None, NETWORKS), levels)
    message = str(caught.value)
    assert "condition 'none' (needed by 'Olah vs none')" in message
    assert "conditions found: olah, maco_mask, maco" in message
    assert "--contrast maco_vs_olah --contrast mask_vs_no_mask --contrast vit_vs_cnns" in message
    # naming a set without it is the way out
    check_contrasts(declare_contrasts(["maco_vs_olah", "mask_vs_no_mask", "vit_vs_cnns"], NETWORKS), levels)


def test_a_renamed_vit_is_an_error_not_a_lost_family():
    networks = ["resnet50", "vgg16", "vit_l16"]
    needed = r"network 'vit_b16' \(needed by 'vit_b16 vs resnet50', 'vit_b16 vs vgg16', 'vit_b16 vs vit_l16'\)"
    with pytest.raises(ContrastError, match=needed + ".*networks found: resnet50, vgg16, vit_l16"):
        check_contrasts(declare_contrasts(None, networks), {"condition": CONDITIONS, "network": networks})
    declared = declare_contrasts(["vit_vs_cnns"], networks, vit="vit_l16")
    assert [c.label for c in declared] == ["vit_l16 vs resnet50", "vit_l16 vs vgg16"]


def test_vit_against_no_other_network_is_an_error():
    with pytest.raises(ContrastError, match="'vit_vs_cnns' needs a network besides vit_b16"):
        declare_contrasts(["vit_vs_cnns"], ["vit_b16"])


def test_conditions_spelled_differently_are_an_error():
    levels = {"condition": ["Olah", "MACO", "MACO_mask", "none"], "network": NETWORKS}
    with pytest.raises(ContrastError, match="condition 'maco' .*conditions found: Olah, MACO, MACO_mask, none"):
        check_contrasts(declare_contrasts(None, NETWORKS), levels)
    check_contrasts(declare_contrasts(["condition: MACO vs Olah"], NETWORKS), levels)


def test_additive_contrasts_equal_coefficient_differences(small_model):
    fit = fake_fit(small_model, interaction=False)
    b, V = fit.beta, fit.vcov
    i = {term: k for k, term in enumerate(fit.terms)}
    table = estimate_contrasts(fit, declare_contrasts(None, NETWORKS)).set_index("contrast")

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
        assert row["converged"]
    conditions = table[table["family"] == "conditions"]
    assert np.allclose(conditions["p_holm"], holm(conditions["p"].to_numpy()))
    networks = table[table["family"] == "networks"]
    assert np.allclose(networks["p_holm"], holm(networks["p"].to_numpy()))


def test_percentage_points_are_differences_of_back_transformed_marginal_means(small_model):
    fit = fake_fit(small_model, interaction=False, seed=7)
    cells = cell_predictions(fit).set_index(["condition", "network"])["log_odds"]
    row = estimate_contrasts(fit, declare_contrasts(["maco_vs_olah"], NETWORKS)).iloc[0]
    maco = expit(np.mean([cells[("maco", n)] for n in NETWORKS]))
    olah = expit(np.mean([cells[("olah", n)] for n in NETWORKS]))
    assert row["pp"] == pytest.approx(100 * (maco - olah))
    assert row["pp_upper"] - row["pp"] == pytest.approx(1.959964 * row["pp_se"], rel=1e-6)


def test_interaction_contrast_averages_over_networks(small_model):
    fit = fake_fit(small_model, interaction=True, seed=3)
    i = {term: k for k, term in enumerate(fit.terms)}
    L = np.zeros(len(fit.beta))
    L[i["condition[maco]"]] = 1.0
    L[i["condition[maco]:network[vgg16]"]] = 1 / 3  # resnet50 is the reference: no term
    L[i["condition[maco]:network[vit_b16]"]] = 1 / 3
    row = estimate_contrasts(fit, declare_contrasts(["maco_vs_olah"], NETWORKS)).iloc[0]
    assert row["estimate"] == pytest.approx(L @ fit.beta)
    assert row["se"] == pytest.approx(np.sqrt(L @ fit.vcov @ L))
    assert row["p_holm"] == pytest.approx(row["p"])  # a family of one


def test_cell_predictions_by_hand(small_model):
    fit = fake_fit(small_model, interaction=True, seed=5)
    i = {term: k for k, term in enumerate(fit.terms)}
    cells = cell_predictions(fit).set_index(["condition", "network"])
    b = fit.beta
    expected = b[i["(Intercept)"]] + b[i["condition[none]"]] + b[i["network[vgg16]"]] + b[
        i["condition[none]:network[vgg16]"]]
    assert cells.loc[("none", "vgg16"), "log_odds"] == pytest.approx(expected)
    assert cells.loc[("olah", "resnet50"), "se"] == pytest.approx(np.sqrt(fit.vcov[0, 0]))
    assert cells.loc[("none", "vgg16"), "probability"] == pytest.approx(expit(expected))
    upper = cells.loc[("none", "vgg16"), "ci_upper"]
    assert cells.loc[("none", "vgg16"), "probability_upper"] == pytest.approx(expit(upper))


def test_a_problem_on_one_term_voids_only_the_contrasts_that_use_it(small_model):
    separated = FitWarning("separation", "all maco trials correct", "error", ("full",), ("condition[maco]",))
    note = FitWarning("singular", "boundary (singular) fit", "note")
    fit = replace(fake_fit(small_model, interaction=False), warnings=[separated, note])
    table = estimate_contrasts(fit, declare_contrasts(None, NETWORKS)).set_index("contrast")
    assert table["trusted"].to_dict() == {
        "MACO vs Olah": False, "Olah vs none": True, "MACO with mask vs without": False,
        "vit_b16 vs vgg16": True, "vit_b16 vs resnet50": True,
    }
    assert table.loc["MACO vs Olah", "warning"] == "separation; singular"
    assert table.loc["Olah vs none", "warning"] == "singular"  # a note touches every term, voids none


def test_default_contrasts_follow_the_declared_conditions():
    from analysis.contrasts import PAPER_SET, default_contrasts

    assert default_contrasts(["olah", "maco_mask", "maco", "none"], "olah") == list(PAPER_SET)
    assert default_contrasts(["olah", "maco_mask", "maco", "natural", "none"], "olah") == [
        "maco_vs_olah", "olah_vs_none", "mask_vs_no_mask", "condition: natural vs olah", "vit_vs_cnns"]
    assert default_contrasts(["maco", "natural", "mine"], "maco") == [
        "condition: natural vs maco", "condition: mine vs maco", "vit_vs_cnns"]


def test_an_export_of_the_papers_study_gives_the_same_numbers_with_its_study_json(tmp_path):
    """The design file an export of the paper's four-condition study now carries changes nothing."""
    import json

    from click.testing import CliRunner

    from maco_study import main
    from study_protocol.export import STUDY_DESIGN_FILE, study_design

    responses = tmp_path / "responses.csv"
    simulate_export(n_participants=24, seed=3).to_csv(responses, index=False)
    args = ["analyze", str(responses)]
    before = tmp_path / "before"
    assert CliRunner().invoke(main, [*args, "--out", str(before)]).exit_code == 0
    (tmp_path / STUDY_DESIGN_FILE).write_text(json.dumps(study_design(
        {"study": "paper", "conditions": ["olah", "maco_mask", "maco", "none"]})))
    after = tmp_path / "after"
    assert CliRunner().invoke(main, [*args, "--out", str(after)]).exit_code == 0
    for name in ("fixed_effects.csv", "contrasts.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(before / name), pd.read_csv(after / name))
