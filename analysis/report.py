"""The report folder: CSV tables, figures, report.md and report.html from one list of blocks."""
from __future__ import annotations

import hashlib
import html
import platform
import re
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.exclusions import REASONS
from analysis.figures import plot_accuracy, plot_log_odds
from analysis.pipeline import Analysis

# a block: ("h1"|"h2"|"p", text) | ("list", [text]) | ("table", DataFrame) | ("img", file name, alt)
Block = tuple


def software_versions(engine_versions: dict[str, str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("maco-study", "numpy", "pandas", "scipy", "matplotlib", "mixedlm"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    versions.update(engine_versions)
    return versions


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.3f}"
    return str(value)


def render_markdown(blocks: list[Block]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            table = block[1]
            lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
            lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def render_html(blocks: list[Block], title: str) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{_inline_html(block[1])}</{kind}>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            table = block[1]
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                for row in table.itertuples(index=False)
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            body.append(f'<img src="{html.escape(block[1])}" alt="{html.escape(block[2])}">')
    style = (
        "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}"
        "td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}"
        "code{background:#f3f3f3}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def report_blocks(
    analysis: Analysis, source: str, source_sha256: str | None, n_rows: int, notice: str | None = None
) -> list[Block]:
    fit = analysis.fit
    rules = analysis.rules
    spec = fit.spec
    included = int((~analysis.participants["excluded"]).sum())
    origin = f"`{source}`" + (f" (sha256 {source_sha256[:16]}...)" if source_sha256 else "")
    fixed = fit.fixed_effects()
    contrasts = analysis.contrasts
    convergence = "yes" if fit.converged else "NO"
    if fit.singular:
        convergence += "; singular fit (a random-effect SD is near zero)"
    blocks: list[Block] = [
        ("h1", "MACO study: analysis report"),
        *([("p", notice)] if notice else []),  # e.g. the demo's "random weights, simulated data"
        ("p", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {origin}: "
              f"{n_rows} answered trials from {len(analysis.participants)} participants."),
        ("h2", "Exclusions"),
        ("list", [rules.reason(key) for key in REASONS if key != "sides" or rules.require_both_sides]),
        ("p", f"{len(analysis.participants) - included} participants excluded, {included} included; "
              "a participant may fail several rules. Practice and catch trials never enter the model. "
              "Who was excluded and why: `exclusions.csv`."),
        ("table", analysis.exclusions),
        ("h2", "Accuracy"),
        ("p", "Main trials of included participants: mean of participants' accuracies per cell, ± 2 SEM "
              "across participants (`descriptives.csv`; per participant: `participants.csv`)."),
        ("table", analysis.descriptives[["condition", "network", "n_participants", "n_trials", "accuracy",
                                        "sem", "lower_2sem", "upper_2sem"]]),
        ("img", "accuracy.png", "accuracy per condition and network"),
        ("h2", "Logistic mixed model"),
        ("p", f"`{spec.formula}`, binomial logit, Laplace approximation (as lme4's `glmer`); "
              f"unit = network and class (`<network>:<class_index>`). Reference levels: condition `{spec.ref_condition}`, "
              f"network `{spec.ref_network}`."),
        ("p", f"Engine: `{fit.engine}` ({', '.join(f'{k} {v}' for k, v in fit.engine_versions.items())}); "
              f"standard errors: {fit.vcov_method}; 95% Wald intervals. {fit.n_obs} trials, "
              f"{fit.n_groups['participant']} participants, {fit.n_groups['unit']} units; "
              f"log-likelihood {fit.loglik:.2f}; converged: {convergence}; fit in {fit.fit_s:.1f} s."),
    ]
    if fit.messages:
        blocks.append(("list", [f"engine message: {m}" for m in fit.messages]))
    blocks += [
        ("table", fixed),
        ("p", "Random effects (standard deviations on the log-odds scale):"),
        ("table", pd.DataFrame({"group": list(fit.re_sd), "sd": list(fit.re_sd.values())})),
        ("p", "Likelihood-ratio tests: condition and network each dropped from the additive model; "
              "the interaction, when fitted, dropped from the full model."),
        ("table", fit.lrt[["term", "df", "chisq", "p"]]),
        ("img", "log_odds.png", "fitted log-odds per condition and network"),
        ("h2", "Contrasts"),
        ("p", "Log-odds differences from the fitted covariance, averaged over the other factor's levels; "
              "p-values Holm-corrected across these contrasts (`p_holm`)."),
        ("table", contrasts[["contrast", "estimate", "se", "ci_lower", "ci_upper", "odds_ratio", "or_lower",
                             "or_upper", "z", "p", "p_holm"]]),
        ("h2", "Software"),
        ("table", pd.DataFrame(list(software_versions(fit.engine_versions).items()), columns=["software", "version"])),
    ]
    return blocks


def write_report(
    analysis: Analysis, out: Path, source: str, source_sha256: str | None = None, n_rows: int = 0,
    notice: str | None = None,
) -> list[Path]:
    """Write every table, both figures and report.md/.html into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fit = analysis.fit
    tables = {
        "fixed_effects.csv": fit.fixed_effects(),
        "contrasts.csv": analysis.contrasts,
        "descriptives.csv": analysis.descriptives,
        "exclusions.csv": analysis.participants,
        "exclusion_summary.csv": analysis.exclusions,
        "participants.csv": analysis.per_participant,
        "cell_log_odds.csv": analysis.cells,
        "random_effects.csv": pd.DataFrame({"group": list(fit.re_sd), "sd": list(fit.re_sd.values())}),
        "lrt.csv": fit.lrt,
    }
    written = []
    for name, table in tables.items():
        table.to_csv(out / name, index=False)
        written.append(out / name)
    fit.vcov_frame().to_csv(out / "vcov.csv")
    written.append(out / "vcov.csv")
    written += plot_accuracy(analysis.descriptives, out / "accuracy")
    written += plot_log_odds(analysis.cells, out / "log_odds")
    blocks = report_blocks(analysis, source, source_sha256, n_rows, notice)
    (out / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(render_html(blocks, "MACO study: analysis report"), encoding="utf-8")
    return written + [out / "report.md", out / "report.html"]
