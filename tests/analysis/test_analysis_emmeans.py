"""Predictions, contrasts, percentage points, simple effects and Holm families against R's emmeans.

R fits the interaction model once with lme4; this package's effect layer then
works from R's own fixed effects and covariance, so any difference is the
effect layer's, not the fit's. The interaction model makes the averaging over
the other factor matter (with the additive model a contrast is one coefficient).
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from analysis.contrasts import declare_contrasts
from analysis.effects import (
    cell_predictions, chance_tests, estimate_contrasts, marginal_predictions, simple_effects,
)
from analysis.exclusions import model_rows, participant_table
from analysis.load import validate_export
from analysis.models import FitResult, ModelSpec, build_design

CONDITIONS = ["olah", "maco_mask", "maco", "none"]  # reference first: R's factor levels in the same order
NETWORKS = ["resnet50", "vgg16", "vit_b16"]

EMMEANS_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(emmeans)})
emm_options(msg.interaction = FALSE)
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$condition <- factor(d$condition, levels = c("olah", "maco_mask", "maco", "none"))
d$network <- factor(d$network, levels = c("resnet50", "vgg16", "vit_b16"))
m <- glmer(correct ~ condition * network + (1 | participant) + (1 | unit), data = d, family = binomial)
rows <- list()
out <- function(what, label, stat, value) rows[[length(rows) + 1]] <<- data.frame(what, label, stat, value)
b <- fixef(m); V <- as.matrix(vcov(m))
out("beta", names(b), "", b)
for (j in seq_along(b)) out("vcov", rownames(V), colnames(V)[j], V[, j])
cells <- as.data.frame(summary(emmeans(m, ~ condition * network, type = "response")))
for (s in c("prob", "SE", "asymp.LCL", "asymp.UCL")) out("cell", paste(cells$condition, cells$network), s, cells[[s]])
for (f in c("condition", "network")) {
  marg <- as.data.frame(summary(emmeans(m, as.formula(paste("~", f)), type = "response")))
  for (s in c("prob", "SE", "asymp.LCL", "asymp.UCL")) out("marginal", as.character(marg[[f]]), s, marg[[s]])
}
conditions <- list("MACO vs Olah" = c(-1, 0, 1, 0), "Olah vs none" = c(1, 0, 0, -1),
                   "MACO with mask vs without" = c(0, 1, -1, 0))
networks <- list("vit_b16 vs resnet50" = c(-1, 0, 1), "vit_b16 vs vgg16" = c(0, -1, 1))
# p-values Holm-adjusted within the grid (or each by group); intervals unadjusted and Bonferroni-adjusted
report <- function(what, grid, method, adjust = "holm", by = NULL) {
  k <- contrast(grid, method, by = by)
  p <- as.data.frame(summary(k, adjust = adjust))
  ci <- as.data.frame(confint(k, adjust = "none"))
  label <- if (is.null(by)) p$contrast else paste(p$contrast, p[[by]])
  for (s in c("estimate", "SE", "p.value")) out(what, label, s, p[[s]])
  for (s in c("asymp.LCL", "asymp.UCL")) out(what, label, s, ci[[s]])
  bonferroni <- as.data.frame(confint(k, adjust = "bonferroni"))  # what emmeans gives for adjust = "holm"
  for (s in c("asymp.LCL", "asymp.UCL")) out(what, label, paste0("bonferroni.", s), bonferroni[[s]])
}
report("contrast", emmeans(m, ~ condition), conditions)
report("contrast", emmeans(m, ~ network), networks)
report("points", regrid(emmeans(m, ~ condition)), conditions, adjust = "none")
report("points", regrid(emmeans(m, ~ network)), networks, adjust = "none")
report("simple", emmeans(m, ~ condition | network), conditions, by = "network")
report("simple_points", regrid(emmeans(m, ~ condition | network)), conditions, adjust = "none", by = "network")
raw <- c(summary(contrast(emmeans(m, ~ condition), conditions[1]))$p.value,
         summary(contrast(emmeans(m, ~ network), networks))$p.value)
out("one_family", c("MACO vs Olah", names(networks)), "p.value", p.adjust(raw, "holm"))
chance <- as.data.frame(test(emmeans(m, ~ condition), adjust = "holm"))
out("chance", as.character(chance$condition), "p.value", chance$p.value)
chance_ci <- as.data.frame(confint(emmeans(m, ~ condition), adjust = "bonferroni"))
out("chance", as.character(chance_ci$condition), "bonferroni.asymp.LCL", chance_ci$asymp.LCL)
accuracy <- aggregate(correct ~ participant + condition, data = d, FUN = mean)
for (level in levels(d$condition)) {
  t <- t.test(accuracy$correct[accuracy$condition == level], mu = 0.5)
  out("chance", level, "t.p.value", t$p.value)
  out("chance", level, "t.lower", t$conf.int[1])
}
write.csv(do.call(rbind, rows), args[2], row.names = FALSE)
"""


@pytest.fixture(scope="module")
def emmeans_run(small_export, tmp_path_factory):
    """R's fit and emmeans' tables (long), and the model rows they came from."""
    from shutil import which

    rscript = which("Rscript")
    has_emmeans = rscript and subprocess.run([rscript, "-e", "library(emmeans)"], capture_output=True).returncode == 0
    if not has_emmeans:
        if os.environ.get("CI"):
            pytest.fail("R's emmeans not found, but CI installs r-cran-emmeans (.ci/run)")
        pytest.skip("R's emmeans is not installed (apt-get install r-cran-emmeans)")
    df = validate_export(small_export)
    rows = model_rows(df, participant_table(df))
    folder = tmp_path_factory.mktemp("emmeans")
    data, script, result = folder / "data.csv", folder / "emmeans.R", folder / "emmeans.csv"
    frame = rows[["condition", "network", "participant_id", "unit"]].rename(columns={"participant_id": "participant"})
    frame.assign(correct=rows["correct"].astype(int)).to_csv(data, index=False)
    script.write_text(EMMEANS_SCRIPT)
    done = subprocess.run([rscript, "--vanilla", str(script), str(data), str(result)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return rows, pd.read_csv(result)


@pytest.fixture(scope="module")
def r_fit(emmeans_run) -> FitResult:
    """A FitResult carrying R's beta and vcov, term names mapped to this package's."""
    rows, long = emmeans_run
    design = build_design(rows, ModelSpec(interaction=True), CONDITIONS, NETWORKS)

    def r_name(term: str) -> str:
        return term.replace("[", "").replace("]", "")  # condition[maco]:network[vgg16] -> conditionmaco:networkvgg16

    names = [r_name(t) for t in design.terms]
    beta = long[long["what"] == "beta"].set_index("label")["value"].reindex(names).to_numpy()
    vcov = long[long["what"] == "vcov"].pivot(index="label", columns="stat", values="value").loc[names, names]
    assert not np.isnan(beta).any()
    return FitResult(
        engine="lme4", spec=design.spec, design=design, beta=beta, vcov=vcov.to_numpy(), vcov_method="",
        re_sd={}, loglik=0.0, converged=True, singular=False, messages=[], lrt=pd.DataFrame(), fit_s=0.0,
        engine_versions={},
    )


def emmeans_table(long: pd.DataFrame, what: str) -> pd.DataFrame:
    return long[long["what"] == what].pivot(index="label", columns="stat", values="value")


def test_response_scale_predictions_equal_emmeans(emmeans_run, r_fit):
    _, long = emmeans_run
    ours = cell_predictions(r_fit)
    ours.index = ours["condition"] + " " + ours["network"]
    reference = emmeans_table(long, "cell").loc[ours.index]
    assert len(ours) == 12
    np.testing.assert_allclose(ours["probability"], reference["prob"], rtol=1e-9)
    np.testing.assert_allclose(ours["probability_se"], reference["SE"], rtol=1e-7)
    np.testing.assert_allclose(ours["probability_lower"], reference["asymp.LCL"], rtol=1e-7)
    np.testing.assert_allclose(ours["probability_upper"], reference["asymp.UCL"], rtol=1e-7)
    marginal = marginal_predictions(r_fit)
    marginal.index = np.where(marginal["network"] == "all", marginal["condition"], marginal["network"])
    reference = emmeans_table(long, "marginal").loc[marginal.index]
    np.testing.assert_allclose(marginal["probability"], reference["prob"], rtol=1e-9)
    np.testing.assert_allclose(marginal["probability_lower"], reference["asymp.LCL"], rtol=1e-7)


def test_contrasts_percentage_points_and_holm_families_equal_emmeans(emmeans_run, r_fit):
    _, long = emmeans_run
    ours = estimate_contrasts(r_fit, declare_contrasts(None, NETWORKS)).set_index("contrast")
    reference = emmeans_table(long, "contrast").loc[ours.index]
    np.testing.assert_allclose(ours["estimate"], reference["estimate"], rtol=1e-9)
    np.testing.assert_allclose(ours["se"], reference["SE"], rtol=1e-7)
    np.testing.assert_allclose(ours["ci_lower"], reference["asymp.LCL"], rtol=1e-7)
    # emmeans' holm within each grid = the default families (3 condition, 2 network contrasts)
    assert ours["family"].tolist() == ["conditions"] * 3 + ["networks"] * 2
    np.testing.assert_allclose(ours["p_holm"], reference["p.value"], rtol=1e-6)
    points = emmeans_table(long, "points").loc[ours.index]
    np.testing.assert_allclose(ours["pp"], 100 * points["estimate"], rtol=1e-9)
    np.testing.assert_allclose(ours["pp_se"], 100 * points["SE"], rtol=1e-7)
    np.testing.assert_allclose(ours["pp_upper"], 100 * points["asymp.UCL"], rtol=1e-7)
    # the adjusted intervals beside p_holm: emmeans' confint(adjust = "bonferroni") within each family
    np.testing.assert_allclose(ours["ci_lower_adj"], reference["bonferroni.asymp.LCL"], rtol=1e-7)
    np.testing.assert_allclose(ours["ci_upper_adj"], reference["bonferroni.asymp.UCL"], rtol=1e-7)
    np.testing.assert_allclose(ours["pp_lower_adj"], 100 * points["bonferroni.asymp.LCL"], rtol=1e-7)
    assert (ours["ci_upper_adj"] - ours["ci_lower_adj"] > ours["ci_upper"] - ours["ci_lower"]).all()


def test_a_declared_family_equals_r_holm_across_it(emmeans_run, r_fit):
    _, long = emmeans_run
    declared = declare_contrasts(["primary = maco_vs_olah", "primary = vit_vs_cnns", "olah_vs_none"], NETWORKS)
    ours = estimate_contrasts(r_fit, declared).set_index("contrast")
    assert ours.loc["Olah vs none", "family"] == "conditions"
    primary = ours[ours["family"] == "primary"]
    reference = emmeans_table(long, "one_family").loc[primary.index]
    np.testing.assert_allclose(primary["p_holm"], reference["p.value"], rtol=1e-6)
    # a family of one is not corrected
    assert ours.loc["Olah vs none", "p_holm"] == pytest.approx(ours.loc["Olah vs none", "p"])


def test_simple_effects_equal_emmeans_by_network(emmeans_run, r_fit):
    _, long = emmeans_run
    ours = simple_effects(r_fit, declare_contrasts(None, NETWORKS))
    assert len(ours) == 9 and set(ours["within"]) == set(NETWORKS)
    ours.index = ours["contrast"] + " " + ours["within"]
    reference = emmeans_table(long, "simple").loc[ours.index]
    np.testing.assert_allclose(ours["estimate"], reference["estimate"], rtol=1e-9)
    np.testing.assert_allclose(ours["se"], reference["SE"], rtol=1e-7)
    np.testing.assert_allclose(ours["ci_upper"], reference["asymp.UCL"], rtol=1e-7)
    points = emmeans_table(long, "simple_points").loc[ours.index]
    np.testing.assert_allclose(ours["pp"], 100 * points["estimate"], rtol=1e-9)
    np.testing.assert_allclose(ours["pp_se"], 100 * points["SE"], rtol=1e-7)
    # Holm within each network, as emmeans' by = "network", and Bonferroni intervals likewise
    np.testing.assert_allclose(ours["p_holm"], reference["p.value"], rtol=1e-6)
    np.testing.assert_allclose(ours["ci_lower_adj"], reference["bonferroni.asymp.LCL"], rtol=1e-7)
    assert (ours["family"] == "conditions | " + ours["within"]).all()


def test_accuracy_against_chance_equals_emmeans_test_and_r_t_test(emmeans_run, r_fit):
    rows, long = emmeans_run
    ours = chance_tests(r_fit, rows).set_index("condition")
    reference = emmeans_table(long, "chance").loc[ours.index]
    np.testing.assert_allclose(ours["p_holm"], reference["p.value"], rtol=1e-6)  # Holm over the conditions
    np.testing.assert_allclose(ours["ci_lower_adj"], reference["bonferroni.asymp.LCL"], rtol=1e-7)
    np.testing.assert_allclose(ours["t_p"], reference["t.p.value"], rtol=1e-6)
    np.testing.assert_allclose(ours["participant_lower"], reference["t.lower"], rtol=1e-7)
    assert (ours["family_size"] == 4).all()
