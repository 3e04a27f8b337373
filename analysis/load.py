"""Read and validate the response export (CSV file or database URL).

The export is the contract between ``study_server`` and ``analysis``
(docs/export.md): a long table, one row per answered trial (practice, main and
catch), with the per-participant session facts repeated on each of that
participant's rows. Its columns are defined once, in ``study_protocol.export``;
every check failure raises :class:`ExportError` naming the column.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from study_protocol.export import COLUMNS, PARTICIPANT_STATUSES, SIDES, TRIAL_KINDS

# column -> check (study_protocol.export.Column.check), in the contract's order
EXPORT_COLUMNS: dict[str, str] = {column.name: column.check for column in COLUMNS}
# what the analysis reads; the other columns are checked only when present
REQUIRED_COLUMNS = tuple(column.name for column in COLUMNS if column.required)
PER_PARTICIPANT_COLUMNS = tuple(column.name for column in COLUMNS if column.per_participant)


class ExportError(ValueError):
    """The export is missing a column or holds a malformed value."""


def load_design(responses: str | Path, path: str | Path | None = None) -> dict | None:
    """The study's design (study_protocol.export.STUDY_DESIGN_FILE): ``path``, else the one beside a
    CSV export; None when there is none (an export of the paper's four-condition study)."""
    import json

    from study_protocol.export import STUDY_DESIGN_FILE

    if path is None:
        if "://" in str(responses) or not (Path(responses).parent / STUDY_DESIGN_FILE).is_file():
            return None
        path = Path(responses).parent / STUDY_DESIGN_FILE
    try:
        design = json.loads(Path(path).read_text(encoding="utf-8"))
        conditions = design["conditions"]
        analysis = design.get("analysis", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: not a study design file ({exc})") from None
    if not isinstance(conditions, list) or not conditions or not isinstance(analysis, dict):
        raise ExportError(f"{path}: conditions must be a non-empty list and analysis a table")
    return design


def declared_analysis(design: dict | None) -> tuple[list[str] | None, str | None, list[str] | None]:
    """(study conditions, reference condition, contrasts) a design declares; Nones without one."""
    if design is None:
        return None, None, None
    declared = design.get("analysis", {})
    return (list(design["conditions"]), declared.get("reference_condition") or design["conditions"][0],
            list(declared.get("contrasts", [])) or None)


def load_export(source: str | Path, query: str | None = None) -> pd.DataFrame:
    """Load an export from a CSV path, or from a SQLAlchemy database URL with ``query`` selecting
    the export's rows; validated either way. A study database itself is read through the server's
    export: `maco-study analyze URL` composes the two."""
    text = str(source)
    if "://" not in text:
        path = Path(text)
        if not path.is_file():
            raise ExportError(f"export file not found: {path}")
        return validate_export(pd.read_csv(path, dtype=str, keep_default_na=False))
    if query is None:
        raise ExportError(f"{text}: the analysis reads exports; give a CSV file, a --query selecting the "
                          "export's rows, or run `maco-study analyze URL`, which exports the study first")
    from sqlalchemy import create_engine, text as sql

    engine = create_engine(text)
    try:
        with engine.connect() as connection:
            raw = pd.read_sql_query(sql(query), connection)
    finally:
        engine.dispose()
    return validate_export(raw.astype(object).where(raw.notna(), "").astype(str))


def _bad(column: str, mask: pd.Series, values: pd.Series, what: str) -> ExportError:
    rows = list(np.flatnonzero(mask.to_numpy())[:5])
    shown = ", ".join(f"row {r + 1}: {values.iloc[r]!r}" for r in rows)
    return ExportError(f"column {column!r}: {int(mask.sum())} value(s) {what} ({shown})")


def validate_export(raw: pd.DataFrame) -> pd.DataFrame:
    """Check the contract and return a typed copy, columns in the contract's order (extras kept, last)."""
    if len(raw) == 0:
        raise ExportError("the export has no rows (no answered trials)")
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise ExportError(
            f"missing column(s): {', '.join(missing)} (docs/export.md; the analysis needs "
            f"{', '.join(REQUIRED_COLUMNS)})"
        )
    ordered = [c for c in EXPORT_COLUMNS if c in raw.columns] + [c for c in raw.columns if c not in EXPORT_COLUMNS]
    df = raw[ordered].copy().reset_index(drop=True)
    for column, kind in EXPORT_COLUMNS.items():
        if column not in df.columns:
            continue
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        values = df[column]
        text = values.astype(str).str.strip()
        empty = text.eq("") | values.isna()
        if kind not in ("id", "text"):  # a condition may well be called "none"
            empty |= text.str.lower().isin(["nan", "null", "na"])
        if kind == "id":
            if empty.any():
                raise _bad(column, empty, values, "are empty")
            df[column] = text
        elif kind == "text":
            df[column] = text.where(~empty, "")
        elif kind in ("kind", "side", "status"):
            allowed = {"kind": TRIAL_KINDS, "side": SIDES, "status": PARTICIPANT_STATUSES}[kind]
            lowered = text.str.lower()
            wrong = ~lowered.isin(allowed)
            if wrong.any():
                raise _bad(column, wrong, values, f"are not one of {', '.join(allowed)}")
            df[column] = lowered
        else:
            number = pd.to_numeric(text.where(~empty, None), errors="coerce")
            malformed = number.isna() & ~empty
            if malformed.any():
                raise _bad(column, malformed, values, "are not numbers")
            if empty.any() and not optional:
                raise _bad(column, empty, values, "are empty")
            if kind in ("int", "binary"):
                fractional = number.notna() & (number != np.round(number))
                if fractional.any():
                    raise _bad(column, fractional, values, "are not whole numbers")
            if kind == "binary":
                wrong = number.notna() & ~number.isin([0, 1])
                if wrong.any():
                    raise _bad(column, wrong, values, "are not 0 or 1")
            negative = number < 0
            if negative.any():
                raise _bad(column, negative, values, "are negative")
            df[column] = number.astype("Int64") if kind in ("int", "binary") else number.astype(float)

    confidence = df["confidence"]
    wrong = ~confidence.isin([1, 2, 3])
    if wrong.any():
        raise _bad("confidence", wrong, raw["confidence"], "are not 1, 2 or 3")
    inconsistent = df["correct"].astype(int) != (df["chosen_side"] == df["correct_side"]).astype(int)
    if inconsistent.any():
        raise _bad("correct", inconsistent, raw["correct"], "disagree with chosen_side == correct_side")
    main = df["trial_kind"].eq("main")
    for column in ("network", "unit", "query_id"):
        empty = main & df[column].eq("")
        if empty.any():
            raise _bad(column, empty, raw[column], "are empty on main trials")
    _check_units_unique_per_network(df[main])
    duplicated = df.duplicated(["participant_id", "trial_index"], keep=False)
    if duplicated.any():
        raise _bad("trial_index", duplicated, raw["trial_index"], "repeat within a participant")
    _check_one_answer_per_query(df)
    for column in PER_PARTICIPANT_COLUMNS:
        distinct = df.groupby("participant_id")[column].nunique(dropna=False)
        varying = distinct[distinct > 1]
        if len(varying):
            raise ExportError(
                f"column {column!r} must be constant per participant; it varies for "
                f"{len(varying)} participant(s), e.g. {list(varying.index[:3])}"
            )
    return df


def _check_units_unique_per_network(main: pd.DataFrame) -> None:
    """A unit key names one unit of one network (``<network>:<class_index>``): a key under two networks
    (class numbers shared across networks) would merge different units into one random effect."""
    networks = main.groupby("unit")["network"].unique()
    shared = networks[networks.map(len) > 1]
    if len(shared):
        shown = "; ".join(f"{unit!r} in {', '.join(sorted(nets))}" for unit, nets in shared.head(5).items())
        raise ExportError(
            f"column 'unit': {len(shared)} unit key(s) appear under more than one network ({shown}); a unit key "
            "must name one unit of one network, as `<network>:<class_index>` does (docs/export.md), or units of "
            "different networks would be merged into one"
        )


def _check_one_answer_per_query(df: pd.DataFrame) -> None:
    """One answer per (participant_id, query_id) among main trials: a re-logged answer is not new evidence."""
    key = ["participant_id", "query_id", "trial_kind"]
    repeated = df["trial_kind"].eq("main") & df.duplicated(key, keep=False)
    if not repeated.any():
        return
    groups = df[repeated].groupby(key, sort=False).groups
    shown = "; ".join(
        f"{pid} {query} in rows {', '.join(str(i + 1) for i in index)}"
        for (pid, query, _), index in list(groups.items())[:5]
    )
    raise ExportError(
        f"column 'query_id': {len(groups)} main-trial query pair(s) answered more than once by one participant "
        f"({int(repeated.sum())} rows; the design allows one answer per participant and query): {shown}"
    )


def check_levels(rows: pd.DataFrame, column: str, expected: list[str], where: str) -> None:
    """Every expected level of ``column`` has rows, and no other level appears.

    A condition or network with no rows is an error, not a silent drop.
    """
    present = set(rows[column])
    empty = [level for level in expected if level not in present]
    if empty:
        raise ExportError(f"column {column!r}: no {where} for level(s) {', '.join(empty)}")
    unknown = sorted(present - set(expected))
    if unknown:
        raise ExportError(
            f"column {column!r}: level(s) {', '.join(unknown)} are not among the expected "
            f"{', '.join(expected)}"
        )


def check_study_conditions(df: pd.DataFrame, study_conditions: tuple[str, ...] | list[str]) -> None:
    """Every condition label of the export is one of the study's (the codebook's ``condition`` values).

    A relabelled group (``None`` for ``none``) would otherwise become a level of its own and silently
    halve the group a contrast compares.
    """
    labels = df.groupby("condition")["participant_id"].nunique()
    unknown = [label for label in labels.index if label not in study_conditions]
    if not unknown:
        return
    lowered = {c.lower(): c for c in study_conditions}

    def shown(label: str) -> str:
        hint = f", did you mean {lowered[label.lower()]!r}?" if label.lower() in lowered else ""
        count = int(labels[label])
        return f"{label!r} ({count} participant{'s' * (count > 1)}{hint})"

    raise ExportError(
        f"column 'condition': {', '.join(shown(label) for label in unknown)} not among the study's conditions "
        f"({', '.join(study_conditions)}; docs/export.md); correct the export, or name the conditions to "
        "analyse with --conditions"
    )
