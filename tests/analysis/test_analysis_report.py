"""The report never misleads silently: each defect of issue 13 gives its message and exit code."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.cli import analyze
from analysis.render import format_number
from analysis.report import verdict
from analysis.simulate import simulate_export

BANNER = "> **Read this first: the model did not converge.**"


def run(tmp_path, export: pd.DataFrame, *options: str):
    responses = tmp_path / "responses.csv"
    export.to_csv(responses, index=False)
    out = tmp_path / "report"
    return CliRunner().invoke(analyze, [str(responses), "--out", str(out), *options]), out


def test_numbers_beyond_1e4_print_in_scientific_notation():
    assert format_number(6.6e43) == "6.60e+43"
    assert format_number(12345.0) == "1.23e+04"
    assert format_number(9999.0) == "9999.000"
    assert format_number(0.0005) == "5.00e-04"
    assert format_number(float("inf")) == "inf"
    assert format_number(0.0) == "0.000"


def test_verdict_line_names_every_adjustment():
    fields = ("contrast estimate ci_lower ci_upper ci_lower_adj ci_upper_adj pp pp_lower pp_upper pp_lower_adj "
              "pp_upper_adj p p_method p_holm family family_size prior_regularised warning trusted ci_method pp_method")
    Row = namedtuple("Row", fields)
    row = Row("MACO vs Olah", 0.2209, 0.0061, 0.4157, -0.0327, 0.4745, 4.12, 0.21, 8.03, -0.55, 8.79, 0.0437,
              "Wald", 0.1312, "conditions", 3, False, "", True, "Wald", "delta-method Wald")
    assert verdict(row) == (
        "MACO vs Olah: +0.22 log-odds, 95% Wald CI [0.01, 0.42] unadjusted, [-0.03, 0.47] Bonferroni-adjusted for "
        "3 tests; +4.1 percentage points, [0.2, 8.0] unadjusted, [-0.6, 8.8] adjusted (delta-method Wald); "
        "p = 0.044 (Wald, unadjusted), p_holm = 0.13 (Holm over the 3 tests of family conditions)")
    assert "95% profile-likelihood CI [0.01, 0.42]" in verdict(row._replace(ci_method="profile-likelihood"))
    assert verdict(row._replace(family_size=1, family="primary")).endswith(
        "[0.2, 8.0] unadjusted (delta-method Wald); p = 0.044 (Wald, unadjusted), the only test of family primary: "
        "no adjustment")
    assert verdict(row._replace(prior_regularised=True, p_method="likelihood ratio")).startswith(
        "MACO vs Olah (prior-regularised estimate): +0.22 log-odds")
    assert "p = 0.044 (likelihood ratio, unadjusted)" in verdict(row._replace(p_method="likelihood ratio"))
    assert verdict(row._replace(p_holm=4.6e-5, trusted=False)).endswith(
        "(not interpretable: the fit did not converge)")
    assert verdict(row._replace(warning="optimizer; separation", trusted=False)).endswith(
        "(not interpretable: optimizer; separation)")
    assert verdict(row._replace(warning="singular")).endswith("family conditions) (note: singular)")


@pytest.fixture()
def separated(small_model) -> pd.DataFrame:
    """Every main answer in condition maco is correct: complete separation."""
    raw = simulate_export(small_model, n_participants=24, seed=5)
    maco = raw["condition"].eq("maco") & raw["trial_kind"].eq("main")
    raw.loc[maco, "chosen_side"] = raw.loc[maco, "correct_side"]
    raw.loc[maco, "correct"] = 1
    return raw


def test_separation_exits_non_zero_with_a_banner_and_flags_every_contrast(tmp_path, separated):
    result, out = run(tmp_path, separated)
    assert result.exit_code == 1, result.output
    error = result.stderr.splitlines()[-1]
    assert error.startswith("Error: the fit has problems (") and "separation" in error
    assert error.endswith("rerun with --allow-unconverged to accept it")
    report = (out / "report.md").read_text()
    assert report.splitlines()[2] == BANNER  # right under the title
    assert "main trials of condition maco are correct, so its log-odds are unbounded" in report
    assert "refit with --prior normal" in report
    assert "- MACO vs Olah: " in report and "(not interpretable: " in report
    contrasts = pd.read_csv(out / "contrasts.csv", keep_default_na=False).set_index("contrast")
    assert not contrasts["converged"].any() and not contrasts["trusted"].any()
    assert "separation" in contrasts.loc["MACO vs Olah", "warning"]
    assert "separation" not in contrasts.loc["vit_b16 vs vgg16", "warning"]  # maco's terms are not in it
    assert '<div class="alert" role="alert">' in (out / "report.html").read_text()

    accepted, _ = run(tmp_path, separated, "--allow-unconverged")
    assert accepted.exit_code == 0, accepted.output
    assert "converged: NO" in accepted.stdout

    # the remedy the box offers: the normal prior keeps the estimates finite, separation becomes a note
    remedied, out = run(tmp_path, separated, "--prior", "normal", "--min-participants", "6")
    assert remedied.exit_code == 0, remedied.output
    report = (out / "report.md").read_text()
    assert report.splitlines()[2] == "> **Read this first: notes on the fit and the data.**"
    assert "> - note: separation in the data: all " in report and "report them as prior-regularised" in report
    contrasts = pd.read_csv(out / "contrasts.csv", keep_default_na=False).set_index("contrast")
    assert contrasts["converged"].all() and abs(contrasts.loc["MACO vs Olah", "estimate"]) < 10
    assert contrasts["trusted"].all()  # a prior-regularised estimate is a note, not a problem
    assert "(note: separation)" in report


@pytest.fixture()
def no_control(small_model) -> pd.DataFrame:
    return simulate_export(small_model, n_participants=18, seed=6).query("condition != 'none'")


def test_a_missing_condition_is_an_error_listing_the_levels_found(tmp_path, no_control):
    result, out = run(tmp_path, no_control)
    assert result.exit_code == 1
    assert "condition 'none' (needed by 'Olah vs none')" in result.stderr
    assert "conditions found: maco, maco_mask, olah" in result.stderr
    assert "--contrast maco_vs_olah --contrast mask_vs_no_mask --contrast vit_vs_cnns" in result.stderr
    assert not out.exists()  # stopped before the fit, nothing written


def test_a_named_set_without_the_missing_level_runs_and_says_its_families(tmp_path, no_control):
    result, out = run(tmp_path, no_control, "--contrast", "maco_vs_olah", "--contrast", "mask_vs_no_mask",
                      "--contrast", "vit_vs_cnns", "--min-participants", "4")
    assert result.exit_code == 0, result.output
    contrasts = pd.read_csv(out / "contrasts.csv")
    assert contrasts["contrast"].tolist() == ["MACO vs Olah", "MACO with mask vs without", "vit_b16 vs resnet50",
                                              "vit_b16 vs vgg16"]
    report = (out / "report.md").read_text()
    assert "- conditions (2 tests): MACO vs Olah, MACO with mask vs without" in report
    assert "- networks (2 tests): vit_b16 vs resnet50, vit_b16 vs vgg16" in report
    assert "Holm-corrected separately, as the paper tests them" in report
    assert "Read this first" not in report  # converged, 4 or 5 per condition: no box
    assert "MACO vs Olah: " in result.stdout and "p_holm = " in result.stdout


def test_a_renamed_vit_is_an_error(tmp_path, small_model):
    raw = simulate_export(small_model, n_participants=8, seed=7)
    raw["network"] = raw["network"].replace("vit_b16", "vit_l16")
    raw["unit"] = raw["unit"].str.replace("vit_b16:", "vit_l16:")
    result, _ = run(tmp_path, raw)
    assert result.exit_code == 1
    assert "network 'vit_b16' (needed by 'vit_b16 vs resnet50', 'vit_b16 vs vgg16', 'vit_b16 vs vit_l16')" in (
        result.stderr)
    assert "networks found: resnet50, vgg16, vit_l16" in result.stderr
    assert "or name the study's ViT with --vit (now vit_b16)" in result.stderr


def test_conditions_spelled_differently_are_an_error_not_a_shorter_family(tmp_path, small_model):
    raw = simulate_export(small_model, n_participants=8, seed=8)
    raw["condition"] = raw["condition"].replace({"maco": "MACO", "olah": "Olah"})
    result, _ = run(tmp_path, raw, "--ref-condition", "Olah")
    assert result.exit_code == 1
    assert "'MACO' (2 participants, did you mean 'maco'?), 'Olah' (2 participants, did you mean 'olah'?)" in (
        result.stderr)
    # named on purpose, the labels pass that check, and the paper's contrasts still need the study's spelling
    result, _ = run(tmp_path, raw, "--ref-condition", "Olah", "--conditions", "MACO,Olah,maco_mask,none")
    assert result.exit_code == 1
    assert "condition 'maco' (needed by 'MACO vs Olah', 'MACO with mask vs without')" in result.stderr
    assert "condition 'olah' (needed by 'MACO vs Olah', 'Olah vs none')" in result.stderr
    assert "conditions found: MACO, Olah, maco_mask, none" in result.stderr


def test_duplicated_answers_are_an_error(tmp_path, small_model):
    raw = simulate_export(small_model, n_participants=4, seed=9)
    again = raw[raw["trial_kind"].eq("main")].head(3).copy()
    again["trial_index"] += 1000
    result, out = run(tmp_path, pd.concat([raw, again]))
    assert result.exit_code == 1
    assert "column 'query_id': 3 main-trial query pair(s) answered more than once by one participant" in result.stderr
    assert not out.exists()


def test_tiny_samples_warn_on_stderr_and_in_the_report(tmp_path, small_model):
    raw = simulate_export(small_model, n_participants=8, seed=10)
    first_olah = raw.loc[raw["condition"].eq("olah"), "participant_id"].iloc[0]
    raw = raw[raw["condition"].ne("olah") | raw["participant_id"].eq(first_olah)]  # olah: 1, others: 2
    result, out = run(tmp_path, raw, "--allow-unconverged")
    assert result.exit_code == 0, result.output
    assert "warning: condition 'olah' has 1 included participant: condition and participant are confounded" in (
        result.stderr)
    assert "warning: condition 'maco' has 2 included participants, fewer than 10 (--min-participants)" in (
        result.stderr)
    report = (out / "report.md").read_text()
    assert "> - data: condition 'olah' has 1 included participant" in report


def test_interaction_adds_simple_effects_and_labels_figure_5(tmp_path, small_model):
    raw = simulate_export(small_model, n_participants=24, seed=11)
    result, out = run(tmp_path, raw, "--interaction", "--allow-unconverged")
    assert result.exit_code == 0, result.output
    simple = pd.read_csv(out / "simple_effects.csv")
    assert len(simple) == 9 and set(simple["within"]) == {"resnet50", "vgg16", "vit_b16"}
    assert set(simple["family"]) == {"conditions | resnet50", "conditions | vgg16", "conditions | vit_b16"}
    report = (out / "report.md").read_text()
    assert "## Simple effects per network" in report and "- MACO vs Olah within vgg16: " in report
    assert "Figure 5 shows the interaction model (condition x network)" in report


def test_figure_5_draws_an_additive_models_profiles_parallel(small_export):
    """Each condition's line joins points at the networks' own positions (no dodge), so the vertical gap
    between two conditions' lines is the same at every network, as the additive model says."""
    from analysis.figures import log_odds_figure
    from analysis.load import validate_export
    from analysis.pipeline import run_analysis

    cells = run_analysis(validate_export(small_export), lrt=False, sensitivity=False, secondary=False).cells
    ax = log_odds_figure(cells, interaction=False).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert sorted(lines) == sorted(cells["condition"].unique())
    for line in lines.values():
        assert list(line.get_xdata()) == [0.0, 1.0, 2.0]
    y = np.array([lines[c].get_ydata() for c in sorted(lines)])
    gaps = y - y[0]
    assert np.ptp(gaps, axis=1).max() < 1e-9 and np.abs(gaps[1:]).min() > 1e-3
    # a prior-regularised cell is drawn with an open marker, and the caption says so
    marked = cells.assign(prior_regularised=cells["condition"].eq("maco"))
    figure = log_odds_figure(marked, interaction=False)
    open_markers = [line for line in figure.axes[0].get_lines() if line.get_markerfacecolor() == "white"]
    assert len(open_markers) == 1 and len(open_markers[0].get_xdata()) == 3
    assert any("Open marker: prior-regularised" in text.get_text() for text in figure.texts)
