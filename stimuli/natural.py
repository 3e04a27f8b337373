"""Natural exemplars: a unit's most activating pool photos, the field's baseline condition.

As Zimmermann et al. (2021) and Borowski et al. (2021) show them: the unit's top photos of the
natural-image pool, whole (the same preprocessing as the query photos: the network's resize and
centre crop, docs/stimuli.md "Natural exemplars"), as many as the synthetic conditions show
(``references.per_trial``), maximally activating only (the MACO paper's trials show no minimally
activating references for any condition). A photo that any trial of the study may show
(the top ``query.top_k`` of every unit of every network: main, practice and catch trials and
their distractors) is never a natural reference, so no reference gives away a query's answer.
"""
from __future__ import annotations

from .config import StimuliError
from .pool import TopK


def natural_exemplars(topk: TopK, network: str, units: tuple[int, ...], excluded: set[int],
                      count: int) -> dict[int, list[tuple[int, float]]]:
    """Per unit, its ``count`` most activating pool images outside ``excluded`` (pool indices), as
    (pool index, activation), most activating first (ties: the smaller index, as the pool pass)."""
    chosen = {}
    for row, unit in enumerate(units):
        kept = [(int(i), float(v)) for v, i in zip(topk.values[row], topk.indices[row]) if int(i) not in excluded]
        if len(kept) < count:
            raise StimuliError(f"natural: unit {network}:{unit} has {len(kept)} pool images outside the "
                               f"photos the trials show, needs references.per_trial = {count}; use a larger pool")
        chosen[unit] = kept[:count]
    return chosen
