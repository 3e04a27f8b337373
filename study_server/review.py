"""The stimulus review before launch: every trial of the bundle, grouped by unit, with filters.

A trial is a query pair seen in one condition: the unit's references in that condition (none in
`none`), the base image, the two occluded queries, which one the unit favours (the correct
answer) and the activations. Read from the manifest alone, so it works before anyone starts.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

from stimuli.manifest import Manifest, QueryPair, Unit

KINDS = ("practice", "main", "catch")
SORTS = {"": "bundle order", "difference": "smallest activation difference first"}
UNITS_PER_PAGE = 8
PAGE = re.compile(r"[0-9]{1,6}")  # ASCII digits only ("²".isdigit() is true), and few of them


class ReviewFilterError(ValueError):
    """A filter value the bundle does not have; the message names it."""


@dataclass(frozen=True)
class ReviewFilters:
    network: str = ""
    unit: str = ""
    kind: str = ""
    condition: str = ""
    sort: str = ""
    page: int = 1

    def query(self, **changes: str | int) -> dict[str, str | int]:
        """The URL arguments of these filters with `changes` (empty ones left out)."""
        values = {**self.__dict__, **changes}
        return {k: v for k, v in values.items() if v and not (k == "page" and v == 1)}


@dataclass(frozen=True)
class ReviewUnit:
    unit: Unit
    references: list[tuple[str, list[str]]]  # (condition, image ids) for each condition shown
    pairs: list[tuple[str, QueryPair]]  # (trial kind, pair)


def parse_filters(args: Mapping[str, str], manifest: Manifest) -> ReviewFilters:
    choices = {"network": [n.key for n in manifest.networks], "unit": [u.key for u in manifest.units],
               "kind": list(KINDS), "condition": manifest.conditions, "sort": [s for s in SORTS if s]}
    values = {}
    for name, allowed in choices.items():
        value = args.get(name, "")
        if value and value not in allowed:
            raise ReviewFilterError(f"unknown {name} {value!r}: the bundle has {', '.join(allowed)}")
        values[name] = value
    page = args.get("page", "1")
    if not PAGE.fullmatch(page) or int(page) < 1:
        raise ReviewFilterError(f"page must be a whole number from 1, not {page!r}")
    return ReviewFilters(**values, page=int(page))


def activation_difference(pair: QueryPair) -> float | None:
    """How much more the unit responds to the favoured query than to the other (None without the other's)."""
    return None if pair.activation_min is None else pair.activation_max - pair.activation_min


def _difference_key(pair: QueryPair) -> float:
    difference = activation_difference(pair)
    return math.inf if difference is None else difference


def review_units(manifest: Manifest, filters: ReviewFilters) -> list[ReviewUnit]:
    """Every unit with at least one pair passing the filters, in the manifest's order, or sorted
    by the activation difference (near-ties first: each unit's pairs, and the units by their
    smallest difference)."""
    conditions = [filters.condition] if filters.condition else manifest.conditions
    pairs_of: dict[str, list[tuple[str, QueryPair]]] = {}
    for kind, pair in manifest.all_query_pairs():
        if filters.kind in ("", kind):
            pairs_of.setdefault(pair.unit, []).append((kind, pair))
    units = [ReviewUnit(unit, [(c, manifest.reference_images(unit.key, c)) for c in conditions],
                        pairs_of[unit.key])
             for unit in manifest.units
             if unit.key in pairs_of and filters.network in ("", unit.network) and filters.unit in ("", unit.key)]
    if filters.sort == "difference":
        for unit in units:
            unit.pairs.sort(key=lambda kind_pair: _difference_key(kind_pair[1]))
        units.sort(key=lambda unit: _difference_key(unit.pairs[0][1]))
    return units


def page_of(units: list[ReviewUnit], page: int) -> list[ReviewUnit]:
    return units[(page - 1) * UNITS_PER_PAGE: page * UNITS_PER_PAGE]


def page_count(units: list[ReviewUnit]) -> int:
    return max(1, -(-len(units) // UNITS_PER_PAGE))
