"""The secondary outcome: log RT as a linear mixed model, against lme4's lmer (REML)."""
from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from analysis.load import validate_export
from analysis.pipeline import run_analysis
from analysis.secondary import log_rt_fixed_effects, log_rt_verdict
from analysis.simulate import simulate_export

# the model rows as fit_in_r writes them, with the analysis's reference levels
READ_ROWS = r"""
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$condition <- factor(d$condition, levels = c("olah", "maco", "maco_mask", "none"))  # the analysis's order
d$network <- factor(d$network, levels = c("resnet50", "vgg16", "vit_b16"))
"""

LMER_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
""" + READ_ROWS + r"""m <- lmer(log(rt_ms) ~ condition + network + (1 | participant) + (1 | unit), data = d, REML = TRUE)
V <- as.matrix(vcov(m))
# MACO vs Olah, and vit_b16 vs vgg16 (two non-reference levels): L beta and its SE
L <- rbind(c(0, 1, 0, 0, 0, 0), c(0, 0, 0, 0, -1, 1))
vc <- as.data.frame(VarCorr(m))
out <- rbind(data.frame(what = "beta", name = names(fixef(m)), value = fixef(m)),
             data.frame(what = "se", name = names(fixef(m)), value = sqrt(diag(V))),
             data.frame(what = "contrast", name = c("MACO vs Olah", "vit_b16 vs vgg16"), value = L %*% fixef(m)),
             data.frame(what = "contrast_se", name = c("MACO vs Olah", "vit_b16 vs vgg16"),
                        value = sqrt(diag(L %*% V %*% t(L)))),
             data.frame(what = "sd", name = vc$grp, value = vc$sdcor))
write.csv(out, args[2], row.names = FALSE)
"""


def fit_in_r(rscript: str, script_text: str, rows: pd.DataFrame, outcome: str, tmp_path):  # noqa: ANN001, ANN201
    """R's fit of `outcome` on the model rows: its long output table and `values(what)`, one kind of row."""
    data, script, out = tmp_path / "data.csv", tmp_path / "fit.R", tmp_path / "out.csv"
    rows[[outcome, "participant_id", "unit", "condition", "network"]].rename(
        columns={"participant_id": "participant"}).to_csv(data, index=False)
    script.write_text(script_text)
    done = subprocess.run([rscript, "--vanilla", str(script), str(data), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    r = pd.read_csv(out)
    return r, lambda what: r.loc[r["what"] == what, "value"].to_numpy()


@pytest.fixture(scope="module")
def analysis(small_model):
    df = validate_export(simulate_export(small_model, n_participants=24, seed=51))
    return run_analysis(df, lrt=False, sensitivity=False, contrasts=["maco_vs_olah", "network: vit_b16 vs vgg16"])


def test_log_rt_model_equals_lme4_lmer(analysis, rscript, tmp_path):
    r, values = fit_in_r(rscript, LMER_SCRIPT, analysis.rows, "rt_ms", tmp_path)
    fit = analysis.log_rt
    np.testing.assert_allclose(fit.beta, values("beta"), atol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov)), values("se"), atol=1e-4)
    sds = dict(zip(r.loc[r["what"] == "sd", "name"], values("sd")))
    assert fit.sigma == pytest.approx(sds["Residual"], abs=1e-3)
    varcorr = fit.varcorr.set_index("group")["sdcor"]
    assert varcorr["participant"] == pytest.approx(sds["participant"], abs=1e-3)
    assert varcorr["unit"] == pytest.approx(sds["unit"], abs=1e-3)
    assert varcorr["participant"] > 0.1 and varcorr["unit"] > 0.02  # the simulator's participant and unit RT shifts
    contrasts = analysis.log_rt_contrasts.set_index("contrast")
    np.testing.assert_allclose(contrasts["estimate"], values("contrast"), atol=1e-3)
    np.testing.assert_allclose(contrasts["se"], values("contrast_se"), atol=1e-4)


def test_log_rt_contrasts_carry_ratios_and_their_adjustments(analysis):
    contrasts = analysis.log_rt_contrasts.set_index("contrast")
    row = contrasts.loc["MACO vs Olah"]
    assert row["ratio"] == pytest.approx(np.exp(row["estimate"]))
    assert row["ratio_lower"] == pytest.approx(np.exp(row["ci_lower"]))
    assert row["ci_upper"] - row["estimate"] == pytest.approx(1.959964 * row["se"], rel=1e-6)
    assert contrasts["family_size"].tolist() == [1, 1]  # each its own family: no adjustment, and the line says so
    line = log_rt_verdict(next(analysis.log_rt_contrasts.itertuples(index=False)))
    assert line.startswith(f"MACO vs Olah: RT x {row['ratio']:.3f}, 95% Wald CI [")
    assert line.endswith("the only test of family conditions: no adjustment")
    table = log_rt_fixed_effects(analysis.log_rt).set_index("term")
    assert np.isnan(table.loc["(Intercept)", "ratio"]) and table.loc["condition[maco]", "ratio"] > 0


CLMM_SCRIPT = r"""
suppressPackageStartupMessages(library(ordinal))
""" + READ_ROWS + r"""m <- clmm(factor(confidence) ~ condition + network + (1 | participant) + (1 | unit), data = d, link = "logit",
          Hess = TRUE, nAGQ = 1)
# MACO vs Olah, and vit_b16 vs vgg16, on eta (thresholds first in coef)
L <- rbind(c(0, 0, 1, 0, 0, 0, 0), c(0, 0, 0, 0, 0, -1, 1))
V <- vcov(m)[1:7, 1:7]
out <- rbind(data.frame(what = "coef", value = coef(m)),
             data.frame(what = "se", value = sqrt(diag(V))),
             data.frame(what = "contrast", value = L %*% coef(m)),
             data.frame(what = "contrast_se", value = sqrt(diag(L %*% V %*% t(L)))),
             data.frame(what = "sd", value = sort(sapply(VarCorr(m), function(v) attr(v, "stddev")))),
             data.frame(what = "loglik", value = as.numeric(logLik(m))))
write.csv(out, args[2], row.names = FALSE)
"""


def test_confidence_model_equals_ordinal_clmm(small_model, rscript, tmp_path):
    """Confidence (1-3) as a cumulative-logit mixed model: thresholds, effects, SEs, SDs, log-likelihood and
    contrasts as R's ordinal::clmm (Laplace), on data whose participants differ in how confident they are."""
    analysis = run_analysis(validate_export(simulate_export(small_model, n_participants=24, seed=71)), lrt=False,
                            sensitivity=False, contrasts=["maco_vs_olah", "network: vit_b16 vs vgg16"])
    r, values = fit_in_r(rscript, CLMM_SCRIPT, analysis.rows, "confidence", tmp_path)
    fit = analysis.confidence
    assert fit.converged and fit.levels == [1, 2, 3]
    np.testing.assert_allclose(np.r_[fit.thresholds, fit.beta], values("coef"), atol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov)), values("se"), atol=1e-3)
    np.testing.assert_allclose(sorted(fit.sd.values()), values("sd"), atol=1e-3)  # clmm's VarCorr names are unordered
    assert fit.sd["participant"] > 0.3  # the simulated participants' confidence bias (SD 0.8)
    assert fit.loglik == pytest.approx(values("loglik")[0], abs=1e-3)
    contrasts = analysis.confidence_contrasts.set_index("contrast")
    np.testing.assert_allclose(contrasts["estimate"], values("contrast"), atol=1e-3)
    np.testing.assert_allclose(contrasts["se"], values("contrast_se"), atol=1e-3)
    assert contrasts.loc["MACO vs Olah", "ratio"] == pytest.approx(np.exp(contrasts.loc["MACO vs Olah", "estimate"]))


def test_a_singular_confidence_fit_is_reported_unconverged_without_stopping_the_report(small_export, monkeypatch,
                                                                                       tmp_path):
    """A confidence model whose Hessian cannot be inverted (e.g. a level rated all one way) is a secondary
    outcome: the report still comes out, the fit says it did not converge and shows no standard errors."""
    import analysis.ordinal
    from analysis.report import write_report

    real = analysis.ordinal.deriv12

    def singular(function, x):  # noqa: ANN001, ANN202
        gradient, hessian = real(function, x)
        hessian[:, 0] = hessian[0, :] = 0.0  # one direction the deviance does not curve in
        return gradient, hessian

    monkeypatch.setattr(analysis.ordinal, "deriv12", singular)
    result = run_analysis(validate_export(small_export), lrt=False, sensitivity=False,
                          contrasts=["maco_vs_olah"])
    fit = result.confidence
    assert not fit.converged and "singular Hessian" in fit.message
    assert np.isnan(fit.vcov).all() and np.isfinite(fit.beta).all()
    assert result.confidence_contrasts["se"].isna().all()
    write_report(result, tmp_path, source="export.csv")
    report = (tmp_path / "report.md").read_text()
    assert "THE FIT DID NOT CONVERGE: singular Hessian" in report
    assert result.fit.converged  # the primary outcome is untouched
