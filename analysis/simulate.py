"""Synthetic participants drawn from a model with known effects.

One generative model, two users: :func:`simulate_export` writes a table with
the columns of a real export (for tests, power and benchmarks), and the demo's
driver (``maco-study demo --simulate``) asks :func:`draw_participants`,
:func:`unit_effect` and :func:`answer` how each synthetic participant answers
the trials a real server hands out.

Responses follow ``logit P(correct) = intercept + condition effect + network
effect + participant effect + unit effect`` with normal random effects, plus
behaviour the exclusions should catch: inattentive participants answer at
chance (and so fail catch trials), some press one side only, some rush the
instructions, some leave before the end (their ``total_ms`` stays empty).
"""
from __future__ import annotations

from study_protocol.study import REFERENCE_NETWORK

import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from analysis.load import EXPORT_COLUMNS


@dataclass
class GenerativeModel:
    """Effects on the log-odds of a correct choice, relative to ``olah`` and ``resnet50``.

    The levels of the study are the keys of ``condition_effects`` and
    ``network_effects``; the default numbers are illustrative, not the paper's.
    """

    intercept: float = 0.8
    condition_effects: dict[str, float] = field(
        default_factory=lambda: {"olah": 0.0, "maco_mask": 0.4, "maco": 0.5, "none": -0.4}
    )
    network_effects: dict[str, float] = field(
        default_factory=lambda: {"resnet50": 0.0, "vgg16": 0.2, "vit_b16": -0.3}
    )
    participant_sd: float = 0.5
    participant_network_sd: float = 0.0  # SD of a participant's own shift per network (a random slope)
    unit_sd: float = 0.4
    units_per_network: int = 10
    main_trials_per_network: int = 18
    catch_trials: int = 6
    practice_trials: int = 2
    catch_accuracy: float = 0.97  # of attentive participants
    p_inattentive: float = 0.04  # answer everything at chance
    p_one_sided: float = 0.02  # always press the same side
    p_rushed_instructions: float = 0.03  # 3 to 12 s on the instructions
    p_dropout: float = 0.05  # leave before the end
    rt_median_ms: float = 3000.0
    participant_rt_sd: float = 0.3  # SD of a participant's log-RT shift (some are faster throughout)
    unit_rt_sd: float = 0.15  # SD of a unit's log-RT shift (some query pairs take longer)
    participant_confidence_sd: float = 0.8  # SD of a participant's shift toward higher ratings (cumulative logit)

    @property
    def conditions(self) -> list[str]:
        return list(self.condition_effects)

    @property
    def networks(self) -> list[str]:
        return list(self.network_effects)

    def with_effect(self, condition: str, value: float) -> "GenerativeModel":
        return replace(self, condition_effects={**self.condition_effects, condition: value})

    def true_coefficients(self, ref_condition: str = "olah", ref_network: str = REFERENCE_NETWORK) -> dict[str, float]:
        """The fixed effects a correct fit estimates, named as in ``analysis.models``."""
        c0 = self.condition_effects[ref_condition]
        n0 = self.network_effects[ref_network]
        coefficients = {"(Intercept)": self.intercept + c0 + n0}
        coefficients.update(
            {f"condition[{c}]": v - c0 for c, v in self.condition_effects.items() if c != ref_condition}
        )
        coefficients.update(
            {f"network[{n}]": v - n0 for n, v in self.network_effects.items() if n != ref_network}
        )
        return coefficients


@dataclass
class SimulatedParticipant:
    participant_id: str
    condition: str
    ability: float  # the participant's random intercept
    attentive: bool
    one_side: str | None  # "left"/"right" for a participant who always presses it
    rushed: bool
    drops_after: int | None  # answered trials (practice included) before leaving
    instruction_ms: float
    practice_rounds: int
    practice_flagged: bool = False  # still wrong in the last round (the server's practice_flagged)
    speed: float = 0.0  # log-RT shift: negative = faster throughout
    network_shifts: dict[str, float] = field(default_factory=dict)  # log-odds shift per network (a random slope)
    confidence_bias: float = 0.0  # cumulative-logit shift toward higher confidence ratings


def draw_participants(
    model: GenerativeModel, n: int, rng: np.random.Generator, prefix: str = "sim"
) -> list[SimulatedParticipant]:
    """``n`` participants, conditions balanced in a shuffled round robin."""
    conditions = model.conditions
    order: list[str] = []
    while len(order) < n:
        order.extend(rng.permutation(conditions).tolist())
    participants = []
    # from a child stream, so that the draws of everything else stay those of earlier versions
    child = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
    speeds = child.normal(0.0, model.participant_rt_sd, n)
    shifts = child.normal(0.0, model.participant_network_sd, (n, len(model.networks)))
    biases = child.normal(0.0, model.participant_confidence_sd, n)
    n_trials = model.practice_trials + len(model.networks) * model.main_trials_per_network + model.catch_trials
    for i, condition in enumerate(order[:n]):
        attentive = rng.random() >= model.p_inattentive
        one_side = str(rng.choice(["left", "right"])) if rng.random() < model.p_one_sided else None
        rushed = rng.random() < model.p_rushed_instructions
        drops_after = int(rng.integers(1, n_trials)) if rng.random() < model.p_dropout else None
        instruction_ms = (
            rng.uniform(3_000, 12_000) if rushed else float(np.exp(rng.normal(np.log(40_000), 0.4)))
        )
        rounds = int(rng.choice([1, 2, 3], p=[0.8, 0.15, 0.05] if attentive else [1 / 3] * 3))
        flagged = not attentive and rounds == 3  # at chance, the last round failed too
        participants.append(
            SimulatedParticipant(
                participant_id=f"{prefix}{i:05d}",
                condition=condition,
                ability=float(rng.normal(0.0, model.participant_sd)),
                attentive=attentive,
                one_side=one_side,
                rushed=rushed,
                drops_after=drops_after,
                instruction_ms=round(instruction_ms),
                practice_rounds=rounds,
                practice_flagged=flagged,
                speed=float(speeds[i]),
                network_shifts=dict(zip(model.networks, shifts[i].tolist())),
                confidence_bias=float(biases[i]),
            )
        )
    return participants


def unit_effect(model: GenerativeModel, seed: int, network: str, unit: str) -> float:
    """The random effect of a unit: fixed by (seed, network, unit), in any call order."""
    key = zlib.crc32(f"{network}\x00{unit}".encode())
    return float(np.random.default_rng([seed, key]).normal(0.0, model.unit_sd))


def unit_rt_effect(model: GenerativeModel, seed: int, network: str, unit: str) -> float:
    """The log-RT shift of a unit: fixed by (seed, network, unit), in any call order."""
    key = zlib.crc32(f"{network}\x00{unit}".encode())
    return float(np.random.default_rng([seed, key, 1]).normal(0.0, model.unit_rt_sd))


def p_correct(
    model: GenerativeModel, participant: SimulatedParticipant, trial_kind: str, network: str, unit_re: float
) -> float:
    if not participant.attentive:
        return 0.5
    if trial_kind != "main":
        return model.catch_accuracy
    eta = (
        model.intercept
        + model.condition_effects[participant.condition]
        + model.network_effects[network]
        + participant.ability
        + participant.network_shifts.get(network, 0.0)
        + unit_re
    )
    return float(1.0 / (1.0 + np.exp(-eta)))


def answer(
    model: GenerativeModel,
    participant: SimulatedParticipant,
    trial_kind: str,
    network: str,
    unit_re: float,
    correct_side: str,
    rng: np.random.Generator,
    unit_rt: float = 0.0,
) -> dict:
    """How the participant answers one trial: side, confidence (1-3) and reaction time (log-normal around
    the model's median, shifted by the participant's ``speed`` and the unit's ``unit_rt``)."""
    other = "left" if correct_side == "right" else "right"
    if participant.one_side is not None:
        chosen = participant.one_side
    else:
        chosen = correct_side if rng.random() < p_correct(model, participant, trial_kind, network, unit_re) else other
    correct = chosen == correct_side
    confidence = int(rng.choice([1, 2, 3], p=confidence_probabilities(correct, participant.confidence_bias)))
    fast = participant.one_side is not None or not participant.attentive
    median = model.rt_median_ms * (0.4 if fast else 1.0) * np.exp(participant.speed + unit_rt)
    rt_ms = float(np.exp(rng.normal(np.log(median), 0.4)))
    return {"chosen_side": chosen, "correct": int(correct), "confidence": confidence, "rt_ms": round(rt_ms)}


CONFIDENCE_THRESHOLDS = (-0.79, 0.79)  # with eta = +-0.59: ratings 1-3 of 20/35/45% when correct, reversed when wrong


def confidence_probabilities(correct: bool, bias: float) -> np.ndarray:
    """P(rating 1, 2, 3) of a cumulative-logit model: logit P(rating <= j) = threshold_j - eta."""
    eta = (0.59 if correct else -0.59) + bias
    cumulative = 1.0 / (1.0 + np.exp(-(np.array(CONFIDENCE_THRESHOLDS) - eta)))
    return np.diff(np.r_[0.0, cumulative, 1.0])


def unit_keys(model: GenerativeModel, network: str) -> list[tuple[str, int]]:
    """The simulated units of a network: (unit key ``<network>:<class_index>``, class index)."""
    offset = zlib.crc32(network.encode()) % 1000
    classes = [(offset + 97 * k) % 1000 for k in range(model.units_per_network)]
    return [(f"{network}:{c}", c) for c in classes]


def _trial_plan(model: GenerativeModel, rng: np.random.Generator) -> list[tuple[str, str, str, int | None, str]]:
    """(trial_kind, network, unit, class_index, query_id) of the main and catch trials, interleaved at random.

    A unit seen again shows its next query pair: one answer per participant and query, as the server serves.
    """
    trials: list[tuple[str, str, str, int | None, str]] = []
    for network in model.networks:
        units = unit_keys(model, network)
        order = rng.permutation(len(units))
        for k in range(model.main_trials_per_network):
            unit, class_index = units[order[k % len(units)]]
            trials.append(("main", network, unit, class_index, f"{unit}/q{k // len(units)}"))
    trials += [("catch", "", "", None, "")] * model.catch_trials
    return [trials[i] for i in rng.permutation(len(trials))]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def simulate_export(
    model: GenerativeModel | None = None, n_participants: int = 200, seed: int = 0
) -> pd.DataFrame:
    """A synthetic export with every column of docs/export.md (``load.EXPORT_COLUMNS``)."""
    model = model or GenerativeModel()
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rows = []
    for number, participant in enumerate(draw_participants(model, n_participants, rng)):
        clock = start + timedelta(minutes=3 * number)
        elapsed = 60_000.0 + participant.instruction_ms  # consent, device check, instructions
        plan = []
        for round_ in range(1, participant.practice_rounds + 1):
            plan += [("practice", "", "", None, "", round_)] * model.practice_trials
        plan += [(*trial, None) for trial in _trial_plan(model, rng)]
        stop = participant.drops_after if participant.drops_after is not None else len(plan)
        finished = participant.drops_after is None
        answered: list[dict] = []
        for index, (kind, network, unit, class_index, query_id, round_) in enumerate(plan[:stop]):
            correct_side = "left" if rng.random() < 0.5 else "right"
            unit_re = unit_effect(model, seed, network, unit) if kind == "main" else 0.0
            unit_rt = unit_rt_effect(model, seed, network, unit) if kind == "main" else 0.0
            reply = answer(model, participant, kind, network, unit_re, correct_side, rng, unit_rt)
            if kind == "practice":  # every round but the last (and a flagged one's last) had a mistake: its first trial
                first_of_round = index % model.practice_trials == 0
                wrong = (round_ < participant.practice_rounds or participant.practice_flagged) and first_of_round
                reply["chosen_side"] = ("right" if correct_side == "left" else "left") if wrong else correct_side
                reply["correct"] = int(not wrong)
            elapsed += 1_500.0  # loading the trial's images
            shown = clock + timedelta(milliseconds=elapsed)
            elapsed += reply["rt_ms"]
            answered.append(
                {
                    "participant_id": participant.participant_id,
                    "participant_status": "completed" if finished else "returned",
                    "condition": participant.condition,
                    "network": network,
                    "unit": unit,
                    "class_index": class_index,
                    "class_label": f"class {class_index}" if class_index is not None else "",
                    "trial_kind": kind,
                    "practice_round": round_,
                    "trial_index": index,
                    "query_id": query_id or f"{kind}-{index}",
                    "correct_side": correct_side,
                    **reply,
                    "shown_at": _iso(shown),
                    "answered_at": _iso(shown + timedelta(milliseconds=reply["rt_ms"])),
                    "window_width": 1280,
                    "window_height": 800,
                    "device_pixel_ratio": 1.0,
                    "blur_count": 0,
                    "fullscreen_exit_count": 0,
                    "instruction_ms": participant.instruction_ms,
                    "practice_rounds": participant.practice_rounds,
                    "practice_flagged": int(participant.practice_flagged),
                }
            )
        for row in answered:
            row["total_ms"] = round(elapsed + 30_000.0) if finished else np.nan
        rows += answered
    return pd.DataFrame(rows, columns=list(EXPORT_COLUMNS)).astype(
        {"class_index": "Int64", "practice_round": "Int64"}
    )
