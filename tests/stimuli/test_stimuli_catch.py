"""`stimuli check` holds every trial to what the instructions say: both options copies of the photo,
but in a catch trial, where only the correct one is (the other shows another photo: obvious)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from maco_study import main as cli
from stimuli.manifest import MANIFEST_FILE, add_image, image_path
from stimuli.testing import build_test_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle")
    build_test_bundle(path, n_practice=2, n_catch=2)
    return path


def _check(bundle: Path):  # noqa: ANN202
    return CliRunner().invoke(cli, ["stimuli", "check", str(bundle)])


def _with_wrong_image(bundle: Path, tmp_path: Path, field: str, index: int, source: str) -> Path:
    """A copy of the bundle whose `field`[index] trial shows, as its wrong option, an occluded copy
    of the base photo of `source` (a trial id) under the trial's own wrong occluder."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    data = json.loads((copy / MANIFEST_FILE).read_text())
    pairs = {p["id"]: p for name in ("query_pairs", "practice_trials", "catch_trials") for p in data[name]}
    pair = data[field][index]
    wrong = "b" if pair["correct"] == "a" else "a"
    occ = pair[f"occluder_{wrong}"]
    with Image.open(image_path(copy, pairs[source]["base_image"])) as png:
        occluded = png.convert("RGB")
    ImageDraw.Draw(occluded).rectangle((occ["x"], occ["y"], occ["x"] + occ["size"] - 1, occ["y"] + occ["size"] - 1),
                                       fill=(128, 128, 128))
    image_id = add_image(copy, occluded)
    pair[f"image_{wrong}"] = image_id
    data["images"][image_id] = {"width": occluded.width, "height": occluded.height}
    (copy / MANIFEST_FILE).write_text(json.dumps(data))
    return copy


def test_the_test_bundle_passes(bundle: Path) -> None:
    result = _check(bundle)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_a_catch_trial_showing_two_copies_of_its_photo_is_refused(bundle: Path, tmp_path: Path) -> None:
    # the catch trial's wrong option made like a main trial's: an occluded copy of its own photo
    result = _check(_with_wrong_image(bundle, tmp_path, "catch_trials", 1, "catch-1"))
    assert result.exit_code == 1
    assert "catch_trials: catch-1: the wrong image is a copy of the base photo" in result.output


def test_a_main_trial_showing_another_photo_is_refused(bundle: Path, tmp_path: Path) -> None:
    main = json.loads((bundle / MANIFEST_FILE).read_text())["query_pairs"][2]["id"]
    result = _check(_with_wrong_image(bundle, tmp_path, "query_pairs", 2, "practice-0"))
    assert result.exit_code == 1
    assert f"query_pairs: {main}: the wrong image is not a copy of the base photo" in result.output


def test_more_catch_than_main_trials_per_participant_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    data = json.loads((copy / MANIFEST_FILE).read_text())
    data["protocol"]["main_trials_per_participant"] = 1
    (copy / MANIFEST_FILE).write_text(json.dumps(data))
    result = _check(copy)
    assert result.exit_code == 1 and "2 catch trials but 1 main trials per participant" in result.output
