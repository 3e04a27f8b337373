"""The quality gate: do a unit's reference visualizations drive that unit?

Per reference run (build stage 2) and unit: the objective the optimisation
reached, and the mean logits of the network's study units over fixed views
of the image, the views the method optimised (MACO: seeded random crops;
Olah: the whole image). At finalize, per unit and condition: the objective
averaged over seeds, and the rank of the unit's own logit among the
network's study units on its references, averaged over seeds (1: its own is
the highest). A unit passes at rank 1; ``stimuli check`` warns about the
others, so a researcher can swap them before paying participants.
"""
from __future__ import annotations

import statistics
from typing import Any

import torch

from maco.transforms import crop_and_resize, maco_crop_boxes, whole_image_boxes

from .models import StudyModel

MACO_VIEWS = 16  # seeded random crops per MACO image, drawn as MACO draws its own


def view_logits(model: StudyModel, image: torch.Tensor, method: str, units: tuple[int, ...]) -> list[float]:
    """Mean logits of ``units`` over the method's views of one (3, S, S) image in [0, 1]."""
    size = image.shape[-1]
    if method == "maco":
        boxes = maco_crop_boxes(1, MACO_VIEWS, size, size, torch.Generator().manual_seed(0))
    else:
        boxes = whole_image_boxes(1, size, size, "cpu")
    views = crop_and_resize(image.unsqueeze(0).float().cpu(), boxes, model.input_size)
    return model.logits(views).mean(0)[list(units)].tolist()


def unit_record(model: StudyModel, visualization: Any, method: str, units: tuple[int, ...]) -> dict[str, Any]:
    """What a reference piece stores per unit for the gate."""
    return {"objective": visualization.objective,
            "logits": view_logits(model, visualization.image, method, units)}


def summarize(records: dict[tuple[str, int, str], list[dict[str, Any]]], study_units: dict[str, tuple[int, ...]],
              conditions: dict[str, str]) -> list[dict[str, Any]]:
    """Per (network, unit, condition): mean objective, own-logit rank among the study units, pass/fail,
    and the margin: the own logit minus the next study unit's (None with one unit), how clearly the
    references drive their unit (the instructions' example is the clearest: study_server/plan.py).

    ``records[(network, unit, run)]`` holds one ``unit_record`` per seed; ``conditions`` maps each
    condition showing reference runs to its run.
    """
    rows = []
    for (network, unit, method), runs in sorted(records.items()):
        own = study_units[network].index(unit)
        logits = torch.tensor([run["logits"] for run in runs]).mean(0)
        rank = 1 + int((logits > logits[own]).sum())
        others = torch.cat([logits[:own], logits[own + 1:]])
        margin = round(float(logits[own] - others.max()), 4) if len(others) else None
        for condition, run in conditions.items():
            if run == method:
                rows.append({"unit": f"{network}:{unit}", "condition": condition, "seeds": len(runs),
                             "objective": _mean_objective(runs),
                             "own_logit_rank": rank, "units_compared": len(logits), "margin": margin,
                             "passed": rank == 1})
    return rows


def _mean_objective(runs: list[dict[str, Any]]) -> float | None:
    """None for a plugin method that reports no objective."""
    values = [run["objective"] for run in runs if run["objective"] is not None]
    return round(statistics.mean(values), 4) if values else None


def warnings(provenance: dict[str, Any]) -> list[str]:
    """One line per failing unit and condition, or one line saying the bundle has no gate record."""
    if "quality" not in provenance:
        return ["no quality record: the bundle was built before the quality gate; rebuild to check the references"]
    return [f"unit {row['unit']} ({row['condition']}): its own logit ranks {row['own_logit_rank']} of "
            f"{row['units_compared']} study units on its references (objective {row['objective'] or 0:.3g}, "
            f"{row['seeds']} seeds); consider swapping the unit"
            for row in provenance["quality"] if not row["passed"]]
