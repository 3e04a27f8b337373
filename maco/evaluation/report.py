"""The benchmark's outputs: CSV files, markdown tables shaped like the paper's, a contact sheet."""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from maco.evaluation.variants import ABLATION, TABLE1, VARIANTS, Variant
from maco.images import to_pil
from maco.optimize import Visualization
from maco.transparency import masked_image

TILE = 160  # contact-sheet tile side in px
GAP = 4  # grey between tiles, so that a masked image's white edge stays visible
LABEL_HEIGHT = 34
LABEL_WIDTH = 110
SHEET_GREY = (225, 225, 225)
NOT_SCORED_RANDOM = "n/a (random weights)"  # the cell of a metric whose networks have random weights


def write_csv(rows: Sequence[dict], path: Path) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _cell(value: float, digits: int | None = None) -> str:
    """``digits`` decimals, or 4 significant digits (distances span 0.1 to 1000s)."""
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.4g}" if digits is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown_tables(summary: Sequence[dict], variants: dict[str, Variant], classifiers: Sequence[str],
                    preamble: Sequence[str] = (), not_scored: dict[str, str] | None = None) -> str:
    """Table 1 (methods x networks per metric), Table 2 (logits and each classifier), Table 3 (ablation).

    ``preamble``: lines under the title (the weights, and a warning when they are random).
    ``not_scored``: metric ("fid", "transferability": its ``top1_`` columns too) -> the text of its cells.
    """
    by_key = {(s["network"], s["variant"]): s for s in summary}
    networks = list(dict.fromkeys(s["network"] for s in summary))
    # Table 1's methods, then any installed plugin's (a variant that is not the ablation's)
    methods = [name for name in TABLE1 if name in variants] + [
        name for name in variants if name not in TABLE1 and name not in VARIANTS]
    ablation = [name for name in ABLATION if name in variants]
    not_scored = not_scored or {}

    def cell(network: str, variant: str, metric: str, digits: int | None = None) -> str:
        reason = not_scored.get("transferability" if metric.startswith("top1_") else metric)
        return reason or _cell(by_key[(network, variant)].get(metric, math.nan), digits)

    lines = ["# Feature visualization benchmark (MACO paper, section 4)", "", *preamble, ""]
    if methods:
        lines += ["## Table 1: plausibility, FID and transferability", ""]
        rows = []
        for metric, title, digits in [("plausibility", "**Plausibility** (↓)", None), ("fid", "**FID** (↓)", None),
                                      ("transferability", "**Transferability** (↑, %)", 1)]:
            rows.append([title] + [""] * len(networks))
            rows += [[variants[m].label] + [cell(n, m, metric, digits) for n in networks] for m in methods]
        lines += _table(["", *networks], rows) + [""]
        lines += ["## Table 2: logit magnitude and top-1 (%) of each other classifier", ""]
        for network in networks:
            rows = [[variants[m].label, cell(network, m, "logit", 2)]
                    + [cell(network, m, f"top1_{c}", 1) for c in classifiers] for m in methods]
            lines += [f"**{network}**", ""] + _table(["", "logit (↑)", *classifiers], rows) + [""]
    if len(ablation) > 1:
        lines += ["## Table 3: ablation", ""]
        for network in networks:
            rows = [[variants[v].label] + [cell(network, v, k, d) for k, d in
                                           [("plausibility", None), ("fid", None), ("logit", 2), ("transferability", 1)]]
                    for v in ablation]
            header = ["", "Plausibility (↓)", "FID (↓)", "Logit magnitude (↑)", "Transferability (↑, %)"]
            lines += [f"**{network}**", ""] + _table(header, rows) + [""]
    return "\n".join(lines)


def _columns(visualizations: dict[str, list[Visualization]], variants: Sequence[Variant]):
    """One column per generated image set, plus its masked view when it has a transparency map."""
    columns, seen = [], set()
    for variant in variants:
        shown = visualizations[variant.name]
        if id(shown) in seen:
            continue
        seen.add(id(shown))
        # "MACO", not "- transparency"; a plugin's method is its own label
        label = next((v.label for v in VARIANTS.values() if v.generation == variant.generation), variant.label)
        columns.append((f"{label}\nimage", shown, lambda viz: viz.image))
        if shown and shown[0].transparency is not None:
            columns.append((f"{label}\nmasked", shown, lambda viz: masked_image(viz.image, viz.transparency)))
    return columns


def contact_sheet(visualizations: dict[str, list[Visualization]], variants: Sequence[Variant], title: str) -> Image.Image:
    """Every visualization of every variant: a row per unit and seed, image and masked columns."""
    columns = _columns(visualizations, variants)
    count = len(columns[0][1])
    step = TILE + GAP
    sheet = Image.new("RGB", (LABEL_WIDTH + step * len(columns), LABEL_HEIGHT * 2 + step * count), SHEET_GREY)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    draw.text((6, 6), title, fill="black", font=font)
    for c, (label, shown, picture) in enumerate(columns):
        x = LABEL_WIDTH + c * step
        draw.multiline_text((x + 4, LABEL_HEIGHT), label, fill="black", font=font)
        for r, viz in enumerate(shown):
            y = 2 * LABEL_HEIGHT + r * step
            sheet.paste(to_pil(picture(viz)).resize((TILE, TILE), Image.Resampling.LANCZOS), (x, y))
            if c == 0:
                draw.multiline_text((6, y + TILE // 2 - 12), f"unit {viz.unit}\nseed {viz.seed}", fill="black",
                                    font=font)
    return sheet
