"""Fit diagnostics, the normal-prior remedy and random slopes, against lme4 and blme on data made here."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from analysis import models
from analysis.cli import analyze
from analysis.diagnostics import LATENT_RESIDUAL_VARIANCE, convergence_messages
from analysis.engines import EngineFit, NormalPrior
from analysis.models import ModelSpec, build_design, fit_model
from analysis.simulate import simulate_export


def study_rows(seed: int, conditions=("olah", "maco", "none"), networks=("resnet50", "vgg16"), per_condition=8,
               units_per_network=6, repeats=1, slope_sd=0.0, all_correct: str | None = None) -> pd.DataFrame:
    """Main trials: every participant (one condition each) sees every unit ``repeats`` times."""
    rng = np.random.default_rng(seed)
    effect = dict(zip(conditions, np.linspace(0.0, -0.8, len(conditions))))
    units = [f"{n}:{k}" for n in networks for k in range(units_per_network)]
    unit_effect = dict(zip(units, rng.normal(0, 0.5, len(units))))
    slope = {(u, c): rng.normal(0, slope_sd) if c != conditions[0] else 0.0 for u in units for c in conditions}
    rows = []
    for i in range(per_condition * len(conditions)):
        condition = conditions[i % len(conditions)]
        participant = rng.normal(0, 0.5)
        for unit in units * repeats:
            eta = 0.8 + effect[condition] + participant + unit_effect[unit] + slope[unit, condition]
            correct = condition == all_correct or rng.random() < 1 / (1 + np.exp(-eta))
            rows.append((f"p{i}", unit, condition, unit.split(":")[0], int(correct)))
    return pd.DataFrame(rows, columns=["participant_id", "unit", "condition", "network", "correct"])


def design_of(rows: pd.DataFrame, **spec) -> models.Design:
    return build_design(rows, ModelSpec(**spec), sorted(set(rows["condition"])), sorted(set(rows["network"])))


@pytest.fixture(scope="module")
def separated() -> pd.DataFrame:
    # with these data lme4 1.1-31 also falls back to RX for the covariance
    return study_rows(seed=8, per_condition=16, all_correct="maco")


def test_separation_is_detected_flagged_and_named(separated):
    fit = fit_model(design_of(separated))
    n_maco = int(separated["condition"].eq("maco").sum())
    kinds = {w.kind for w in fit.problems}
    assert "separation" in kinds
    in_data = next(w for w in fit.problems if w.message.startswith("separation: all"))
    assert in_data.message.startswith(f"separation: all {n_maco} main trials of condition maco are correct")
    assert "refit with --prior normal" in in_data.message and in_data.terms == ("condition[maco]",)
    table = fit.fixed_effects().set_index("term")
    assert "separation" in table.loc["condition[maco]", "warning"]
    assert "separation" not in table.loc["condition[none]", "warning"]
    assert abs(table.loc["condition[maco]", "estimate"]) > 10  # the drifting ML estimate, flagged twice
    huge = next(w for w in fit.problems if w.message.startswith("separation suspected: condition[maco] = "))
    assert "beyond |estimate| 10 or SE 5" in huge.message
    assert "separation" in fit.lrt.set_index("term").loc["condition", "warning"]


def test_lme4_engine_says_when_it_fell_back_to_rx(separated, rscript):
    fit = fit_model(design_of(separated), engine="lme4", lrt=False)
    assert "RX approximation" in fit.vcov_method and "Hessian-based" not in fit.vcov_method
    rx = [w for w in fit.warnings if w.kind == "vcov_rx"]
    assert rx and "falling back to var-cov estimated from RX" in rx[0].message and rx[0].severity == "note"
    assert any(w.kind == "separation" and w.severity == "error" for w in fit.warnings)


def test_normal_prior_gives_finite_estimates_matching_bglmer(separated, rscript):
    design = design_of(separated, prior="normal")
    ours = fit_model(design, lrt=False)
    blme = fit_model(design, engine="lme4", lrt=False)
    assert "blme" in blme.engine_versions
    assert ours.converged and np.all(np.abs(ours.beta) < 10) and np.all(ours.se < 5)
    assert ours.vcov_method.endswith("; the deviance includes the normal prior (as blme::bglmer)")
    assert np.abs(ours.beta - blme.beta).max() < 1e-3
    assert np.abs(ours.se / blme.se - 1).max() < 2e-3
    assert ours.re_sd["participant"] == pytest.approx(blme.re_sd["participant"], abs=1e-3)
    assert ours.loglik == pytest.approx(blme.loglik, abs=1e-3)
    note = next(w for w in ours.warnings if w.kind == "separation")
    assert note.severity == "note" and "finite only through the normal prior" in note.message
    assert not ours.problems


def test_normal_prior_density_is_blmes_prior_deviance():
    # blme printed "Prior dev: 14.8584" for fixef (0.2898, 5.4452) under normal(sd = c(10, 2.5))
    assert NormalPrior().deviance(np.array([0.2898, 5.4452])) == pytest.approx(14.8584, abs=1e-3)


def test_unknown_prior_is_an_error(separated):
    with pytest.raises(ValueError, match="unknown prior 'cauchy'; choose one of none, normal"):
        fit_model(design_of(separated, prior="cauchy"))


def test_random_slopes_match_lme4(rscript):
    rows = study_rows(seed=5, conditions=("olah", "maco"), per_condition=16, units_per_network=8, repeats=2,
                      slope_sd=0.8)
    design = design_of(rows, random_slopes=True)
    assert design.spec.formula.endswith("(1|participant) + (1 + condition|unit)")
    ours = fit_model(design, lrt=False)
    lme4 = fit_model(design, engine="lme4", lrt=False)
    assert np.abs(ours.beta - lme4.beta).max() < 5e-3
    assert np.abs(ours.se / lme4.se - 1).max() < 0.01
    key = ["group", "var1", "var2"]
    both = ours.varcorr.merge(lme4.varcorr, on=key, suffixes=("_ours", "_lme4"))
    assert sorted(map(tuple, both[key].values)) == [
        ("participant", "(Intercept)", ""), ("unit", "(Intercept)", ""), ("unit", "(Intercept)", "condition[maco]"),
        ("unit", "condition[maco]", ""),
    ]
    assert np.abs(both["sdcor_ours"] - both["sdcor_lme4"]).max() < 0.01
    assert ours.loglik == pytest.approx(lme4.loglik, abs=1e-3)
    # the unit's latent-scale ICC per condition: var(intercept + slope) over all variances + pi^2/3
    sd = ours.varcorr.set_index(["group", "var1", "var2"])["sdcor"]
    s0, s1 = sd["unit", "(Intercept)", ""], sd["unit", "condition[maco]", ""]
    r = sd["unit", "(Intercept)", "condition[maco]"]
    unit_maco = s0**2 + s1**2 + 2 * r * s0 * s1
    participant = sd["participant", "(Intercept)", ""] ** 2
    icc = ours.icc().set_index(["group", "condition"])["icc"]
    assert icc["unit", "maco"] == pytest.approx(unit_maco / (unit_maco + participant + LATENT_RESIDUAL_VARIANCE))
    assert icc["unit", "olah"] == pytest.approx(s0**2 / (s0**2 + participant + np.pi**2 / 3))


def test_singular_random_slopes_say_how_to_simplify():
    rows = study_rows(seed=2, conditions=("olah", "maco"), per_condition=10, units_per_network=4, slope_sd=0.0)
    fit = fit_model(design_of(rows, random_slopes=True), lrt=False)
    assert fit.singular
    note = next(w for w in fit.warnings if "random slopes" in w.message)
    assert note.kind == "singular" and note.severity == "note"
    assert note.message.startswith("the random slopes (1 + condition|unit) give a singular fit")
    assert "first drop the slopes' correlations (--no-slope-correlations), then the slopes" in note.message


def _fake_fit(loglik: float, npar: int) -> EngineFit:
    varcorr = pd.DataFrame({"group": ["participant", "unit"], "var1": ["(Intercept)"] * 2, "var2": [""] * 2,
                            "sdcor": [0.5, 0.5]})
    return EngineFit(beta=np.zeros(npar - 2), loglik=loglik, npar=npar, varcorr=varcorr, converged=True,
                     singular=False)


def test_a_negative_lrt_is_a_failed_fit_not_a_zero(separated, monkeypatch):
    design = design_of(separated)
    k = len(design.terms)

    def engine(name, frame, formulas, with_vcov, random, prior):
        fits = {name: _fake_fit(-500.0, len(cols) + 3) for name, cols in formulas.items()}
        fits["full"].loglik = -501.25  # the larger model "fits worse" than the one without condition
        fits["full"].vcov = np.eye(k) * 0.01
        return fits, {}

    monkeypatch.setattr(models, "fit_engine", engine)
    fit = fit_model(design)
    row = fit.lrt.set_index("term").loc["condition"]
    assert row["chisq"] == pytest.approx(-2.5) and np.isnan(row["p"]) and not row["converged"]
    assert "lrt" in row["warning"]
    failed = next(w for w in fit.problems if w.kind == "lrt" and "condition" in w.message)
    assert failed.message.startswith("LRT of condition: chi-square -2.5 < 0")
    assert "the fit of full failed, and the test is void" in failed.message


CHECK_CASES = ("clean", "gradient", "negative", "singular", "boundary")


def derivatives(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gradient, Hessian, coefficients) over one theta and two betas, made to fail one check each."""
    hessian = np.array([[2.0, 0.3, 0.1], [0.3, 1.5, 0.2], [0.1, 0.2, 1.0]])
    gradient = np.array([1e-5, -2e-5, 1e-5])
    if case == "gradient":
        gradient = np.array([1e-5, 0.05, 1e-5])
    elif case == "negative":
        hessian[2, 2] = -0.5
    elif case == "singular":  # one eigenvalue below check.conv.hess's 1e-6, yet a Cholesky factor exists
        q, _ = np.linalg.qr(np.array([[1.0, 0.2, 0.3], [0.1, 1.0, 0.4], [0.2, 0.3, 1.0]]))
        hessian = q @ np.diag([2.0, 1.5, 1e-8]) @ q.T
    coefs = np.array([1e-6 if case == "boundary" else 1.0, 1.0, 1.0])  # theta at its bound: singular
    return gradient, hessian, coefs


@pytest.fixture(scope="module")
def lme4_checkconv() -> dict[str, list[str]]:
    """lme4:::checkConv's messages per case, from one Rscript run."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("R is not installed (apt-get install r-base-core r-cran-lme4)")
    lines = ["ctrl <- lme4::glmerControl()$checkConv"]
    for case in CHECK_CASES:
        g, h, c = (", ".join(map(str, a.ravel(order="F").tolist())) for a in derivatives(case))
        lines.append(
            f"res <- suppressWarnings(suppressMessages(lme4:::checkConv(list(gradient = c({g}), "
            f"Hessian = matrix(c({h}), 3)), c({c}), ctrl = ctrl, lbound = 0)))\n"
            f'cat("@{case}\\n"); cat(gsub("[[:space:]]+", " ", unlist(res$messages)), sep = "\\n"); cat("\\n")'
        )
    done = subprocess.run([rscript, "--vanilla", "-e", "\n".join(lines)], capture_output=True, text=True,
                          check=True)
    messages: dict[str, list[str]] = {}
    for line in filter(None, (line.strip() for line in done.stdout.splitlines())):
        if line.startswith("@"):
            case = messages.setdefault(line[1:], [])
        else:
            case.append(line)
    return messages


@pytest.mark.parametrize("case", CHECK_CASES)
def test_convergence_checks_say_what_lme4_says(case, lme4_checkconv):
    gradient, hessian, _ = derivatives(case)
    ours = convergence_messages(gradient, hessian, n_theta=1, singular=case == "boundary")
    theirs = lme4_checkconv[case]
    if case == "boundary":  # lme4 stops at the singular fit, which FitResult notes on its own
        assert theirs == ["boundary (singular) fit: see help('isSingular')"] and ours == []
    else:  # lme4 1.1-31 names component 1 whatever the component (which.max of a scalar); ours the real one
        assert [re.sub(r"component \d+", "component 1", m) for m in ours] == theirs
    assert (ours == []) == (case in ("clean", "boundary"))
    if case == "gradient":
        assert ours == ["Model failed to converge with max|grad| = 0.04145 (tol = 0.002, component 2)"]


def test_analyze_passes_prior_and_slopes_to_the_model(tmp_path, small_model, monkeypatch):
    from analysis import pipeline

    responses = tmp_path / "responses.csv"
    simulate_export(small_model, n_participants=8, seed=1).to_csv(responses, index=False)
    seen = {}

    def stop(df, spec, **options):
        seen["spec"] = spec
        raise ValueError("stopped before the fit")

    monkeypatch.setattr(pipeline, "run_analysis", stop)
    result = CliRunner().invoke(analyze, [str(responses), "--out", str(tmp_path / "r"), "--prior", "normal",
                                          "--random-slopes"])
    assert result.exit_code == 1 and "stopped before the fit" in result.output
    assert seen["spec"].prior == "normal" and seen["spec"].random_slopes
    assert seen["spec"].formula.endswith("(1 + condition|unit)")
    result = CliRunner().invoke(analyze, [str(responses), "--out", str(tmp_path / "r"), "--prior", "cauchy"])
    assert result.exit_code == 2 and "'cauchy' is not one of 'none', 'normal'" in result.output


def test_analyze_tables_carry_the_separation(tmp_path, small_model):
    df = simulate_export(small_model, n_participants=16, seed=4)
    maco = df["condition"].eq("maco") & df["trial_kind"].eq("main")
    df.loc[maco, "chosen_side"] = df.loc[maco, "correct_side"]
    df.loc[maco, "correct"] = 1
    responses = tmp_path / "responses.csv"
    df.to_csv(responses, index=False)
    for prior in ("none", "normal"):
        out = tmp_path / prior
        result = CliRunner().invoke(analyze, [str(responses), "--out", str(out), "--prior", prior])
        # the tables are written either way; the exit code of an untrustworthy fit is the report's to set
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        fixed = pd.read_csv(out / "fixed_effects.csv", keep_default_na=False).set_index("term")
        assert "separation" in fixed.loc["condition[maco]", "warning"]
        assert "separation" not in fixed.loc["network[vgg16]", "warning"]
        lrt = pd.read_csv(out / "lrt.csv", keep_default_na=False).set_index("term")
        assert {"converged", "warning"} <= set(lrt.columns) and "separation" in lrt.loc["condition", "warning"]
        estimate = fixed.loc["condition[maco]", "estimate"]
        assert (abs(estimate) > 10) if prior == "none" else (0 < estimate < 10)


def test_uncorrelated_slopes_match_lme4(rscript):
    rows = study_rows(seed=5, conditions=("olah", "maco"), per_condition=16, units_per_network=8, repeats=2,
                      slope_sd=0.8)
    design = design_of(rows, random_slopes=True, slope_correlations=False)
    assert design.spec.formula.endswith("(1|participant) + (1 + condition||unit)")
    ours = fit_model(design, lrt=False)
    lme4 = fit_model(design, engine="lme4", lrt=False)
    key = ["group", "var1", "var2"]
    assert ours.varcorr[key].values.tolist() == lme4.varcorr[key].values.tolist() == [
        ["participant", "(Intercept)", ""], ["unit", "(Intercept)", ""], ["unit", "condition[maco]", ""]]
    assert np.abs(ours.varcorr["sdcor"] - lme4.varcorr["sdcor"]).max() < 0.01
    assert np.abs(ours.beta - lme4.beta).max() < 5e-3 and ours.loglik == pytest.approx(lme4.loglik, abs=1e-3)


def test_a_separated_cell_names_its_interaction_term():
    rows = study_rows(seed=6, per_condition=6)
    cell = rows["condition"].eq("maco") & rows["network"].eq("vgg16")
    rows.loc[cell, "correct"] = 1
    fit = fit_model(design_of(rows, interaction=True), lrt=False)
    found = [w for w in fit.problems if w.message.startswith("separation: all")]
    assert [w.terms for w in found] == [("condition[maco]:network[vgg16]",)]
    n_cell = int(cell.sum())
    assert found[0].message.startswith(f"separation: all {n_cell} main trials of cell maco x vgg16 are correct")


def test_prior_regularised_contrasts_are_marked_and_tested_by_likelihood_ratio(separated, rscript):
    """With separation and --prior normal, the Wald p of MACO vs Olah is mostly the prior's: the contrast is
    marked and its p comes from the LRT of maximum-likelihood fits with the two levels apart and merged,
    the same with lme4's glmer as with mixedlm."""
    from analysis.contrasts import declare_contrasts
    from analysis.effects import estimate_contrasts
    from analysis.pipeline import likelihood_ratio_tests

    design = design_of(separated, prior="normal")
    fit = fit_model(design, lrt=False)
    declared = declare_contrasts(["maco_vs_olah", "condition: none vs olah"], ["resnet50", "vgg16"])
    tests = likelihood_ratio_tests(fit, declared)
    assert list(tests) == ["MACO vs Olah"]  # none vs olah touches no separated term
    table = estimate_contrasts(fit, declared, tests=tests).set_index("contrast")
    assert table["prior_regularised"].tolist() == [True, False]
    assert table["p_method"].tolist() == ["likelihood ratio", "Wald"]
    assert table.loc["MACO vs Olah", "p"] == tests["MACO vs Olah"] != table.loc["MACO vs Olah", "p_wald"]
    assert table.loc["none vs olah", "p"] == table.loc["none vs olah", "p_wald"]
    assert fit.fixed_effects().set_index("term")["prior_regularised"].to_dict() == {
        "(Intercept)": False, "condition[maco]": True, "condition[none]": False, "network[vgg16]": False}
    # the same LRT from lme4's fits (blme with the barely-there prior that keeps the ML estimate finite)
    ours = models.contrast_lrt(fit, "condition", "maco", "olah")
    lme4 = models.contrast_lrt(fit_model(design, engine="lme4", lrt=False), "condition", "maco", "olah")
    assert ours["p"] == tests["MACO vs Olah"] and ours["df"] == 1
    assert ours["chisq"] == pytest.approx(lme4["chisq"], abs=1e-3) and ours["chisq"] > 50
    assert ours["loglik_reduced"] == pytest.approx(lme4["loglik_reduced"], abs=1e-3)
    # a contrast between two non-reference levels merges their two dummies
    assert models.contrast_lrt(fit, "condition", "maco", "none")["chisq"] > 50


def test_participant_network_slopes_match_lme4(small_model, rscript):
    """(1 + network|participant): each participant's own difference between networks, simulated with SD 0.8,
    is found by both engines alike (the tolerances of the unit slopes above)."""
    from dataclasses import replace

    from analysis.exclusions import model_rows, participant_table
    from analysis.load import validate_export

    model = replace(small_model, network_effects={"resnet50": 0.0, "vgg16": 0.2}, participant_network_sd=0.8,
                    main_trials_per_network=16)
    df = validate_export(simulate_export(model, n_participants=40, seed=61))
    rows = model_rows(df, participant_table(df))
    design = design_of(rows, participant_slopes=True)
    assert design.spec.formula.endswith("(1 + network|participant) + (1|unit)")
    ours = fit_model(design, lrt=False)
    lme4 = fit_model(design, engine="lme4", lrt=False)
    assert ours.converged and lme4.converged
    assert np.abs(ours.beta - lme4.beta).max() < 5e-3
    assert np.abs(ours.se / lme4.se - 1).max() < 0.01
    key = ["group", "var1", "var2"]
    both = ours.varcorr.merge(lme4.varcorr, on=key, suffixes=("_ours", "_lme4"))
    assert sorted(map(tuple, both[key].values)) == [
        ("participant", "(Intercept)", ""), ("participant", "(Intercept)", "network[vgg16]"),
        ("participant", "network[vgg16]", ""), ("unit", "(Intercept)", ""),
    ]
    assert np.abs(both["sdcor_ours"] - both["sdcor_lme4"]).max() < 0.01
    slope_sd = both.set_index(key).loc[("participant", "network[vgg16]", ""), "sdcor_ours"]
    assert 0.4 < slope_sd < 1.4  # the simulated participant x network spread (sqrt(2) x 0.8 for a difference)
    assert ours.loglik == pytest.approx(lme4.loglik, abs=1e-3)
