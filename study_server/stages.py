"""The participant's stages as one ordered table, as oTree's page_sequence declares its pages.

Each stage names the page the server renders for it, the API endpoints a participant may
call from it, and the stages those calls may lead to. The database stores only the stage's
name: the template comes from this table, never from a stored value.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    template: str
    endpoints: tuple[str, ...]  # the API endpoints (blueprint.function) that act in this stage
    leads_to: tuple[str, ...]  # the stages those endpoints may move the participant to


STAGES: tuple[Stage, ...] = (
    Stage("consent", "consent.html", ("api.consent",), ("device", "returned")),
    Stage("device", "device.html", ("api.device", "api.device_give_up"), ("instructions", "returned")),
    Stage("instructions", "instructions.html", ("api.instructions",), ("trials",)),
    # a window made too small mid-study offers "I cannot enlarge my window / use a computer" too
    Stage("trials", "trials.html", ("api.trial", "api.answer", "api.trials_give_up"), ("comment", "returned")),
    Stage("comment", "comment.html", ("api.complete",), ("done",)),
    Stage("done", "done.html", (), ()),
    Stage("returned", "returned.html", (), ()),
)
BY_NAME = {stage.name: stage for stage in STAGES}
FIRST = STAGES[0].name


class StageError(Exception):
    """A move the stage table does not allow."""


def stage(name: str) -> Stage:
    """The stage called `name`; a stored value outside the table is an error, never a template."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise StageError(f"unknown participant stage {name!r}") from None


def check_move(current: str, to: str) -> None:
    if to not in stage(current).leads_to:
        raise StageError(f"no move from stage {current!r} to {to!r}")


def before(name: str) -> tuple[str, ...]:
    """The stages a participant passes through before `name`, in order."""
    names = [s.name for s in STAGES]
    return tuple(names[:names.index(name)])
