"""The bundle manifest: round trip, content addressing, and errors that name the field."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stimuli.testing import build_test_bundle
from stimuli.manifest import (
    MANIFEST_FILE,
    ManifestError,
    add_image,
    image_path,
    load_manifest,
    parse_manifest,
    write_manifest,
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle")
    build_test_bundle(path)
    return path


def _broken(bundle: Path, tmp_path: Path, edit) -> Path:
    """A copy of the bundle's manifest, edited, next to the same images."""
    data = json.loads((bundle / MANIFEST_FILE).read_text())
    edit(data)
    (tmp_path / "images").symlink_to(bundle / "images")
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    return tmp_path


def test_round_trip_keeps_everything(bundle: Path) -> None:
    manifest = load_manifest(bundle, verify_hashes=True)
    assert [n.key for n in manifest.networks] == ["vgg16", "resnet50"]
    assert len(manifest.units) == 4 and len(manifest.query_pairs) == 8
    assert manifest.conditions == ["olah", "maco_mask", "maco", "none"]
    # every reference set has 9 images; none has no references
    for unit in manifest.units:
        for condition in ("olah", "maco", "maco_mask"):
            assert len(manifest.reference_images(unit.key, condition)) == 9
        assert manifest.reference_images(unit.key, "none") == []
    again = json.loads(json.dumps(manifest.to_dict()))
    assert parse_manifest(again).fingerprint() == manifest.fingerprint()


def test_maco_mask_masks_the_maco_images(bundle: Path) -> None:
    manifest = load_manifest(bundle)
    for ref in manifest.references:
        if ref.condition == "maco_mask":
            assert ref.source_images == manifest.reference_images(ref.unit, "maco")
            assert set(ref.images).isdisjoint(ref.source_images)


def test_images_are_addressed_by_content_hash(bundle: Path, tmp_path: Path) -> None:
    manifest = load_manifest(bundle)
    for image_id, info in manifest.images.items():
        data = image_path(bundle, image_id).read_bytes()
        assert hashlib.sha256(data).hexdigest() == image_id
        assert (info.width, info.height) == (32, 32)
    png = image_path(bundle, next(iter(manifest.images))).read_bytes()
    assert add_image(tmp_path, png) == add_image(tmp_path, png) == hashlib.sha256(png).hexdigest()
    assert [p.name for p in (tmp_path / "images").iterdir()] == [f"{hashlib.sha256(png).hexdigest()}.png"]


def test_correct_image_is_the_argmax(bundle: Path) -> None:
    for _, pair in load_manifest(bundle).all_query_pairs():
        assert pair.activation_max >= pair.activation_min
        assert pair.correct_image == (pair.image_a if pair.correct == "a" else pair.image_b)
        assert {pair.correct_image, pair.wrong_image} == {pair.image_a, pair.image_b}


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["query_pairs"][3].update(correct="c"), 'query_pairs[3].correct: must be "a" or "b"'),
    (lambda d: d["query_pairs"][0].pop("image_b"), "query_pairs[0].image_b: missing"),
    (lambda d: d.update(schema_version=99), "schema_version: unsupported version 99"),
    (lambda d: d["units"][1].update(network="alexnet"), "units[1].network: unknown network 'alexnet'"),
    (lambda d: d["units"][0].update(class_index=1000), "units[0].class_index: 1000 out of range"),
    (lambda d: d["practice_trials"][1].update(activation_max="high"),
     "practice_trials[1].activation_max: must be a finite number"),
    (lambda d: d["references"].pop(0), "has no olah references"),
    (lambda d: d["references"][2]["source_images"].reverse(), "references[2].source_images: must equal"),
    (lambda d: d["catch_trials"][0].update(id=d["query_pairs"][0]["id"]), "catch_trials[0].id: duplicate"),
    (lambda d: d["query_pairs"][2]["occluder_a"].update(x=30), "query_pairs[2].occluder_a: outside"),
    (lambda d: d["networks"][0].update(extra=1), "networks[0].extra: unknown field"),
    (lambda d: d["images"].pop(d["query_pairs"][0]["base_image"]), "is not listed"),
    (lambda d: d["conditions"].append("maco"), "conditions[4]: duplicate 'maco'"),
    # "$" matches before a trailing newline: ids are matched whole
    (lambda d: d.update(study=d["study"] + "\n"), "study: 'test-study\\n' does not match"),
    (lambda d: d["query_pairs"][0].update(base_image=d["query_pairs"][0]["base_image"] + "\n"),
     "query_pairs[0].base_image: "),
    # an image in trials of two kinds: practice feedback would answer the other trial
    (lambda d: d["catch_trials"][0].update(image_b=d["practice_trials"][0]["image_a"]),
     "catch_trials: catch-0 shows image"),
    (lambda d: d["query_pairs"][1].update(base_image=d["practice_trials"][1]["base_image"]),
     "query_pairs: q-vgg16-"),
    # practice rounds of new pictures: they fill practice_trials exactly and share no image
    (lambda d: d["protocol"].update(practice_trials_per_round=1),
     "practice_trials: 2 pairs, but protocol asks for 3 rounds of 1"),
    (lambda d: (d["protocol"].update(practice_trials_per_round=1, max_practice_rounds=2),
                d["practice_trials"][1].update(image_a=d["practice_trials"][0]["image_b"])),
     "practice_trials: practice-1 (round 2) shows image"),
    # each catch trial follows a main trial of its own: never first, never two in a row
    (lambda d: d["protocol"].update(main_trials_per_participant=1),
     "catch_trials: 2 catch trials but 1 main trials per participant"),
])
def test_errors_name_the_broken_field(bundle: Path, tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(ManifestError, match=_escape(message)):
        load_manifest(_broken(bundle, tmp_path, edit))


def _escape(text: str) -> str:
    import re
    return re.escape(text)


def test_missing_or_corrupt_image_files(bundle: Path, tmp_path: Path) -> None:
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    victim = sorted((copy / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"x")
    load_manifest(copy)  # cheap load: presence only
    with pytest.raises(ManifestError, match="does not match its hash"):
        load_manifest(copy, verify_hashes=True)
    victim.unlink()
    with pytest.raises(ManifestError, match=f"images.{victim.stem}: file .* is missing"):
        load_manifest(copy)


def test_write_manifest_refuses_invalid_and_keeps_old_file(bundle: Path, tmp_path: Path) -> None:
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    before = (copy / MANIFEST_FILE).read_bytes()
    manifest = load_manifest(copy)
    manifest.query_pairs[0] = type(manifest.query_pairs[0])(
        **{**manifest.query_pairs[0].__dict__, "correct": "left"})
    with pytest.raises(ManifestError, match=r"query_pairs\[0\].correct"):
        write_manifest(copy, manifest)
    assert (copy / MANIFEST_FILE).read_bytes() == before
    assert not [p for p in copy.iterdir() if p.name.endswith(".tmp")]


def test_manifest_module_imports_nothing_heavy() -> None:
    code = "import sys, stimuli.manifest; print(sorted(m for m in ('torch','timm','numpy','PIL','flask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stimuli_check_refuses_a_bundle_sharing_an_image_between_trial_kinds(bundle: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from maco_study import main as cli

    def share(d: dict) -> None:  # a catch trial's wrong image is a practice trial's image
        catch = d["catch_trials"][0]
        catch["image_a" if catch["correct"] == "b" else "image_b"] = d["practice_trials"][0]["image_a"]

    result = CliRunner().invoke(cli, ["stimuli", "check", str(_broken(bundle, tmp_path, share))])
    assert result.exit_code == 1
    assert "no image may be shared between practice, main and catch trials" in result.output
    assert len(result.output.strip().splitlines()) == 1
