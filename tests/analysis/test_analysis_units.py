"""Diagnostics of the unit random effects: the conditional modes find the simulator's true unit effects."""
from __future__ import annotations

import numpy as np

from analysis.load import validate_export
from analysis.pipeline import run_analysis
from analysis.simulate import unit_effect
from analysis.units import extreme_units, unit_effects


def test_unit_modes_track_the_true_unit_effects(small_export, small_model):
    analysis = run_analysis(validate_export(small_export), lrt=False, sensitivity=False, secondary=False)
    units = unit_effects(analysis.fit)
    assert len(units) == 24 and units["unit"].is_unique
    assert (units["unit"].str.split(":").str[0] == units["network"]).all()
    assert units["mode"].is_monotonic_increasing
    assert np.allclose(units["upper"] - units["mode"], 1.959964 * units["cond_sd"])
    truth = [unit_effect(small_model, 11, network, unit) for network, unit in zip(units["network"], units["unit"])]
    assert np.corrcoef(units["mode"], truth)[0, 1] > 0.7  # shrunk toward 0, but in the true order
    lines = extreme_units(units)
    assert len(lines) == 3 and all(" units, " in line and "; easiest " in line for line in lines)
    hardest = units.iloc[0]
    assert any(f"hardest {hardest['unit']} ({hardest['mode']:+.2f} [" in line for line in lines)
