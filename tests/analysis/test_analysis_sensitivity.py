"""The sensitivity analyses: the contrasts refitted without the exclusions and without the RT floor."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from analysis.exclusions import ExclusionRules
from analysis.load import validate_export
from analysis.pipeline import run_analysis
from analysis.report import sensitivity_wide
from analysis.simulate import GenerativeModel, simulate_export

# misbehaving participants to exclude
MODEL = replace(GenerativeModel(), units_per_network=8, main_trials_per_network=12, p_inattentive=0.15,
                p_dropout=0.1)


def test_each_variant_is_the_analysis_under_its_rules():
    raw = simulate_export(MODEL, n_participants=32, seed=31)
    raw.loc[raw.index[raw["trial_kind"].eq("main")][::25], "rt_ms"] = 150  # answers faster than the floor
    df = validate_export(raw)
    analysis = run_analysis(df, lrt=False, secondary=False, contrasts=["maco_vs_olah", "olah_vs_none"])
    table = analysis.sensitivity.set_index(["variant", "contrast"])
    assert list(dict.fromkeys(analysis.sensitivity["variant"])) == [
        "as reported", "no participant exclusions", "no RT floor", "neither"]
    reported = table.loc["as reported"]
    assert np.allclose(reported["estimate"], analysis.contrasts.set_index("contrast")["estimate"])
    size = analysis.sensitivity.drop_duplicates("variant").set_index("variant")
    main = df[df["trial_kind"].eq("main")]
    included = (~analysis.participants["excluded"]).sum()
    assert size.loc["as reported", "participants"] == included < main["participant_id"].nunique()
    assert size.loc["no participant exclusions", "participants"] == main["participant_id"].nunique()
    assert size.loc["neither", "trials"] == len(main)  # every answered main trial
    fast = analysis.fast_trials.set_index("condition").loc["all", "dropped"]
    assert fast > 0 and size.loc["no RT floor", "trials"] == size.loc["as reported", "trials"] + fast
    # the no-floor variant is exactly the analysis run with the floor at 0
    floorless = run_analysis(df, rules=replace(ExclusionRules(), min_rt_ms=0.0), lrt=False, sensitivity=False,
                             contrasts=["maco_vs_olah", "olah_vs_none"])
    np.testing.assert_allclose(table.loc["no RT floor", "estimate"], floorless.contrasts["estimate"], atol=1e-9)
    np.testing.assert_allclose(table.loc["no RT floor", "p_holm"], floorless.contrasts["p_holm"], atol=1e-9)
    wide = sensitivity_wide(analysis.sensitivity).set_index("contrast")
    assert wide.loc["MACO vs Olah", "as reported"].startswith(
        f"{reported.loc['MACO vs Olah', 'estimate']:+.2f}, 95% CI [")
    assert "unadjusted; p_holm" in wide.loc["MACO vs Olah", "neither"]
    assert wide.loc["(sample)", "neither"] == f"{main['participant_id'].nunique()} participants, {len(main)} trials"
