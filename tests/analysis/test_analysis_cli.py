"""maco-study analyze and power, as a user runs them."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
from click.testing import CliRunner

from analysis.cli import analyze, power
from analysis.simulate import simulate_export
from maco_study import main

REPORT_FILES = [
    "fixed_effects.csv", "contrasts.csv", "descriptives.csv", "exclusions.csv", "exclusion_summary.csv",
    "fast_trials.csv", "trial_summary.csv", "participants.csv", "cell_predictions.csv", "marginal_predictions.csv",
    "random_effects.csv", "icc.csv", "lrt.csv", "fit_warnings.csv", "vcov.csv", "accuracy.png", "accuracy.svg",
    "log_odds.png", "log_odds.svg", "chance.csv", "sensitivity.csv", "log_rt_contrasts.csv", "log_rt_fixed_effects.csv",
    "log_rt_random_effects.csv", "confidence_contrasts.csv", "confidence_coefficients.csv", "unit_effects.csv", "units.png", "units.svg", "report.md", "report.html",
]


def test_analyze_writes_every_report_file(tmp_path):
    responses = tmp_path / "responses.csv"
    simulate_export(n_participants=40, seed=2).to_csv(responses, index=False)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["analyze", str(responses), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    fixed = pd.read_csv(out / "fixed_effects.csv")
    assert "condition[maco]" in set(fixed["term"]) and "network[vit_b16]" in set(fixed["term"])
    contrasts = pd.read_csv(out / "contrasts.csv")
    assert contrasts["contrast"].tolist()[:3] == ["MACO vs Olah", "Olah vs none", "MACO with mask vs without"]
    exclusions = pd.read_csv(out / "exclusions.csv")
    assert len(exclusions) == 40 and {"condition", "excluded", "reasons"} <= set(exclusions.columns)
    report = (out / "report.md").read_text()
    for needle in ["correct ~ condition + network + (1|participant) + (1|unit)", "Engine: `mixedlm`",
                   "| mixedlm | ", "| pandas | ", "Holm", "![accuracy", "excluded", "- MACO vs Olah: ",
                   "Figure 5 shows the additive model (condition + network): the lines are parallel",
                   "- Condition x network interaction (does a method help more on some networks than others?): "
                   "chi-square(6) = "]:
        assert needle in report, needle
    assert not (out / "simple_effects.csv").exists()  # additive model: no simple effects
    html = (out / "report.html").read_text()
    md_tables = sum(line.startswith("|---") for line in report.splitlines())
    assert html.startswith("<!doctype html>") and html.count("<table>") == md_tables == 18
    assert '<img src="log_odds.png"' in html and "<code>correct ~ condition" in html


def test_analyze_reports_a_broken_export_by_column(tmp_path, small_model):
    responses = tmp_path / "responses.csv"
    simulate_export(small_model, n_participants=4, seed=2).drop(columns=["chosen_side"]).to_csv(responses, index=False)
    result = CliRunner().invoke(analyze, [str(responses), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "chosen_side" in result.output


def test_power_writes_table_and_curve(tmp_path):
    out = tmp_path / "power"
    result = CliRunner().invoke(
        power, ["--participants", "16:32:16", "--reps", "2", "--trials-per-network", "6", "--jobs", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "power.csv")
    assert table["participants"].tolist() == [16, 32] and (table["studies"] == 2).all()
    assert table["power"].between(0, 1).all() and (table["ci_lower"] <= table["power"]).all()
    assert (out / "power.png").exists() and (out / "power.svg").exists()


def test_power_counts_only_fits_that_analyze_would_accept(monkeypatch):
    """A significant estimate from an unconverged or problematic fit is not a detection: analyze would refuse
    that study (exit non-zero), so the power curve must not count it."""
    from analysis import power as power_module
    from analysis.simulate import GenerativeModel

    def canned(task):
        n, seed = task[1], task[2]
        kind = seed % 3  # the seeds differ per replicate: a fixed mix of trusted, untrusted and failed
        if kind == 2:
            return {"participants": n, "ok": False, "error": "LinAlgError: singular"}
        return {"participants": n, "ok": True, "trusted": kind == 0, "estimate": 1.0, "se": 0.1, "p": 1e-6,
                "included": n}

    monkeypatch.setattr(power_module, "_one_study", canned)
    table = power_module.power_curve(GenerativeModel(), [20], reps=30)
    row = table.iloc[0]
    trusted = row["studies"] - row["untrusted_fits"] - row["failed_fits"]
    assert 0 < row["untrusted_fits"] < 30 and 0 < trusted < 30
    assert row["detected"] == trusted and row["power"] == trusted / 30


def test_power_takes_inattention_and_dropout_rates_and_both_cores(monkeypatch, tmp_path):
    from analysis import power as power_module

    seen = {}

    def fake_curve(model, counts, **options):
        seen.update(model=model, **options)
        return pd.DataFrame({"participants": counts, "studies": 1, "failed_fits": 0, "untrusted_fits": 0,
                             "power": 0.5, "ci_lower": 0.1, "ci_upper": 0.9, "first_error": "", "true_effect": 0.5,
                             "alpha": 0.05})

    monkeypatch.setattr(power_module, "power_curve", fake_curve)
    result = CliRunner().invoke(power, ["--participants", "40", "--reps", "1", "--p-inattentive", "0.2",
                                        "--p-dropout", "0.1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (seen["model"].p_inattentive, seen["model"].p_dropout, seen["jobs"]) == (0.2, 0.1, 2)
    result = CliRunner().invoke(power, ["--p-dropout", "1.5", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--p-dropout" in result.output


def test_power_rejects_a_bad_range():
    result = CliRunner().invoke(power, ["--participants", "forty"])
    assert result.exit_code != 0 and "--participants" in result.output


def test_analysis_never_imports_torch_or_flask():
    code = (
        "import sys, analysis.cli, analysis.pipeline, analysis.report, analysis.power, analysis.figures;"
        "bad = [m for m in ('torch', 'flask') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
