"""Render the report's blocks as Markdown and as standalone HTML (one list of blocks, two formats).

A block: ``("h1"|"h2"|"p", text)``, ``("list", [text])``, ``("alert", [heading, text...])`` (a warning box at
the top), ``("table", DataFrame)`` or ``("img", file name, alt)``.
"""
from __future__ import annotations

import html
import re

import numpy as np

Block = tuple


def format_number(value) -> str:
    """Table cells: 3 decimals; scientific notation below 1e-3 and from 1e4 (an odds ratio of 6.6e43
    stays readable); yes/no for booleans."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and not 1e-3 <= abs(value) < 1e4:
            return f"{value:.2e}"
        return f"{value:.3f}"
    return str(value)


def format_p(value: float) -> str:
    """A p-value in a sentence: two significant digits, scientific below 1e-3."""
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}"


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
        elif kind == "alert":
            out.append("\n".join(f"> **{item}**" if i == 0 else f"> - {item}" for i, item in enumerate(block[1])))
        elif kind == "table":
            table = block[1]
            lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
            lines += ["| " + " | ".join(format_number(v) for v in row) + " |" for row in table.itertuples(index=False)]
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
        elif kind == "alert":
            head, *items = block[1]
            body.append(f'<div class="alert" role="alert"><strong>{_inline_html(head)}</strong><ul>'
                        + "".join(f"<li>{_inline_html(i)}</li>" for i in items) + "</ul></div>")
        elif kind == "table":
            table = block[1]
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(format_number(v))}</td>" for v in row) + "</tr>"
                for row in table.itertuples(index=False)
            )
            # a wide table scrolls in its box; the page keeps its width
            body.append(f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
        elif kind == "img":
            body.append(f'<img src="{html.escape(block[1])}" alt="{html.escape(block[2])}">')
    style = (
        "body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}"
        "td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;white-space:nowrap}"
        "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}"
        "code{background:#f3f3f3}"
        ".wide{overflow-x:auto}"
        ".alert{border:2px solid #c0392b;background:#fdecea;padding:.5rem 1rem;margin:1rem 0}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


