"""Parameter recovery: over repeated simulated studies, 95% intervals cover the true effects.

The design (40 participants, 8 units per network, 36 main trials each, 50 studies)
fits in well under a minute. At this size Wald intervals of a logistic mixed
model under-cover a little, because they ignore the uncertainty of the
variance components: measured over 200 such studies the coverage was 0.92 for
every effect (lme4's standard errors are the same, see the agreement test). So
the acceptance band allows that 0.03 below nominal plus 3 binomial SDs of the
observed share, and 3 SDs above nominal. The seeds are fixed, so the outcome is
deterministic; the band is what makes it meaningful, and the last assertions
show it rejects intervals from standard errors 2.5 times too small (mean-field
Bayes posterior SDs reported as SEs) or 1.5 times too large.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis.load import validate_export
from analysis.pipeline import run_analysis
from analysis.simulate import simulate_export

STUDIES = 50
PARTICIPANTS = 40
NOMINAL = 0.95
SMALL_SAMPLE_ALLOWANCE = 0.03


def band(n: int) -> tuple[float, float]:
    low = NOMINAL - SMALL_SAMPLE_ALLOWANCE
    return (low - 3 * np.sqrt(low * (1 - low) / n), NOMINAL + 3 * np.sqrt(NOMINAL * (1 - NOMINAL) / n))


def coverage(estimates: np.ndarray, ses: np.ndarray, truth: np.ndarray, se_scale: float = 1.0) -> float:
    half = stats.norm.ppf(0.975) * ses * se_scale
    return float(np.mean(np.abs(estimates - truth) <= half))


@pytest.mark.slow
def test_intervals_cover_true_effects_at_close_to_nominal_rate(small_model):
    truth_by_term = small_model.true_coefficients()
    terms = list(truth_by_term)
    truth = np.array([truth_by_term[t] for t in terms])
    estimates, ses = [], []
    for seed in range(STUDIES):
        df = validate_export(simulate_export(small_model, PARTICIPANTS, seed=1000 + seed))
        fit = run_analysis(df, lrt=False, sensitivity=False, secondary=False).fit
        assert fit.converged, fit.messages
        table = fit.fixed_effects().set_index("term").loc[terms]
        estimates.append(table["estimate"].to_numpy())
        ses.append(table["se"].to_numpy())
    estimates, ses = np.array(estimates), np.array(ses)
    low, high = band(estimates.size)

    observed = coverage(estimates, ses, truth)
    assert low <= observed <= high, f"coverage {observed:.3f} outside [{low:.3f}, {high:.3f}]"
    # estimates are unbiased within 3 Monte Carlo SEs, term by term
    mc_se = estimates.std(axis=0, ddof=1) / np.sqrt(STUDIES)
    assert np.all(np.abs(estimates.mean(axis=0) - truth) < 3 * mc_se), dict(zip(terms, estimates.mean(axis=0)))
    # model-based SEs match the spread of the estimates across studies: the SD of one term's
    # spread is ~1/sqrt(2 * STUDIES) = 10% relative, so the mean ratio over 6 terms gets 15%
    ratio = ses.mean(axis=0) / estimates.std(axis=0, ddof=1)
    assert abs(ratio.mean() - 1) < 0.15, ratio
    # the band has teeth: wrong standard errors fall outside it
    assert coverage(estimates, ses, truth, se_scale=1 / 2.5) < low
    assert coverage(estimates, ses, truth, se_scale=1.5) > high
