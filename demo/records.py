"""What the simulate driver writes: every acknowledged answer and one row per participant."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.simulate import SimulatedParticipant


ANSWER_COLUMNS = ["prolific_pid", "answer_id", "trial_index", "trial_kind", "practice_round", "network",
                  "unit", "query_id", "correct_side", "chosen_side", "correct", "confidence", "rt_ms"]
PARTICIPANT_COLUMNS = ["prolific_pid", "condition", "outcome", "answers", "reloads", "planned_practice_rounds",
                       "attentive", "one_side", "rushed", "drops_after", "error"]


@dataclass
class ParticipantRecord:
    prolific_pid: str
    simulated: SimulatedParticipant
    condition: str = ""
    outcome: str = "started"  # completed, dropped, failed
    reloads: int = 0
    error: str = ""
    answers: list[dict[str, Any]] = field(default_factory=list)  # acknowledged by the server

    def row(self) -> dict[str, Any]:
        s = self.simulated
        return {"prolific_pid": self.prolific_pid, "condition": self.condition, "outcome": self.outcome,
                "answers": len(self.answers), "reloads": self.reloads,
                "planned_practice_rounds": s.practice_rounds, "attentive": int(s.attentive),
                "one_side": s.one_side or "", "rushed": int(s.rushed),
                "drops_after": "" if s.drops_after is None else s.drops_after, "error": self.error}


@dataclass
class SimulationResult:
    participants: list[ParticipantRecord]
    wall_s: float

    @property
    def answers(self) -> list[dict[str, Any]]:
        return [a for p in self.participants for a in p.answers]

    def count(self, outcome: str) -> int:
        return sum(p.outcome == outcome for p in self.participants)

    def summary(self) -> str:
        return (f"{len(self.participants)} simulated participants in {self.wall_s:.1f} s: "
                f"{self.count('completed')} completed, {self.count('dropped')} dropped out, "
                f"{self.count('failed')} failed; {len(self.answers)} answers acknowledged, "
                f"{sum(p.reloads for p in self.participants)} reloads")

    def write(self, folder: Path) -> tuple[Path, Path]:
        """answers.csv (every acknowledged answer) and participants.csv into folder."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = folder / "answers.csv", folder / "participants.csv"
        for path, columns, rows in ((paths[0], ANSWER_COLUMNS, self.answers),
                                    (paths[1], PARTICIPANT_COLUMNS, [p.row() for p in self.participants])):
            with path.open("w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
        return paths
