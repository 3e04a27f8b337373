"""The simulate driver's pieces that need no server: reading the bundle, the profiles, its imports."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.driver import PROFILES, BundleIndex, DriverError, Profile
from analysis.simulate import GenerativeModel
from stimuli.manifest import image_path
from stimuli.testing import build_test_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("bundle")
    build_test_bundle(bundle, networks=("vgg16", "vit_b16"), units_per_network=2, pairs_per_unit=2,
                      n_practice=2, n_catch=2)
    return bundle


@pytest.fixture(scope="module")
def index(bundle: Path) -> BundleIndex:
    return BundleIndex.load(bundle)


def test_every_pair_is_found_from_its_images_in_either_order(index: BundleIndex) -> None:
    manifest = index.manifest
    for kind, pair in manifest.all_query_pairs():
        for left, right in ((pair.image_a, pair.image_b), (pair.image_b, pair.image_a)):
            info = index.trial(pair.base_image, left, right)
            assert (info.kind, info.pair.id) == (kind, pair.id)
            assert info.network == manifest.unit(pair.unit).network
    pair = manifest.query_pairs[0]
    with pytest.raises(DriverError, match="not a query pair of this bundle"):
        index.trial(pair.base_image, pair.image_a, manifest.query_pairs[1].image_b)


def test_condition_from_the_reference_grid(index: BundleIndex) -> None:
    for ref in index.manifest.references:
        assert index.condition(list(ref.images)) == ref.condition
        assert index.condition(list(reversed(ref.images))) == ref.condition
    assert index.condition([]) == "none"
    first, second = index.manifest.references[:2]
    with pytest.raises(DriverError, match="not a reference set"):
        index.condition(first.images[:-1] + second.images[-1:])


def test_model_on_the_study_levels(index: BundleIndex) -> None:
    profile = Profile(GenerativeModel(network_effects={"resnet50": 0.0, "vit_b16": -1.0, "alexnet": 2.0}))
    model = index.model_for(profile.model)
    assert model.network_effects == {"vgg16": 0.0, "vit_b16": -1.0}  # unknown to the profile: 0
    assert model.conditions == index.manifest.conditions
    assert (model.practice_trials, model.catch_trials, model.main_trials_per_network) == (2, 2, 4)
    assert set(PROFILES) >= {"default", "strong"}


def test_the_server_re_encoding_of_query_images_is_recognised(index: BundleIndex, bundle: Path) -> None:
    from study_server.images import uncompressed_png  # what the server sends for a query image

    pair = index.manifest.query_pairs[0]
    for image in (pair.image_a, pair.image_b, pair.base_image):
        stored = image_path(bundle, image).read_bytes()
        served = uncompressed_png(image_path(bundle, image))
        assert served != stored and index.image_id(served) == index.image_id(stored) == image
    other = np.array(Image.open(image_path(bundle, pair.image_a)).convert("RGB"))
    other[0, 0] ^= 1  # one pixel differs: another image
    buffer = io.BytesIO()
    Image.fromarray(other).save(buffer, format="PNG")
    assert index.image_id(buffer.getvalue()) not in index.manifest.images


def test_the_driver_never_imports_torch() -> None:
    code = ("import sys, demo.driver, demo.cli; "
            "sys.exit(any(m in sys.modules for m in ('torch', 'flask', 'study_server.images')))")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0
