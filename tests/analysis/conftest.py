"""Fixtures for the analysis tests: hand-made exports, a small clean simulated study, R."""
from __future__ import annotations

import os
import shutil
from dataclasses import replace

import pandas as pd
import pytest

from analysis.load import EXPORT_COLUMNS
from analysis.simulate import GenerativeModel, simulate_export

# a small, clean study: no participant to exclude, so the fitted sample is known
SMALL = replace(
    GenerativeModel(),
    p_inattentive=0.0,
    p_one_sided=0.0,
    p_rushed_instructions=0.0,
    p_dropout=0.0,
    units_per_network=8,
    main_trials_per_network=12,
)


def participant_rows(
    pid: str,
    condition: str = "olah",
    main: list[tuple[str, str, str]] | None = None,
    catch: list[tuple[str, str]] | None = None,
    practice: int = 2,
    instruction_ms: float | None = 40_000,
    total_ms: float | None = 600_000,
    practice_rounds: int = 1,
    practice_flagged: int = 0,
    status: str = "completed",
    window: tuple[int, int] = (1280, 800),
    small_window: tuple[int, int] | None = None,
) -> list[dict]:
    """Export rows of one participant; ``main`` holds (network, correct_side, chosen_side).
    Every answer is given in ``window``, but the last main trial in ``small_window`` when set."""
    main = main if main is not None else [
        ("resnet50", "left", "left"), ("vgg16", "right", "right"), ("vit_b16", "left", "right"),
        ("resnet50", "right", "left"),
    ]
    catch = catch if catch is not None else [("left", "left"), ("right", "right"), ("left", "left")]
    trials = [("practice", "", "left", "left")] * practice
    trials += [("main", network, c, s) for network, c, s in main]
    trials += [("catch", "", c, s) for c, s in catch]
    rows = []
    for index, (kind, network, correct_side, chosen_side) in enumerate(trials):
        row = {column: "" for column in EXPORT_COLUMNS}
        row.update(
            participant_id=pid, participant_status=status, condition=condition, network=network,
            unit=f"{network}:{index % 3}" if network else "", trial_kind=kind,
            practice_round=1 if kind == "practice" else "", trial_index=index, query_id=f"q{index}",
            correct_side=correct_side, chosen_side=chosen_side, correct=int(correct_side == chosen_side),
            confidence=2, rt_ms=2500.0, instruction_ms="" if instruction_ms is None else instruction_ms,
            practice_rounds=practice_rounds, practice_flagged=practice_flagged, total_ms="" if total_ms is None else total_ms,
            window_width=window[0], window_height=window[1],
        )
        if small_window and index == practice + len(main) - 1:
            row.update(window_width=small_window[0], window_height=small_window[1])
        rows.append(row)
    return rows


@pytest.fixture()
def rscript() -> str:
    """Rscript's path; CI installs R (.ci/run), so there a missing R fails instead of skipping."""
    path = shutil.which("Rscript")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Rscript not found, but CI installs r-base-core and r-cran-lme4 (.ci/run)")
        pytest.skip("R is not installed (apt-get install r-base-core r-cran-lme4)")
    return path


@pytest.fixture()
def make_export():
    """make_export(dict(pid=..., **participant_rows options), ...): a raw export, all text as from CSV."""

    def build(*participants: dict) -> pd.DataFrame:
        rows = [row for spec in participants for row in participant_rows(**spec)]
        return pd.DataFrame(rows).astype(str)

    return build


@pytest.fixture(scope="session")
def small_model() -> GenerativeModel:
    return SMALL


@pytest.fixture(scope="session")
def small_export() -> pd.DataFrame:
    """48 participants x 36 main trials, no simulated misbehaviour."""
    return simulate_export(SMALL, n_participants=48, seed=11)
