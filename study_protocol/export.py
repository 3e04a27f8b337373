"""The export contract (study_server writes it, analysis reads it): responses.csv's columns.

COLUMNS is the one definition of the CSV header, of the analysis's checks, of the codebook
shipped beside every export and of docs/export.md (`maco-study export --codebook` writes it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PARTICIPANT_STATUSES = ("completed", "in_progress", "returned", "timed_out")
TRIAL_KINDS = ("practice", "main", "catch")
SIDES = ("left", "right")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as the codebook writes it: str, int, float, "... or empty"
    # what the analysis checks: "id" (non-empty text), "text", "int", "number", "binary" (0/1), or a
    # value set "status", "kind", "side"; a trailing "?" lets the value be empty
    check: str
    description: str
    required: bool = False  # the analysis needs it (the others are checked only when present)
    per_participant: bool = False  # the same on each of a participant's rows


COLUMNS: tuple[Column, ...] = (
    Column("participant_id", "str", "id", "pseudonymous participant id (e.g. `p-3f9a1c`), never the Prolific PID",
           required=True),
    Column("participant_status", "str", "status", "`completed`, `in_progress`, `returned` or `timed_out` "
           "(at export time)", required=True, per_participant=True),
    Column("condition", "str", "id", "between-subject condition: one the study config declares (listed "
           "below and in `study.json`); the paper's: `olah`, `maco_mask`, `maco` or `none`",
           required=True, per_participant=True),
    Column("network", "str", "text", "study network key from the manifest (`vgg16`, `resnet50`, `vit_b16`, ...)",
           required=True),
    Column("unit", "str", "text", "unit key unique across networks: `<network>:<class_index>` (e.g. `resnet50:417`)",
           required=True),
    Column("class_index", "int", "int?", "ImageNet class index of the unit (an output logit)"),
    Column("class_label", "str", "text", "human-readable class name"),
    Column("trial_kind", "str", "kind", "`practice`, `main` or `catch`", required=True),
    Column("practice_round", "int or empty", "int?", "1..3 for practice trials, empty otherwise"),
    Column("trial_index", "int", "int", "0-based position of the trial in the participant's whole sequence",
           required=True),
    Column("query_id", "str", "text", "manifest id of the query pair", required=True),
    Column("correct_side", "str", "side", "`left` or `right`: where the server put the image the unit favours "
           "(argmax)", required=True),
    Column("chosen_side", "str", "side", "`left` or `right`: the side the participant chose", required=True),
    Column("correct", "int", "binary", "1 if chosen_side == correct_side else 0", required=True),
    Column("confidence", "int", "int", "1 (unsure), 2 (sure), 3 (very sure)", required=True),
    Column("rt_ms", "float", "number", "reaction time in ms from all images decoded and on screen to the answer "
           "(browser clock)", required=True),
    Column("server_elapsed_ms", "float or empty", "number?", "ms from the server sending the trial (GET /api/trial) "
           "to the answer arriving (server clock); at least rt_ms - 250, as the server refuses an rt_ms longer "
           "by more than 250 ms of clock tolerance; empty for answers stored before it was recorded"),
    Column("shown_at", "str", "text", "ISO 8601 UTC time the trial was on screen (answered_at - rt_ms, server clock)"),
    Column("answered_at", "str", "text", "ISO 8601 UTC time the answer was stored (server clock)"),
    Column("window_width", "int", "int?", "browser window inner width in CSS px at the answer"),
    Column("window_height", "int", "int?", "browser window inner height in CSS px at the answer"),
    Column("device_pixel_ratio", "float", "number?", "window.devicePixelRatio at the answer"),
    Column("blur_count", "int", "int?", "times the window lost focus during this trial"),
    Column("fullscreen_exit_count", "int", "int?", "times the browser left full screen during this trial"),
    Column("webdriver", "int or empty", "binary?", "1 if the browser reported `navigator.webdriver` (set by "
           "automation tools, never by a person's browser) at the answer; empty for answers stored before it was "
           "recorded"),
    Column("answer_input", "str", "text", "`key` (a digit key) or `pointer` (a click or tap): what gave the answer; "
           "empty for answers stored before it was recorded"),
    Column("instruction_ms", "float", "number?", "per participant (repeated on each of their rows): time on the "
           "instructions page", required=True, per_participant=True),
    Column("practice_rounds", "int", "int?", "per participant: practice rounds used (1 to the bundle's "
           "`max_practice_rounds`, 3 by default)", required=True, per_participant=True),
    Column("practice_flagged", "int", "binary", "per participant: 1 if still wrong in the last practice round "
           "allowed (the server then moves on to the main trials), else 0; the analysis excludes these "
           "participants", required=True, per_participant=True),
    Column("total_ms", "float or empty", "number?", "per participant: /start to completion; empty if not completed",
           required=True, per_participant=True),
    Column("review", "str", "text", "per participant: why the session got the review completion code instead of "
           "the completion code, `;`-separated (`fast_answers`, `fast_session`, `clock_gap`, `webdriver`: "
           "docs/admin.md, \"Review submissions\"); empty if it got the completion code or is not completed",
           per_participant=True),
    Column("images_fetched", "int", "int?", "per participant: trial images the server sent (an answer counts only "
           "once its trial's images were sent)", per_participant=True),
)
COLUMN_NAMES = [column.name for column in COLUMNS]
PROLIFIC_COLUMNS = ("participant_id", "prolific_pid", "study_id", "session_id")


def codebook_markdown() -> str:
    """The codebook shipped beside responses.csv; docs/export.md is exactly this text."""
    lines = ["# responses.csv codebook", "",
             "The export contract between `study_server` (which writes it) and `analysis` (which reads it).",
             "Generated from `study_protocol/export.py` by `maco-study export --codebook docs/export.md`;",
             "`maco-study export` writes the same text as `codebook.md` beside every `responses.csv`.", "",
             "UTF-8, comma-separated, header row, one row per answered trial (practice, main and catch),",
             "columns in this order; preview participants are never included. Prolific ids go to a separate",
             f"`prolific_ids.csv` ({', '.join(PROLIFIC_COLUMNS)}).", "",
             "| column | type | meaning |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.type} | {c.description} |" for c in COLUMNS]
    return "\n".join(lines) + "\n"


# The study's design beside responses.csv: which conditions the study declared, how each one's
# references were made, and the analysis the study config declared (its [analysis] table). The
# export writes it from the bundle's manifest; the analysis reads its levels, reference level and
# default contrasts from it (docs/methods.md). An export without it is the paper's four-condition study.
STUDY_DESIGN_FILE = "study.json"


def study_design(manifest: dict[str, Any]) -> dict[str, Any]:
    """The design file's content from a manifest's JSON (older bundles: the paper's conditions)."""
    from .study import PAPER_CONDITIONS

    methods = manifest.get("condition_methods") or {
        c: {"method": PAPER_CONDITIONS[c][0], "settings": PAPER_CONDITIONS[c][1]} for c in manifest["conditions"]}
    return {"study": manifest["study"], "conditions": list(manifest["conditions"]), "condition_methods": methods,
            "analysis": dict(manifest.get("analysis") or {})}


def design_markdown(design: dict[str, Any]) -> str:
    """The codebook's section naming this study's conditions."""
    lines = ["", f"## The conditions of study `{design['study']}`", "",
             "| condition | method | settings |", "|---|---|---|"]
    for name in design["conditions"]:
        method = design["condition_methods"][name]
        settings = ", ".join(f"{k} = {v}" for k, v in sorted(method["settings"].items())) or "-"
        lines.append(f"| {name} | {method['method']} | {settings} |")
    analysis = design["analysis"]
    if analysis:
        lines += ["", f"Reference condition: `{analysis.get('reference_condition', design['conditions'][0])}`; "
                  f"declared contrasts: {', '.join(f'`{c}`' for c in analysis.get('contrasts', [])) or 'the default'}."]
    return "\n".join(lines) + "\n"
