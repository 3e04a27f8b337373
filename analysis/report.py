"""The report folder: CSV tables, figures, report.md and report.html from one list of blocks.

What can mislead comes first: the fit's diagnosed problems (no convergence,
separation, a failed LRT: ``FitResult.problems``), its notes (singular fit, RX
covariance) and the data warnings sit in a box at the top, and every contrast
carries the fit's ``converged`` flag, the ``warning`` kinds that touch it and
whether it can be ``trusted``.
"""
from __future__ import annotations

import hashlib
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from analysis.contrasts import DEFAULT_FAMILY, FAMILY_REASON
from analysis.diagnostics import warnings_frame
from analysis.effects import ADJUSTMENT
from analysis.exclusions import REASONS
from analysis.figures import FIGURE5_INTERVALS, figure5_model, plot_accuracy, plot_caterpillar, plot_log_odds
from analysis.models import FitResult
from analysis.pipeline import Analysis
from analysis.ordinal import ORDINAL_FORMULA, ordinal_coefficients, ordinal_verdict
from analysis.units import extreme_units, unit_effects
from analysis.secondary import LOG_RT_FORMULA, log_rt_fixed_effects, log_rt_verdict
from analysis.render import Block, format_p, render_html, render_markdown

TITLE = "MACO study: analysis report"
CONTRAST_COLUMNS = ["contrast", "family", "estimate", "se", "ci_lower", "ci_upper", "ci_lower_adj", "ci_upper_adj",
                    "p", "p_method", "p_holm", "prior_regularised"]  # z, p_wald: contrasts.csv
ODDS_COLUMNS = ["contrast", "odds_ratio", "or_lower", "or_upper"]
POINTS_COLUMNS = ["contrast", "pp", "pp_se", "pp_lower", "pp_upper", "pp_lower_adj", "pp_upper_adj"]
SIMPLE_EFFECT_COLUMNS = ["contrast", "within", "estimate", "se", "ci_lower", "ci_upper", "ci_lower_adj",
                         "ci_upper_adj", "p", "p_holm", "pp", "pp_lower", "pp_upper"]  # the rest: simple_effects.csv
PREDICTION_COLUMNS = ["condition", "network", "probability", "probability_lower", "probability_upper", "log_odds",
                      "ci_lower", "ci_upper"]


def software_versions(engine_versions: dict[str, str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("maco-study", "numpy", "pandas", "scipy", "matplotlib", "mixedlm"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    versions.update(engine_versions)
    return versions


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def trusted(fit: FitResult) -> bool:
    """The main model converged and no diagnosed problem voids an estimate or a test."""
    return fit.converged and not fit.problems


def verdict(row) -> str:
    """One line per contrast, every interval and p-value saying whether and how it is adjusted.

    ``MACO vs Olah: +0.22 log-odds, 95% Wald CI [0.01, 0.42] unadjusted, [-0.03, 0.46] Bonferroni-adjusted
    for 3 tests; +4.1 percentage points, [0.2, 8.0] unadjusted, [-0.5, 8.7] adjusted (delta-method Wald);
    p = 0.04 (Wald, unadjusted), p_holm = 0.12 (Holm over the 3 tests of family conditions)``
    """
    within = f" within {row.within}" if "within" in row._fields and row.within else ""
    marked = " (prior-regularised estimate)" if row.prior_regularised else ""
    if row.family_size > 1:
        adjusted = f", [{row.ci_lower_adj:.2f}, {row.ci_upper_adj:.2f}] {ADJUSTMENT}-adjusted for {row.family_size} tests"
        adjusted_pp = f", [{row.pp_lower_adj:.1f}, {row.pp_upper_adj:.1f}] adjusted"
        holm = f"p_holm = {format_p(row.p_holm)} (Holm over the {row.family_size} tests of family {row.family})"
    else:
        adjusted = adjusted_pp = ""
        holm = f"the only test of family {row.family}: no adjustment"
    line = (f"{row.contrast}{within}{marked}: {row.estimate:+.2f} log-odds, 95% {row.ci_method} CI "
            f"[{row.ci_lower:.2f}, {row.ci_upper:.2f}] unadjusted{adjusted}; {row.pp:+.1f} percentage points, "
            f"[{row.pp_lower:.1f}, {row.pp_upper:.1f}] unadjusted{adjusted_pp} ({row.pp_method}); p = {format_p(row.p)} ({row.p_method}, "
            f"unadjusted), {holm}")
    if not row.trusted:
        return line + f" (not interpretable: {row.warning or 'the fit did not converge'})"
    return line + (f" (note: {row.warning})" if row.warning else "")


def chance_verdict(row) -> str:
    """One line per condition: accuracy against chance, model-based (adjusted and not) and model-free."""
    line = (f"{row.condition} against chance (50%): {100 * row.probability:.1f}% correct for a typical participant "
            f"and unit, 95% CI [{100 * row.probability_lower:.1f}, {100 * row.probability_upper:.1f}] unadjusted, "
            f"[{100 * row.probability_lower_adj:.1f}, {100 * row.probability_upper_adj:.1f}] {ADJUSTMENT}-adjusted "
            f"for {row.family_size} conditions; p = {format_p(row.p)} (Wald z of log-odds 0, unadjusted), p_holm = "
            f"{format_p(row.p_holm)} (Holm over the {row.family_size} conditions); participants' mean accuracy "
            f"{100 * row.participant_mean:.1f}%")
    if pd.isna(row.t_p):
        line += f" ({row.n_participants} participant(s), no spread between them: no t-test)"
    else:
        line += (f", 95% t interval [{100 * row.participant_lower:.1f}, {100 * row.participant_upper:.1f}] "
                 f"unadjusted, p = {format_p(row.t_p)} (one-sample t, unadjusted, {row.n_participants} participants)")
    return line + ("" if row.trusted else " (not interpretable: the fit has problems touching it)")


def sensitivity_wide(long: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity fits side by side: one row per contrast, one column per variant, plus the sample sizes."""
    text = [f"{r.estimate:+.2f}, 95% CI [{r.ci_lower:.2f}, {r.ci_upper:.2f}] unadjusted; p_holm {format_p(r.p_holm)}"
            + ("" if r.trusted else " (not interpretable)") for r in long.itertuples(index=False)]
    variants = list(dict.fromkeys(long["variant"]))
    wide = long.assign(text=text).pivot(index="contrast", columns="variant", values="text")
    wide = wide.reindex(index=list(dict.fromkeys(long["contrast"])), columns=variants)
    sizes = long.drop_duplicates("variant").set_index("variant")
    wide.loc["(sample)"] = [f"{sizes.loc[v, 'participants']} participants, {sizes.loc[v, 'trials']} trials"
                            for v in variants]
    return wide.reset_index().rename(columns={"index": "contrast"})


def interaction_verdict(fit: FitResult) -> list[str]:
    """The condition x network LRT as a verdict line (the paper's question: does a method help less on some
    network?), or [] when it was not fitted."""
    rows = fit.lrt[fit.lrt["term"] == "condition:network"]
    if not len(rows):
        return []
    row = rows.iloc[0]
    line = (f"Condition x network interaction (does a method help more on some networks than others?): "
            f"chi-square({int(row['df'])}) = {row['chisq']:.2f}, p = {format_p(row['p'])} (likelihood ratio, a single "
            "test: no adjustment; per-network effects: --interaction)")
    return [line + (f" (not interpretable: {row['warning']})" if row["warning"] else "")]


def alert(analysis: Analysis) -> list[str]:
    """The warning box's heading and items, or [] when nothing needs saying."""
    fit = analysis.fit
    items = []
    if not trusted(fit):
        items.append(
            "Do not interpret the estimates, standard errors, contrasts, LRTs or p-values these problems concern: "
            "the `warning` column of fixed_effects.csv, contrasts.csv and lrt.csv names them (contrasts.csv: "
            "`trusted` = no)"
            + ("" if fit.converged else ", and every row has converged = no")
            + ". maco-study analyze exits 1 on such a fit unless --allow-unconverged."
        )
    if not fit.converged and not fit.problems:
        items.append("The main model did not converge (the engine's messages are under the model).")
    lines: dict[tuple[str, str], list[str]] = {}  # (severity, message) -> the fitted models it concerns
    for w in [*fit.problems, *(w for w in fit.warnings if w.severity != "error")]:
        fitted = lines.setdefault((w.severity, w.message), [])
        fitted += [m for m in w.models if m not in fitted]
    items += [("" if severity == "error" else "note: ") + message
              + ("" if fitted == ["full"] else f" (model{'s' * (len(fitted) > 1)} {', '.join(fitted)})")
              for (severity, message), fitted in lines.items()]
    items += [f"data: {w}" for w in analysis.warnings]
    if not items:
        return []
    heading = ("the model did not converge." if not fit.converged else
               "the fit has problems." if fit.problems else "notes on the fit and the data.")
    return [f"Read this first: {heading}", *items]


def family_blocks(analysis: Analysis) -> list[Block]:
    families: dict[str, list[str]] = {}
    for c in analysis.declared:
        families.setdefault(c.family, []).append(c.label)
    default = all(c.family == DEFAULT_FAMILY[c.factor] for c in analysis.declared)
    reason = FAMILY_REASON if default else "Families as declared with `--contrast 'family = ...'`."
    return [
        ("p", "Multiplicity families (the contrasts of a family share one Holm correction, `p_holm`). " + reason),
        ("list", [f"{name} ({len(labels)} test{'s' * (len(labels) > 1)}): {', '.join(labels)}"
                  for name, labels in families.items()]),
    ]


def unit_blocks(fit: FitResult) -> list[Block]:
    """The unit random effects: caterpillar plot and each network's hardest and easiest units."""
    if fit.ranef is None:
        return []
    return [
        ("p", "Unit random effects (diagnostics): each unit's conditional mode, its departure from its network's "
              "average in log-odds for a typical participant, ± 1.96 conditional SD (lme4's `ranef(condVar = "
              "TRUE)`; `unit_effects.csv`). The network contrasts rest on these units: a network whose units "
              "spread widely, or whose contrast hangs on one or two units far from the rest, deserves a second "
              "look. Per network, its hardest and easiest units (mode [interval]):"),
        ("list", extreme_units(unit_effects(fit))),
        ("img", "units.png", "unit random effects, sorted (caterpillar plot)"),
    ]


def report_blocks(
    analysis: Analysis, source: str, source_sha256: str | None, n_rows: int, notice: str | None = None,
    effect_note: str | None = None,
) -> list[Block]:
    """The report's blocks; ``effect_note`` ends every verdict line (the demo: its effects are planted)."""
    fit = analysis.fit
    rules = analysis.rules
    spec = fit.spec
    included = int((~analysis.participants["excluded"]).sum())
    origin = f"`{source}`" + (f" (sha256 {source_sha256[:16]}...)" if source_sha256 else "")
    convergence = ("yes" if fit.converged else "NO") + ("; singular fit" if fit.singular else "")
    warning = alert(analysis)
    contrasts = analysis.contrasts
    blocks: list[Block] = [
        ("h1", TITLE),
        *([("alert", warning)] if warning else []),
        *([("p", notice)] if notice else []),  # e.g. the demo's "random weights, simulated data"
        ("p", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {origin}: "
              f"{n_rows} answered trials from {len(analysis.participants)} participants."),
        ("h2", "Verdicts"),
        ("list", [line + (f" ({effect_note})" if effect_note else "")
                  for line in [verdict(row) for row in contrasts.itertuples(index=False)] + interaction_verdict(fit)]),
        ("h2", "Exclusions"),
        ("list", [rules.reason(key) for key in REASONS
                  if (key != "sides" or rules.require_both_sides) and (key != "practice" or rules.exclude_practice_flagged)]),
        ("p", f"{len(analysis.participants) - included} participants excluded, {included} included; "
              "a participant may fail several rules. Practice and catch trials never enter the model. "
              "Who was excluded and why: `exclusions.csv`."),
        ("table", analysis.exclusions),
        ("p", f"Main trials of included participants answered faster than {rules.min_rt_ms:g} ms are dropped, "
              "by the client's `rt_ms` and, where the export has it, the server's `server_elapsed_ms` "
              "(`fast_trials.csv`):"),
        ("table", analysis.fast_trials),
        ("h2", "Catch trials and response times"),
        ("p", "Per condition, for all participants and for the included ones: accuracy and reaction-time "
              "quartiles (client `rt_ms`, before the RT floor; `trial_summary.csv`)."),
        ("table", analysis.trial_summary),
        ("h2", "Accuracy"),
        ("p", "Main trials of included participants: mean of participants' accuracies per cell, ± 2 SEM "
              "across participants (`descriptives.csv`; per participant: `participants.csv`)."),
        ("table", analysis.descriptives[["condition", "network", "n_participants", "n_trials", "accuracy",
                                        "sem", "lower_2sem", "upper_2sem"]]),
        ("img", "accuracy.png", "accuracy per condition and network"),
        ("h2", "Accuracy against chance"),
        ("p", "Is each condition above chance (50%)? The model's answer: the condition's log-odds averaged over "
              "networks for a typical participant and unit (emmeans' `test(emmeans(m, ~ condition))`) against "
              "0, Holm across the conditions, with Bonferroni intervals beside the unadjusted ones; the "
              "model-free check: participants' mean accuracies against 0.5, one-sample t-test (`chance.csv`)."),
        ("list", [chance_verdict(row) for row in analysis.chance.itertuples(index=False)]),
        ("h2", "Logistic mixed model"),
        ("p", f"`{spec.formula}`, binomial logit, Laplace approximation (as lme4's `glmer`); "
              f"unit = network and class (`<network>:<class_index>`). Reference levels: condition "
              f"`{spec.ref_condition}`, network `{spec.ref_network}`."),
        ("p", f"Engine: `{fit.engine}` ({', '.join(f'{k} {v}' for k, v in fit.engine_versions.items())}); "
              f"standard errors: {fit.vcov_method}; 95% Wald intervals and p-values, unadjusted (the "
              f"coefficients are not a tested family; the declared contrasts below are). {fit.n_obs} trials, "
              f"{fit.n_groups['participant']} participants, {fit.n_groups['unit']} units; "
              f"log-likelihood {fit.loglik:.2f}; converged: {convergence}; fit in {fit.fit_s:.1f} s."),
        *([("list", [f"engine message: {m}" for m in fit.messages])] if fit.messages else []),
        ("table", fit.fixed_effects()),
        ("p", "Random effects (lme4's `VarCorr`: standard deviations, and correlations where `var2` is set, "
              "on the log-odds scale; `random_effects.csv`) and latent-scale intraclass correlations (a group's "
              "variance over all random variances plus pi^2/3; per condition with random slopes; `icc.csv`). "
              "These are point estimates: no interval is computed for them yet."),
        ("table", fit.varcorr),
        ("table", fit.icc()),
        ("p", "Likelihood-ratio tests: condition and network each dropped from the additive model; the "
              "condition x network interaction added to it (when the reported model is additive, the interaction "
              "model is fitted for this test alone). A negative chi-square is a failed fit, not a zero "
              "(`warning`)."),
        ("table", fit.lrt),
        *unit_blocks(fit),
        ("h2", "Predicted accuracy"),
        ("p", "Probability of a correct choice for a typical participant and unit (random effects at zero), with "
              "95% intervals back-transformed from the log-odds scale (emmeans' `type = \"response\"`; "
              "`cell_predictions.csv`). Per condition averaged over networks and per network averaged over "
              "conditions, on the log-odds scale (`marginal_predictions.csv`):"),
        ("table", analysis.marginals[PREDICTION_COLUMNS]),
        ("p", "Per cell:"),
        ("table", analysis.cells[PREDICTION_COLUMNS]),
        ("img", "log_odds.png", "predicted log-odds per condition and network"),
        ("p", f"Figure 5 shows the {figure5_model(spec.interaction)}. {FIGURE5_INTERVALS}"),
        ("h2", "Contrasts"),
        ("p", "Declared contrasts (`--contrast`; default: the paper's). A contrast is the difference of two "
              "levels' log-odds averaged over the other factor's levels; its difference in percentage points "
              "is that of the two predicted probabilities above, with a delta-method interval (`contrasts.csv`)."),
        *family_blocks(analysis),
        ("p", "Intervals are 95%: `ci_lower`/`ci_upper` unadjusted, `*_adj` Bonferroni-adjusted within the "
              "family (level 1 - 0.05/m for its m tests: the intervals that go with `p_holm`, as emmeans' "
              "`confint(adjust = \"bonferroni\")`; Holm has no interval of its own). `p` is unadjusted, Wald "
              "or, for a prior-regularised contrast, a likelihood-ratio test (`p_method`); `p_holm` is Holm's "
              "adjustment within the family."),
        ("table", contrasts[CONTRAST_COLUMNS]),
        ("p", "Odds ratios (unadjusted 95% intervals) and differences in percentage points:"),
        ("table", contrasts[ODDS_COLUMNS]),
        ("table", contrasts[POINTS_COLUMNS]),
    ]
    if len(analysis.sensitivity):
        blocks += [
            ("h2", "Sensitivity analyses"),
            ("p", "The declared contrasts refitted with and without the participant exclusions (without: every "
                  "participant's answered main trials, finished or not) and with and without the RT floor, side by "
                  "side: log-odds difference, unadjusted 95% Wald interval, and Holm's p within the family "
                  "(`sensitivity.csv` has the Bonferroni intervals and the rest). A conclusion that holds in "
                  "every column does not hang on the exclusion rules."),
            ("table", sensitivity_wide(analysis.sensitivity)),
        ]
    if analysis.log_rt is not None:
        log_rt = analysis.log_rt
        blocks += [
            ("h2", "Secondary outcome: reaction time"),
            ("p", f"`{LOG_RT_FORMULA}`, a linear mixed model fitted by REML (as lme4's `lmer`) on the trials of the "
                  "primary model (client `rt_ms`). A contrast is a difference of log RT: RT x 1.105 means the first "
                  "level's answers take 10.5% longer. 95% Wald intervals (asymptotic z, no degrees-of-freedom "
                  "correction) unadjusted and Bonferroni-adjusted within each family; Holm's p within it "
                  f"(`log_rt_contrasts.csv`). Residual SD {log_rt.sigma:.3f} on the log scale"
                  + ("; singular fit (a random-effect SD at 0)" if log_rt.singular else "") + "."),
            ("list", [log_rt_verdict(row) for row in analysis.log_rt_contrasts.itertuples(index=False)]),
            ("table", log_rt_fixed_effects(log_rt)),
            ("table", log_rt.varcorr),
        ]
    if analysis.confidence is not None:
        confidence = analysis.confidence
        sds = ", ".join(f"{group} {sd:.3f}" for group, sd in confidence.sd.items())
        blocks += [
            ("h2", "Secondary outcome: confidence ratings"),
            ("p", f"`{ORDINAL_FORMULA}`, a cumulative-logit mixed model (as R's `ordinal::clmm`, Laplace) on the "
                  "trials of the primary model: logit P(rating <= j) = threshold_j - eta, so a contrast is a log "
                  "cumulative odds ratio of a higher rating (x 1.5: the odds of rating above any level are 1.5 "
                  "times as high). 95% Wald intervals unadjusted and Bonferroni-adjusted within each family; Holm's "
                  f"p within it (`confidence_contrasts.csv`). Random-intercept SDs (point estimates): {sds}; "
                  f"log-likelihood {confidence.loglik:.2f}"
                  + ("" if confidence.converged else "; THE FIT DID NOT CONVERGE: " + confidence.message) + "."),
            ("list", [ordinal_verdict(row) for row in analysis.confidence_contrasts.itertuples(index=False)]),
            ("table", ordinal_coefficients(confidence)),
        ]
    if len(analysis.simple_effects):
        blocks += [
            ("h2", "Simple effects per network"),
            ("p", "The condition contrasts within each network, from the interaction model; Holm within each "
                  "family and network, as emmeans' `contrast(emmeans(m, ~ condition | network))` "
                  "(`simple_effects.csv`)."),
            ("list", [verdict(row) for row in analysis.simple_effects.itertuples(index=False)]),
            ("table", analysis.simple_effects[SIMPLE_EFFECT_COLUMNS]),
        ]
    blocks += [
        ("h2", "Software"),
        ("table", pd.DataFrame(list(software_versions(fit.engine_versions).items()), columns=["software", "version"])),
    ]
    return blocks


def write_report(
    analysis: Analysis, out: Path, source: str, source_sha256: str | None = None, n_rows: int = 0,
    notice: str | None = None, effect_note: str | None = None,
) -> list[Path]:
    """Write every table, both figures and report.md/.html into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fit = analysis.fit
    tables = {
        "fixed_effects.csv": fit.fixed_effects(),
        "contrasts.csv": analysis.contrasts,
        "descriptives.csv": analysis.descriptives,
        "exclusions.csv": analysis.participants,
        "exclusion_summary.csv": analysis.exclusions,
        "fast_trials.csv": analysis.fast_trials,
        "trial_summary.csv": analysis.trial_summary,
        "participants.csv": analysis.per_participant,
        "cell_predictions.csv": analysis.cells,
        "marginal_predictions.csv": analysis.marginals,
        "chance.csv": analysis.chance,
        "random_effects.csv": fit.varcorr,
        "icc.csv": fit.icc(),
        "lrt.csv": fit.lrt,
        "fit_warnings.csv": warnings_frame(fit.warnings),
    }
    if len(analysis.simple_effects):
        tables["simple_effects.csv"] = analysis.simple_effects
    if len(analysis.sensitivity):
        tables["sensitivity.csv"] = analysis.sensitivity
    if analysis.log_rt is not None:
        tables["log_rt_fixed_effects.csv"] = log_rt_fixed_effects(analysis.log_rt)
        tables["log_rt_contrasts.csv"] = analysis.log_rt_contrasts
        tables["log_rt_random_effects.csv"] = analysis.log_rt.varcorr
    if analysis.confidence is not None:
        tables["confidence_coefficients.csv"] = ordinal_coefficients(analysis.confidence)
        tables["confidence_contrasts.csv"] = analysis.confidence_contrasts
    written = []
    for name, table in tables.items():
        table.to_csv(out / name, index=False)
        written.append(out / name)
    fit.vcov_frame().to_csv(out / "vcov.csv")
    written.append(out / "vcov.csv")
    written += plot_accuracy(analysis.descriptives, out / "accuracy")
    written += plot_log_odds(analysis.cells, out / "log_odds", fit.spec.interaction, trusted(fit))
    if fit.ranef is not None:
        units = unit_effects(fit)
        units.to_csv(out / "unit_effects.csv", index=False)
        written += [out / "unit_effects.csv", *plot_caterpillar(units, out / "units")]
    blocks = report_blocks(analysis, source, source_sha256, n_rows, notice, effect_note)
    (out / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(render_html(blocks, TITLE), encoding="utf-8")
    return written + [out / "report.md", out / "report.html"]
