"""`maco-study gallery`: every image under the folder is on the page, and every link resolves."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from click.testing import CliRunner
from PIL import Image

from maco.images import image_files
from maco_study import main
from stimuli.manifest import load_manifest
from stimuli.testing import build_test_bundle


class Links(HTMLParser):
    """Every img src and a href of a page, and the text of elements with class "random"."""

    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.hrefs: list[str] = []
        self.random_labels: list[str] = []
        self._in_random = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if tag == "a":
            self.hrefs.append(attrs["href"])
        self._in_random = attrs.get("class") == "random"

    def handle_data(self, data):
        if self._in_random:
            self.random_labels.append(data)
            self._in_random = False


def png(path: Path, colour=(200, 10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), colour).save(path)


def fake_runs(root: Path) -> None:
    """A visualize run with random weights, a concepts run with pretrained ones, an evaluate run, a bundle, strays."""
    for name in ("maco_unit1.png", "maco_unit1_masked.png"):
        png(root / "viz" / name)
    (root / "viz" / "run.json").write_text(json.dumps({"command": "visualize", "weights": "random",
                                                        "random_weights": True, "units": [{"unit": 1}]}))
    files = {"image": "c1.png", "masked": "c1_masked.png", "patches": "c1_patches.png"}
    for name in [*files.values(), "concepts.png"]:
        png(root / "concepts" / name)
    (root / "concepts" / "concepts.json").write_text(json.dumps({
        "figure": "concepts.png", "concepts": [{"rank": 1, "concept": 4, "importance": 0.5, "files": files}]}))
    (root / "concepts" / "run.json").write_text(json.dumps({"command": "concepts", "weights": "pretrained:x",
                                                            "random_weights": False}))
    png(root / "eval" / "figures" / "fid.png")
    png(root / "eval" / "contact_sheet_resnet50.png")
    (root / "eval" / "run.json").write_text(json.dumps({"command": "evaluate", "networks": {"resnet50": "pretrained:x"},
                                                        "random_weights": False}))
    (root / "eval" / "tables.md").write_text("# tables")
    build_test_bundle(root / "bundle", networks=("vgg16",), units_per_network=1, pairs_per_unit=1, n_catch=1)
    png(root / "loose" / "photo.jpg")


def test_gallery_lists_every_image_and_every_link_resolves(tmp_path):
    fake_runs(tmp_path)
    result = CliRunner().invoke(main, ["gallery", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = tmp_path / "index.html"
    links = Links()
    links.feed(page.read_text())
    resolved = {(page.parent / unquote(src)).resolve() for src in links.sources}
    assert resolved == {p.resolve() for p in image_files(tmp_path)}
    assert all((page.parent / unquote(href)).is_file() for href in links.hrefs)
    assert "tables.md" in {Path(href).name for href in links.hrefs}  # an evaluate run's report is linked
    html = page.read_text()
    assert "<h2>evaluate: eval</h2>" in html  # headed by its command
    assert '<figure class="wide"><a href="eval/contact_sheet_resnet50.png">' in html  # readable, not a thumbnail
    # random weights: the visualize run and the bundle's random-weight network, not the pretrained runs
    assert links.random_labels == ["random weights", "random weights"]


def test_gallery_shows_every_reference_and_query_image_of_a_bundle(tmp_path):
    manifest = build_test_bundle(tmp_path / "bundle", networks=("vgg16", "resnet50"), units_per_network=2,
                                 pairs_per_unit=2)
    out = tmp_path / "elsewhere" / "page.html"
    out.parent.mkdir()
    assert CliRunner().invoke(main, ["gallery", str(tmp_path / "bundle"), "--out", str(out)]).exit_code == 0
    links = Links()
    links.feed(out.read_text())
    shown = [Path(src).stem for src in links.sources]
    manifest = load_manifest(tmp_path / "bundle")
    for reference in manifest.references:
        assert set(reference.images) <= set(shown)
    for _, pair in manifest.all_query_pairs():
        assert {pair.base_image, pair.image_a, pair.image_b} <= set(shown)
    assert all((out.parent / unquote(src)).is_file() for src in links.sources)


def test_gallery_of_a_folder_without_outputs_is_one_line_and_nonzero(tmp_path):
    result = CliRunner().invoke(main, ["gallery", str(tmp_path)])
    assert result.exit_code != 0 and "no run.json, bundle or image" in result.output
    assert not (tmp_path / "index.html").exists()
