"""--ci profile and --ci bootstrap against lme4: confint(method = "profile"), and refits of the same
simulated responses (the parametric bootstrap of confint(method = "boot"), with shared draws)."""
from __future__ import annotations

import subprocess
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analysis.intervals import (
    IntervalError, bootstrap_betas, bootstrap_intervals, check_supported, profile_intervals, simulate_responses,
)
from analysis.load import validate_export
from analysis.models import ModelSpec
from analysis.pipeline import run_analysis
from analysis.simulate import simulate_export

DECLARED = ["mask_vs_no_mask", "vit_vs_cnns"]  # a contrast of two non-reference levels, and a family of two

PROFILE_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$network <- factor(d$network, levels = c("vgg16", "resnet50", "vit_b16"))  # the contrast's versus first
m <- glmer(correct ~ condition + network + (1 | participant) + (1 | unit), data = d, family = binomial)
profiled <- profile(m, which = "networkvit_b16")  # one profile, read at two levels
interval <- function(level) {
  ci <- confint(profiled, level = level)
  data.frame(parm = "networkvit_b16", level = level, lower = ci[, 1], upper = ci[, 2])
}
out <- rbind(interval(0.95), interval(0.975))
write.csv(out, args[2], row.names = FALSE)
"""

REFIT_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
responses <- as.matrix(read.csv(args[2], header = FALSE))
xs <- grep("^x[0-9]+$", names(d), value = TRUE)
f <- as.formula(paste("y ~", paste(xs, collapse = " + "), "+ (1 | participant) + (1 | unit)"))
m <- glmer(f, data = d, family = binomial)
refitted <- function(y) {
  r <- suppressWarnings(refit(m, newresp = y))
  c(fixef(r), converged = !any(grepl("failed to converge", r@optinfo$conv$lme4$messages)))  # a singular fit is fine
}
betas <- t(apply(responses, 1, refitted))
write.csv(betas, args[3], row.names = FALSE)
"""


@pytest.fixture(scope="module")
def small_analysis(small_model):
    """12 participants, 5 units per network: R's profiles and refits stay within seconds."""
    model = replace(small_model, units_per_network=5, main_trials_per_network=10)
    df = validate_export(simulate_export(model, n_participants=12, seed=41))
    return run_analysis(df, lrt=False, sensitivity=False, contrasts=DECLARED)


def run_r(rscript, script: str, tmp_path, *files) -> pd.DataFrame:
    path = tmp_path / "script.R"
    path.write_text(script)
    out = tmp_path / "out.csv"
    done = subprocess.run([rscript, "--vanilla", str(path), *map(str, files), str(out)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return pd.read_csv(out)


def test_profile_intervals_equal_lme4_confint_profile(small_analysis, rscript, tmp_path):
    """vit_b16 vs vgg16 (neither the reference network): the model refitted with vgg16 as reference, its
    coefficient profiled, at 95% and at the Bonferroni level of its family of two (97.5%)."""
    fit = small_analysis.fit
    sizes = dict(zip(small_analysis.contrasts["contrast"], small_analysis.contrasts["family_size"]))
    assert sizes == {"MACO with mask vs without": 1, "vit_b16 vs resnet50": 2, "vit_b16 vs vgg16": 2}
    declared = [c for c in small_analysis.declared if c.label == "vit_b16 vs vgg16"]
    ours = profile_intervals(fit, declared, sizes).set_index("contrast").loc["vit_b16 vs vgg16"]
    data = tmp_path / "data.csv"
    small_analysis.rows[["correct", "participant_id", "unit", "condition", "network"]].rename(
        columns={"participant_id": "participant"}).to_csv(data, index=False)
    r = run_r(rscript, PROFILE_SCRIPT, tmp_path, data).set_index("level")
    assert ours["ci_lower"] == pytest.approx(r.loc[0.95, "lower"], abs=1e-3)
    assert ours["ci_upper"] == pytest.approx(r.loc[0.95, "upper"], abs=1e-3)
    assert ours["ci_lower_adj"] == pytest.approx(r.loc[0.975, "lower"], abs=1e-3)
    assert ours["ci_upper_adj"] == pytest.approx(r.loc[0.975, "upper"], abs=1e-3)
    assert ours["ci_lower_adj"] < ours["ci_lower"] < ours["ci_upper"] < ours["ci_upper_adj"]


def test_a_profile_interval_of_a_family_of_one_is_not_adjusted(small_analysis):
    sizes = dict(zip(small_analysis.contrasts["contrast"], small_analysis.contrasts["family_size"]))
    declared = [c for c in small_analysis.declared if c.label == "MACO with mask vs without"]
    mask = profile_intervals(small_analysis.fit, declared, sizes).iloc[0]
    assert (mask["ci_lower_adj"], mask["ci_upper_adj"]) == (mask["ci_lower"], mask["ci_upper"])
    wald = small_analysis.contrasts.set_index("contrast").loc["MACO with mask vs without"]
    assert mask["ci_lower"] == pytest.approx(wald["ci_lower"], abs=0.15)  # close to Wald, not equal
    assert mask["ci_lower"] != pytest.approx(wald["ci_lower"], abs=1e-4)


def test_bootstrap_refits_equal_lme4_refits_of_the_same_draws(small_analysis, rscript, tmp_path):
    fit = small_analysis.fit
    responses = simulate_responses(fit, 10, seed=5)
    ours = bootstrap_betas(fit, responses=responses)
    data, drawn = tmp_path / "data.csv", tmp_path / "responses.csv"
    fit.design.frame[["y", "participant", "unit", *fit.design.columns[1:]]].to_csv(data, index=False)
    np.savetxt(drawn, responses, delimiter=",", fmt="%d")
    r = run_r(rscript, REFIT_SCRIPT, tmp_path, data, drawn)
    converged = r.pop("converged").astype(bool).to_numpy()
    lme4 = r.to_numpy()
    assert ours.shape == lme4.shape == (10, len(fit.terms)) and converged.sum() >= 8
    np.testing.assert_allclose(ours[converged], lme4[converged], atol=1e-3)  # where lme4 says it converged
    lme4[~converged] = ours[~converged]
    sizes = dict(zip(small_analysis.contrasts["contrast"], small_analysis.contrasts["family_size"]))
    ci_ours = bootstrap_intervals(fit, small_analysis.declared, sizes, ours)
    ci_lme4 = bootstrap_intervals(fit, small_analysis.declared, sizes, lme4)
    log_odds = ["ci_lower", "ci_upper", "ci_lower_adj", "ci_upper_adj"]
    np.testing.assert_allclose(ci_ours[log_odds], ci_lme4[log_odds], atol=1e-3)
    points = ["pp_lower", "pp_upper", "pp_lower_adj", "pp_upper_adj"]  # 1e-3 of a probability, in points
    np.testing.assert_allclose(ci_ours[points], ci_lme4[points], atol=0.1)


def test_simulated_responses_follow_the_fitted_model(small_analysis):
    """The draws' accuracy per condition matches the model's population-averaged prediction, and every trial
    varies (participant and unit effects redrawn per study)."""
    fit = small_analysis.fit
    responses = simulate_responses(fit, 400, seed=6)
    assert responses.shape == (400, fit.n_obs) and set(np.unique(responses)) == {0.0, 1.0}
    observed = fit.design.frame["y"].mean()
    assert responses.mean() == pytest.approx(observed, abs=0.03)
    assert np.array_equal(simulate_responses(fit, 400, seed=6), responses)


def test_bootstrap_and_profile_need_the_additive_mixedlm_model():
    with pytest.raises(IntervalError, match="--ci profile needs the additive model with random intercepts"):
        check_supported(ModelSpec(interaction=True), "mixedlm", "profile")
    with pytest.raises(IntervalError, match="--ci bootstrap needs .* the mixedlm engine"):
        check_supported(ModelSpec(), "lme4", "bootstrap")
    with pytest.raises(IntervalError, match="--ci profile needs the additive model with random intercepts"):
        check_supported(ModelSpec(participant_slopes=True), "mixedlm", "profile")
    check_supported(ModelSpec(interaction=True), "lme4", "wald")


def test_analyze_with_bootstrap_names_its_intervals(small_model, tmp_path):
    from click.testing import CliRunner

    from analysis.cli import analyze

    responses = tmp_path / "responses.csv"
    model = replace(small_model, units_per_network=5, main_trials_per_network=10)
    simulate_export(model, n_participants=12, seed=41).to_csv(responses, index=False)
    out = tmp_path / "report"
    result = CliRunner().invoke(analyze, [str(responses), "--out", str(out), "--ci", "bootstrap",
                                          "--bootstrap-samples", "20", "--jobs", "1", "--contrast", "maco_vs_olah"])
    assert result.exit_code == 0, result.output
    assert "95% parametric-bootstrap (20 refits) CI [" in result.output
    assert "unadjusted (parametric-bootstrap (20 refits)); p = " in result.output  # a family of one
    table = pd.read_csv(out / "contrasts.csv")
    assert table.loc[0, "ci_method"] == "parametric-bootstrap (20 refits)"
    assert table.loc[0, "ci_lower"] < table.loc[0, "estimate"] < table.loc[0, "ci_upper"]
