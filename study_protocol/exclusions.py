"""Participant exclusion rules: the one home of their thresholds and of their wording.

Defaults (docs/analysis.md): catch trials at least 2/3 correct, at least 15 s on the
instructions, total time within bounds (the study's design gives no numbers; the defaults are 2 to 90
minutes), at least one answer on each side, practice passed (the server allows at most 3 rounds and
flags a participant still wrong in the last: the export's practice_flagged), every answer given in a
window of at least 940x600 CSS px (the trials' layout needs it: below, labels and buttons are cut
off); main trials faster than 200 ms dropped. analysis.exclusions
applies them to the export; the admin dashboard previews them per participant.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

REASONS = {
    "incomplete": "session not finished",
    "catch": "catch accuracy below {min_catch_accuracy}",
    "instructions": "instructions under {min_instruction_s:g} s",
    "total_time": "total time outside {min_total_s:g}-{max_total_s:g} s",
    "sides": "answers on one side only",
    "practice": "still wrong in the last practice round",
    "window": "answered in a window under {min_window_width}x{min_window_height}",
}
# "at least 2/3" must keep 4 of 6 despite floating point
CATCH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ExclusionRules:
    min_catch_accuracy: float = 2 / 3
    min_instruction_s: float = 15.0
    min_total_s: float = 120.0
    max_total_s: float = 5400.0
    require_both_sides: bool = True
    exclude_practice_flagged: bool = True  # practice_flagged: still wrong when the practice rounds ran out
    min_rt_ms: float = 200.0  # main trials answered faster are dropped (a trial rule: analysis.exclusions)
    # the smallest browser window (CSS px) a trial may be answered in: the server's MIN_WINDOW_WIDTH /
    # _HEIGHT default to these and refuse smaller; the rule catches data from a server set lower
    min_window_width: int = 940
    min_window_height: int = 600

    def reason(self, key: str) -> str:
        values = {**self.__dict__}
        values["min_catch_accuracy"] = str(Fraction(self.min_catch_accuracy).limit_denominator(20))
        return REASONS[key].format(**values)
