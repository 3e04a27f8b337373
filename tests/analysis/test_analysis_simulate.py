"""The simulator writes real exports, and its behaviour knobs do what they say."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from analysis.exclusions import participant_table
from analysis.load import EXPORT_COLUMNS, validate_export
from analysis.simulate import GenerativeModel, draw_participants, simulate_export, unit_effect


def test_export_has_the_contract_columns_and_validates(small_export, small_model):
    assert list(small_export.columns) == list(EXPORT_COLUMNS)
    df = validate_export(small_export)
    kinds = df.groupby("participant_id")["trial_kind"].value_counts().unstack()
    assert (kinds["main"] == 36).all() and (kinds["catch"] == small_model.catch_trials).all()
    assert df.loc[df["trial_kind"].eq("main"), "unit"].str.match(r"^(vgg16|resnet50|vit_b16):\d+$").all()
    assert df.groupby("participant_id")["condition"].first().value_counts().tolist() == [12] * 4


def test_same_seed_same_study_other_seed_other_study(small_model):
    a = simulate_export(small_model, n_participants=6, seed=1)
    assert a.equals(simulate_export(small_model, n_participants=6, seed=1))
    assert not a["correct"].equals(simulate_export(small_model, n_participants=6, seed=2)["correct"])


def test_unit_effects_do_not_depend_on_call_order():
    model = GenerativeModel()
    first = [unit_effect(model, 7, "vgg16", str(u)) for u in range(5)]
    second = [unit_effect(model, 7, "vgg16", str(u)) for u in reversed(range(5))][::-1]
    assert first == second and len(set(first)) == 5
    assert unit_effect(model, 8, "vgg16", "0") != first[0]


def test_true_coefficients_follow_the_reference():
    model = GenerativeModel()
    truth = model.true_coefficients("maco", "vit_b16")
    assert truth["condition[olah]"] == -model.condition_effects["maco"]
    assert truth["network[resnet50]"] == -model.network_effects["vit_b16"]
    assert truth["(Intercept)"] == model.intercept + model.condition_effects["maco"] + model.network_effects["vit_b16"]


def test_behaviours_are_caught_by_the_exclusions(small_model):
    def excluded(**knobs) -> tuple[float, list[str]]:
        df = validate_export(simulate_export(replace(small_model, **knobs), n_participants=24, seed=3))
        table = participant_table(df)
        return table["excluded"].mean(), sorted(set("; ".join(table["reasons"]).split("; ")) - {""})

    share, reasons = excluded(p_dropout=1.0)
    assert share == 1.0 and "session not finished" in reasons
    share, reasons = excluded(p_one_sided=1.0)
    assert share == 1.0 and "answers on one side only" in reasons
    share, reasons = excluded(p_rushed_instructions=1.0)
    assert share == 1.0 and reasons == ["instructions under 15 s"]
    # chance answering: P(at least 4 of 6 catch right) = 22/64, so most but not all fail
    df = validate_export(simulate_export(replace(small_model, p_inattentive=1.0), n_participants=200, seed=4))
    table = participant_table(df)
    assert abs(table["fail_catch"].mean() - 42 / 64) < 4 * np.sqrt(42 / 64 * 22 / 64 / 200)
    assert abs(table["main_accuracy"].mean() - 0.5) < 0.02


def test_participants_are_balanced_across_conditions():
    rng = np.random.default_rng(0)
    people = draw_participants(GenerativeModel(), 10, rng)
    counts = {c: sum(p.condition == c for p in people) for c in GenerativeModel().conditions}
    assert sorted(counts.values()) == [2, 2, 3, 3]
