"""Catch trials in each participant's plan: never the first trial after practice, never two in a row."""
from __future__ import annotations

import random

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.models import Trial
from study_server.plan import spread_catch


@pytest.mark.parametrize("n_main, n_catch", [(8, 2), (10, 3), (24, 6), (5, 5), (7, 1), (3, 0)])
def test_spread_catch_places_one_catch_after_a_main_trial_of_each_stretch(n_main: int, n_catch: int) -> None:
    main, catch = [f"m{k}" for k in range(n_main)], [f"c{k}" for k in range(n_catch)]
    seen_first_slots = set()
    for seed in range(500):
        plan = spread_catch(random.Random(seed), main, catch)
        kinds = [kind for kind, _ in plan]
        assert [p for kind, p in plan if kind == "main"] == main  # the main order is kept
        assert [p for kind, p in plan if kind == "catch"] == catch
        if n_catch:
            assert kinds[0] == "main"
            assert ("catch", "catch") not in zip(kinds, kinds[1:])
        catch_at = [i for i, kind in enumerate(kinds) if kind == "catch"]
        for k, index in enumerate(catch_at):  # catch k follows a main trial of the k-th equal stretch
            mains_before = index - k
            assert k * n_main // n_catch < mains_before <= (k + 1) * n_main // n_catch, (seed, plan)
        seen_first_slots.add(kinds.index("catch") if n_catch else None)
    if n_catch and n_main // n_catch > 1:  # the place within a stretch is random
        assert len(seen_first_slots) > 1


def test_no_participant_starts_the_main_trials_with_a_catch_trial(app, walker) -> None:  # noqa: ANN001
    """The issue's finding: the first real trial was a catch trial for 9 of 24 participants."""
    firsts = []
    for _ in range(24):
        w = walker()
        w.to_trials()
        while w.current()["practice"]:
            w.answer_current()
        with Session(app.extensions["maco"].engine) as session:
            kinds = list(session.scalars(select(Trial.kind).where(Trial.participant_id == w.participant().id,
                                                                  Trial.kind != "practice")
                                         .order_by(Trial.position)))
        assert kinds.count("catch") == 2 and ("catch", "catch") not in zip(kinds, kinds[1:])
        firsts.append(kinds[0])
    assert firsts == ["main"] * 24
