"""The study's completion codes on Prolific: for each server config key holding a code, the code
type Prolific files it under, the actions Prolific takes when a participant enters it, and what
`reconcile` does with a submission that carries it.

The completion code is left for review on Prolific (MANUALLY_REVIEW) and approved by `reconcile`
once the server's record confirms it, so a shared or guessed code is never paid automatically;
PROLIFIC_AUTO_APPROVE=1 lets Prolific approve it on entry instead (docs/prolific.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import DEFAULTS

MANUALLY_REVIEW = {"action": "MANUALLY_REVIEW"}
AUTOMATICALLY_APPROVE = {"action": "AUTOMATICALLY_APPROVE"}

# what reconcile does with a submission awaiting review that carries the code
APPROVE = "approve"  # completed cleanly on the server, the completion code entered
REVIEW = "review"  # completed with the review code: the researcher decides, with the evidence
RETURN = "return"  # left with a no-consent / no-device code: Prolific asks for the return itself


@dataclass(frozen=True)
class OutcomeCode:
    code_type: str  # Prolific's completion code types
    actions: tuple[dict, ...]
    verdict: str


OUTCOME_CODES = {
    "COMPLETION_CODE": OutcomeCode("COMPLETED", (MANUALLY_REVIEW,), APPROVE),
    "REVIEW_CODE": OutcomeCode("OTHER", (MANUALLY_REVIEW,), REVIEW),
    "NOCONSENT_CODE": OutcomeCode("NO_CONSENT", ({"action": "REQUEST_RETURN",
                                                  "return_reason": "Did not consent to take part"},), RETURN),
    "NO_DEVICE_CODE": OutcomeCode("INCOMPATIBLE_DEVICE", ({"action": "REQUEST_RETURN", "return_reason":
                                                           "No computer with a large enough window"},), RETURN),
}


def configured_codes(cfg: dict) -> dict[str, str]:
    """The codes the server hands out, by config key (those the server's configuration has)."""
    return {key: str(cfg.get(key) or "") for key in OUTCOME_CODES if key in cfg}


def completion_codes(cfg: dict) -> list[dict]:
    """The draft study's `completion_codes`; ValueError (one line) for a missing or repeated code."""
    codes = configured_codes(cfg)
    missing = [key for key, code in codes.items() if not code or code == DEFAULTS[key]]  # a placeholder
    if missing:
        raise ValueError(f"set {', '.join('MACO_' + k for k in missing)}: Prolific needs a code for every outcome "
                         "(letters and digits, e.g. C1A2B3C4)")
    repeated = sorted({c for c in codes.values() if list(codes.values()).count(c) > 1})
    if repeated:
        raise ValueError(f"the code {repeated[0]!r} is used for more than one outcome: each needs its own")
    entries = []
    for key, code in codes.items():
        outcome = OUTCOME_CODES[key]
        actions = outcome.actions
        if key == "COMPLETION_CODE" and cfg.get("PROLIFIC_AUTO_APPROVE"):
            actions = (AUTOMATICALLY_APPROVE,)
        entries.append({"code": code, "code_type": outcome.code_type, "actions": list(actions),
                        "actor": "participant"})
    return entries
