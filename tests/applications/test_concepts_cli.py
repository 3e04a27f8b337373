"""`maco-study concepts`: its files, and one clear line for bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from maco_study import main


@pytest.fixture
def class_folder(tmp_path):
    folder = tmp_path / "class"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (60, 70, 3), dtype=np.uint8)).save(folder / ("sub" if i else ".") / f"{i}.png")
    return folder


def concepts(*args):
    return CliRunner().invoke(main, ["concepts", "--model", "test_resnet", "--random-weights", *args])


def test_concepts_writes_every_file_and_labels_random_weights(tmp_path, class_folder, restores_determinism):
    out = tmp_path / "out"
    result = concepts("--class", "3", "--images", str(class_folder), "--concepts", "4", "--patches", "6", "--top", "2",
                      "--importance-images", "2", "--steps", "2", "--size", "64", "--crops", "1", "--out", str(out),
                      "--dtype", "bfloat16", "--deterministic", "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "concepts.json").read_text())
    assert record["layer"] == "layer4" and len(record["importance"]) == 4
    assert [c["concept"] for c in record["concepts"]] == record["ranking"][:2]
    for concept in record["concepts"]:
        assert set(concept["files"]) == {"image", "transparency", "masked", "patches"}
        assert all("random-weights" in name and (out / name).is_file() for name in concept["files"].values())
        assert len(concept["top_patches"]) == 16 and (class_folder / concept["top_patches"][0]["image"]).is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "concepts" and run["random_weights"] is True and run["image_count"] == 3
    assert run["runtime"]["dtype"] == "bfloat16" and run["runtime"]["deterministic"]["algorithms"] is True
    assert np.isfinite(record["reconstruction_error"]) and all(np.isfinite(record["importance"]))
    with Image.open(out / "concepts.png") as figure:
        assert figure.width > 400


@pytest.mark.parametrize("args, message", [
    (["--class", "3", "--concepts", "97"], "97 concepts asked but layer layer4 has only 96 channels"),
    (["--class", "3", "--layer", "layer5"], "unknown layer 'layer5'; closest: layer4"),
    (["--class", "1000"], "class 1000 out of range"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, class_folder, args, message):
    result = concepts("--images", str(class_folder), *args, "--out", str(tmp_path / "o"))
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_a_class_folder_without_images_is_one_line_and_nonzero(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    result = concepts("--class", "3", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert result.exit_code != 0 and "no image files (.jpg, .png, ...) in" in result.output, result.output
    assert not (tmp_path / "o").exists()
