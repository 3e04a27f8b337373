"""`maco-study gallery DIR`: one static HTML page over every output found under DIR.

A folder with a run.json (visualize, concepts, invert, evaluate) becomes one
section: its settings, "random weights" in red where they apply, and its
images (grouped by concept, with importances, when a concepts.json is there).
A folder with a manifest.json is a stimuli bundle: per unit, the reference
images of every condition and the query pairs (the favoured image marked).
Every other image under DIR is listed at the end, so nothing is left out.
Links are relative, so the folder can be zipped and shared as it is.
"""
from __future__ import annotations

import json
import os
from fnmatch import fnmatch
from html import escape
from pathlib import Path

import click

from maco.images import image_files
from stimuli.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    image_path,
    load_manifest,
)

DOCUMENT_SUFFIXES = {".md", ".csv", ".json", ".html"}
WIDE_FIGURES = ("inversion", "concepts", "contact_sheet*")  # name patterns of figures that hold several panels
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
section { border-top: 1px solid #ccc; padding: 0.5em 0; }
table.settings td { padding: 0 0.8em 0 0; font-size: 0.85em; vertical-align: top; }
figure { display: inline-block; margin: 0.3em; text-align: center; vertical-align: top; }
figure img { width: 160px; height: auto; border: 1px solid #ddd; image-rendering: auto; }
figure.wide img { width: 520px; }
figure.small img { width: 96px; }
figure.small figcaption { max-width: 96px; }
figcaption { font-size: 0.75em; max-width: 160px; overflow-wrap: anywhere; }
figure.wide figcaption { max-width: 520px; }
.random { color: #c00; font-weight: bold; }
.correct img { border: 3px solid #2a2; }
h3 { margin: 0.6em 0 0.2em; font-size: 1em; }
"""


class Page:
    """The HTML body under construction and the images it links (relative to the page)."""

    def __init__(self, root: Path, page: Path):
        self.root, self.page = root, page
        self.parts: list[str] = []
        self.linked: set[Path] = set()

    def add(self, html: str) -> None:
        self.parts.append(html)

    def href(self, path: Path) -> str:
        return escape(Path(os.path.relpath(path, self.page.parent)).as_posix())

    def figure(self, path: Path, caption: str = "", css: str = "") -> None:
        self.linked.add(path.resolve())
        href = self.href(path)
        self.add(f'<figure class="{css}"><a href="{href}"><img src="{href}" loading="lazy" alt="{escape(path.name)}">'
                 f"</a><figcaption>{escape(caption or path.name)}</figcaption></figure>")

    def link(self, path: Path) -> str:
        return f'<a href="{self.href(path)}">{escape(path.name)}</a>'

    def html(self, title: str) -> str:
        return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
                f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>\n" + "\n".join(self.parts)
                + "\n</body></html>\n")


def is_random(settings: dict) -> bool:
    return bool(settings.get("random_weights")) or settings.get("weights") == "random"


def settings_table(settings: dict) -> str:
    """The run's scalar settings, one row each (lists and records are shown by their images)."""
    rows = [f"<tr><td>{escape(str(key))}</td><td>{escape(str(value))}</td></tr>"
            for key, value in settings.items() if not isinstance(value, (list, dict))]
    return f'<table class="settings">{"".join(rows)}</table>'


def run_section(page: Page, folder: Path, images: list[Path]) -> None:
    """One run: its settings, its documents (tables, CSV) as links and ``images``, the images it owns."""
    settings = json.loads((folder / "run.json").read_text())
    name = escape(str(folder.relative_to(page.root)) if folder != page.root else folder.name)
    warning = ' <span class="random">random weights</span>' if is_random(settings) else ""
    page.add(f'<section><h2>{escape(str(settings.get("command", "run")))}: {name}{warning}</h2>')
    page.add(settings_table(settings))
    shown = set()
    concepts_file = folder / "concepts.json"
    if concepts_file.is_file():
        concepts = json.loads(concepts_file.read_text())
        page.figure(folder / concepts["figure"], "figure (Fig. 6b layout)", "wide")
        shown.add(folder / concepts["figure"])
        for record in concepts["concepts"]:
            page.add(f'<h3>concept {record["concept"]} (rank {record["rank"]}, importance '
                     f'{record["importance"]:.3f})</h3>')
            for kind, file in record["files"].items():
                page.figure(folder / file, kind)
                shown.add(folder / file)
    documents = [p for p in sorted(folder.iterdir()) if p.suffix in DOCUMENT_SUFFIXES]
    if documents:
        page.add("<p>" + " · ".join(page.link(p) for p in documents) + "</p>")
    for path in images:
        if path not in shown:
            caption = str(path.relative_to(folder).with_suffix(""))
            wide = any(fnmatch(path.stem, pattern) for pattern in WIDE_FIGURES)
            page.figure(path, caption, "wide" if wide else "")
    page.add("</section>")


def bundle_section(page: Page, folder: Path, manifest: Manifest) -> None:
    page.add(f"<section><h2>stimuli bundle: {escape(manifest.study)} "
             f"({escape(str(folder.relative_to(page.root)) if folder != page.root else folder.name)})</h2>")
    for network in manifest.networks:
        weights = ('<span class="random">random weights</span>' if network.weights == "random"
                   else f"weights {escape(network.weights)}")
        page.add(f"<h2>{escape(network.key)}: {escape(network.timm_name)}, {weights}</h2>")
        for unit in (u for u in manifest.units if u.network == network.key):
            page.add(f"<details open><summary><b>{escape(unit.key)}</b> {escape(unit.label)}</summary>")
            for condition in manifest.conditions:
                images = manifest.reference_images(unit.key, condition)
                if images:
                    page.add(f"<h3>{escape(condition)}</h3>")
                    for number, image_id in enumerate(images, start=1):
                        page.figure(image_path(folder, image_id), f"{condition} {number}", "small")
            for kind, pair in manifest.all_query_pairs():
                if pair.unit != unit.key:
                    continue
                page.add(f"<h3>{kind} query {escape(pair.id)}: activation max {pair.activation_max:.3g}, "
                         f"min {pair.activation_min if pair.activation_min is None else f'{pair.activation_min:.3g}'}"
                         "</h3>")
                page.figure(image_path(folder, pair.base_image), "base")
                for side, image_id in (("a", pair.image_a), ("b", pair.image_b)):
                    favoured = side == pair.correct
                    page.figure(image_path(folder, image_id), f"{side}{' (favoured)' if favoured else ''}",
                                "correct" if favoured else "")
            page.add("</details>")
    page.add("</section>")


def build_gallery(root: Path, page_path: Path) -> Page:
    """The page for every run folder and bundle under ``root``, then every image not shown yet."""
    page = Page(root.resolve(), page_path.resolve())
    folders = sorted({p.parent.resolve() for p in root.rglob("run.json")}
                     | {p.parent.resolve() for p in root.rglob(MANIFEST_FILE)})
    owned: dict[Path, list[Path]] = {folder: [] for folder in folders}
    for path in image_files(root):  # an image belongs to the deepest run folder above it
        owners = [f for f in folders if f in path.resolve().parents]
        if owners:
            owned[max(owners, key=lambda f: len(f.parts))].append(path.resolve())
    for folder in folders:
        if (folder / MANIFEST_FILE).is_file():
            try:
                bundle_section(page, folder, load_manifest(folder))
            except ManifestError as error:
                raise click.ClickException(f"bundle {folder}: {error}") from None
        else:
            run_section(page, folder, owned[folder])
    rest = [p for p in image_files(root) if p.resolve() not in page.linked and p.resolve() != page.page]
    if rest:
        page.add("<section><h2>other images</h2>")
        for path in rest:
            page.figure(path.resolve(), str(path.relative_to(root)))
        page.add("</section>")
    return page


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="the page [FOLDER/index.html]")
@click.option("--title", help="page title [the folder's name]")
def gallery(folder: Path, out: Path | None, title: str | None):
    """One static HTML page of every visualize, concepts, invert and evaluate output and stimuli bundle under FOLDER."""
    out = out or folder / "index.html"
    page = build_gallery(folder, out)
    if not page.linked:
        raise click.ClickException(f"no run.json, bundle or image under {folder}")
    out.write_text(page.html(title or f"maco-study gallery: {folder.resolve().name}"), encoding="utf-8")
    click.echo(f"wrote {out} ({len(page.linked)} images)")
