"""Planned contrasts, declared before the fit and never inferred from the data.

A contrast compares two levels of one factor (``condition: maco vs olah``)
and belongs to one multiplicity family: the contrasts of a family share one
Holm correction. The paper's contrasts have names (:data:`CATALOGUE`); a
study declares the ones it tests in its study config's ``[analysis] contrasts`` (carried by the
bundle and the export's ``study.json``) or with ``--contrast``, by name or as
``factor: level vs versus``, each optionally prefixed by ``family =``. With
no declaration the study tests :func:`default_contrasts` of its declared conditions: the whole
:data:`PAPER_SET` for the paper's four.

Every declared level must be a level of the data: a missing one is an error
listing the levels found (and the catalogue contrasts the data can support),
never a silently shorter family.
"""
from __future__ import annotations

from study_protocol.study import TRANSFORMER_NETWORK

from dataclasses import dataclass

FACTORS = ("condition", "network")
# the default families: one per factor, as the paper tests them
DEFAULT_FAMILY = {"condition": "conditions", "network": "networks"}
FAMILY_REASON = (
    "Condition contrasts and network contrasts are Holm-corrected separately, as the paper tests them: they "
    "answer two different questions (does a visualization method help participants? does the network "
    "matter?), each with its own claims, so a test in one family does not spend the error rate of the other."
)
PAPER_SET = ("maco_vs_olah", "olah_vs_none", "mask_vs_no_mask", "vit_vs_cnns")


class ContrastError(ValueError):
    """A declared contrast is malformed or needs a level the data does not have."""


@dataclass(frozen=True)
class Contrast:
    label: str
    factor: str  # "condition" or "network"
    level: str
    versus: str
    family: str  # the contrasts of one family share one Holm correction
    name: str = ""  # the catalogue name it came from, if any


# name -> (factor, level, versus, label); vit_vs_cnns expands per network (see catalogue_contrasts)
CATALOGUE = {
    "maco_vs_olah": ("condition", "maco", "olah", "MACO vs Olah"),
    "olah_vs_none": ("condition", "olah", "none", "Olah vs none"),
    "mask_vs_no_mask": ("condition", "maco_mask", "maco", "MACO with mask vs without"),
    "vit_vs_cnns": ("network", "{vit}", "each other network", "{vit} vs each other network"),
}


def catalogue_contrasts(name: str, networks: list[str], vit: str, family: str | None = None) -> list[Contrast]:
    """The contrasts a catalogue name stands for; ``vit_vs_cnns``: ``vit`` against every other network."""
    if name not in CATALOGUE:
        raise ContrastError(
            f"unknown contrast {name!r}: use one of {', '.join(CATALOGUE)} or declare "
            "'factor: level vs versus' (e.g. 'condition: maco vs olah')"
        )
    factor, level, versus, label = CATALOGUE[name]
    family = family or DEFAULT_FAMILY[factor]
    if name == "vit_vs_cnns":
        return [Contrast(f"{vit} vs {n}", factor, vit, n, family, name) for n in networks if n != vit]
    return [Contrast(label, factor, level, versus, family, name)]


def parse_contrast(text: str, networks: list[str], vit: str) -> list[Contrast]:
    """``[family =] name`` or ``[family =] factor: level vs versus``."""
    family, _, body = text.rpartition("=")
    family, body = family.strip() or None, body.strip()
    if ":" not in body:
        return catalogue_contrasts(body, networks, vit, family)
    factor, _, levels = (part.strip() for part in body.partition(":"))
    if factor not in FACTORS:
        raise ContrastError(f"contrast {text!r}: the factor must be one of {', '.join(FACTORS)}, not {factor!r}")
    level, sep, versus = (part.strip() for part in levels.partition(" vs "))
    if not sep or not level or not versus or level == versus:
        raise ContrastError(f"contrast {text!r}: write two different levels as 'level vs versus'")
    return [Contrast(f"{level} vs {versus}", factor, level, versus, family or DEFAULT_FAMILY[factor])]


def default_contrasts(conditions: list[str], reference: str) -> list[str]:
    """The contrasts a study tests when it declares none: the paper's named ones its conditions
    support, then each other declared condition against the reference (family ``conditions``)."""
    paper = [name for name in PAPER_SET if CATALOGUE[name][0] != "condition"
             or {CATALOGUE[name][1], CATALOGUE[name][2]} <= set(conditions)]
    covered = {level for name in paper if CATALOGUE[name][0] == "condition" for level in CATALOGUE[name][1:3]}
    return [name for name in paper if CATALOGUE[name][0] == "condition"] + [
        f"condition: {c} vs {reference}" for c in conditions if c not in covered and c != reference] + [
        name for name in paper if CATALOGUE[name][0] != "condition"]


def declare_contrasts(texts: list[str] | None, networks: list[str], vit: str = TRANSFORMER_NETWORK) -> list[Contrast]:
    """The contrasts of ``--contrast`` declarations, or the whole paper set when there are none."""
    contrasts = []
    for text in texts or PAPER_SET:
        parsed = parse_contrast(text, networks, vit)
        if not parsed:
            raise ContrastError(
                f"contrast {text!r} needs a network besides {vit} (networks found: {', '.join(networks)})"
            )
        contrasts += parsed
    # the same two levels twice (in either order) would be one test counted twice in its family
    keys = [(c.factor, frozenset((c.level, c.versus))) for c in contrasts]
    labels = [c.label for c in contrasts]
    repeated = [c.label for i, c in enumerate(contrasts) if keys.index(keys[i]) != i or labels.index(c.label) != i]
    if repeated:
        raise ContrastError(f"contrast(s) declared twice: {', '.join(repeated)}")
    return contrasts


def check_contrasts(contrasts: list[Contrast], levels: dict[str, list[str]], vit: str = TRANSFORMER_NETWORK) -> None:
    """Every level a contrast names is present; otherwise one error listing what the data has."""
    needed: dict[tuple[str, str], list[str]] = {}  # (factor, missing level) -> contrasts needing it
    for c in contrasts:
        for level in (c.level, c.versus):
            if level not in levels[c.factor]:
                needed.setdefault((c.factor, level), []).append(repr(c.label))
    if not needed:
        return
    missing = "; ".join(
        f"{factor} {level!r} (needed by {', '.join(labels)})" for (factor, level), labels in needed.items()
    )
    found = "; ".join(f"{factor}s found: {', '.join(values)}" for factor, values in levels.items())
    possible = []
    for name in CATALOGUE:
        expanded = catalogue_contrasts(name, levels["network"], vit)
        if expanded and all({c.level, c.versus} <= set(levels[c.factor]) for c in expanded):
            possible.append(name)
    hint = " ".join(f"--contrast {name}" for name in possible) or "--contrast 'condition: LEVEL vs LEVEL'"
    if ("network", vit) in needed:
        hint += f", or name the study's ViT with --vit (now {vit})"
    raise ContrastError(
        f"missing level(s) for the declared contrasts: {missing} ({found}). "
        f"Declare the contrasts this study tests, e.g. {hint}"
    )
