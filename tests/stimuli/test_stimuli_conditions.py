"""Declared conditions: the registry, a plugin method by entry point, and natural exemplars."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maco.methods import MethodError, available_methods, get_method
from stimuli import manifest as mf
from stimuli.build import Shard, build, check_bundle
from stimuli.config import ConfigError, load_config
from stimuli.models import load_study_model
from stimuli.pool import list_pool, load_image

from stimuli.testing import install_plugin, write_pool

PLUGIN = '''
import torch
from maco.methods import Method, Reference

class Flat(Method):
    """A uniform grey image per unit, brighter for a higher unit index; its mask a centred square."""
    kind = "optimized"
    defaults = {"level": 0.25, "size": 32}

    def render(self, model, units, settings, seed, **context):
        size = settings["size"]
        mask = torch.zeros(size, size)
        mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
        return [Reference(torch.full((3, size, size), settings["level"] + 0.01 * (u % 50) + 0.001 * seed),
                          mask, objective=0.0) for u in units]

METHOD = Flat()
'''


def install_flat(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The plugin above as a package (module and pyproject.toml), installed."""
    (folder / "flat_method_plugin").mkdir(parents=True)
    (folder / "flat_method_plugin" / "__init__.py").write_text(PLUGIN)
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "flat-method-plugin"\nversion = "0.1"\n'
        '[project.entry-points."maco_study.methods"]\nflat = "flat_method_plugin:METHOD"\n')
    install_plugin(folder, folder / "site", monkeypatch)
    return "flat"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    return install_flat(tmp_path / "plugin", monkeypatch)


STUDY = """
[study]
name = "five"
seed = 0

[conditions.maco]
method = "maco"

[conditions.maco_mask]
method = "maco"
mask = true

[conditions.natural]
method = "natural"

[conditions.flat]
method = "flat"
level = 0.5

[conditions.none]
method = "none"

[networks.resnet]
model = "test_resnet"
weights = "random"
input_size = 32
units = [1, 2]

[references]
per_trial = 2
units_per_run = 2
spectrum = "analytic"

[references.maco]
steps = 2
size = 32
crops = 2

[pool]
source = "pool"
chunk_size = 16
batch_size = 16

[query]
per_unit = 1
top_k = 3
stride = 8

[practice]
trials = 1
max_rounds = 1

[catch]
trials = 0  # random weights on random blobs: no reliable catch distractor
"""


def write_study(folder: Path, text: str = STUDY) -> Path:
    path = folder / "study.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_registry_holds_the_built_ins_and_an_installed_plugin(plugin):
    assert available_methods()[:5] == ["maco", "olah", "pixel", "natural", "none"]
    assert plugin in available_methods()
    assert get_method(plugin).defaults == {"level": 0.25, "size": 32}
    with pytest.raises(MethodError, match="unknown method 'feature_accentuation'.*maco_study.methods"):
        get_method("feature_accentuation")


@pytest.mark.parametrize("edit, message", [
    ('method = "flat"\nlevel = 0.5', "conditions.flat: unknown method 'flat': not built in"),  # plugin not installed
    ('method = "diffusion"', "conditions.flat: unknown method 'diffusion'"),
    ('method = "maco"\nsteps = "many"', "conditions.flat: method 'maco': setting 'steps' must be a int"),
    ('method = "maco"\nlearning = 2', "conditions.flat: method 'maco' has no setting 'learning'"),
    ('method = "natural"\nmask = true', "conditions.flat.mask: true or false, and only for a method that makes"),
])
def test_a_bad_condition_stops_with_one_line(tmp_path, edit, message):
    (tmp_path / "pool").mkdir()
    path = write_study(tmp_path, STUDY.replace('method = "flat"\nlevel = 0.5', edit))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_condition_name_used_twice_stops_with_one_line(tmp_path, plugin):
    (tmp_path / "pool").mkdir()
    path = write_study(tmp_path, STUDY + '\n[conditions.maco]\nmethod = "olah"\n')
    with pytest.raises(ConfigError, match=r"not valid TOML \(Cannot declare \('conditions', 'maco'\) twice"):
        load_config(path)
    legacy = write_study(tmp_path, '[study]\nname = "x"\nconditions = ["maco", "none", "maco"]\n')
    with pytest.raises(ConfigError, match="study.conditions: condition 'maco' named twice"):
        load_config(legacy)


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    """The five-condition study built: the paper's two MACO conditions, natural, a plugin's, none."""
    folder = tmp_path_factory.mktemp("five")
    write_pool(folder / "pool", 40, size=40)
    mp = pytest.MonkeyPatch()
    install_flat(folder / "plugin", mp)
    try:
        config = load_config(write_study(folder))
        build(config, folder / "bundle", Shard(), "cpu", progress=False)
    finally:
        mp.undo()
    return config, folder / "bundle"


def test_the_manifest_carries_the_declared_conditions_and_check_accepts_them(five):
    config, bundle = five
    manifest = check_bundle(bundle)
    assert manifest.conditions == ["maco", "maco_mask", "natural", "flat", "none"]
    assert {c: (m.method, m.settings) for c, m in manifest.condition_methods.items()} == {
        "maco": ("maco", {}), "maco_mask": ("maco", {"mask": True}), "natural": ("natural", {}),
        "flat": ("flat", {"level": 0.5}), "none": ("none", {})}
    flat = manifest.reference_images("resnet:1", "flat")
    with Image.open(mf.image_path(bundle, flat[0])) as png:
        assert np.asarray(png)[0, 0, 0] == round((0.5 + 0.01) * 255)  # the plugin's setting was used
    assert not manifest.reference_images("resnet:1", "none")


def test_check_names_each_condition_and_its_method(five):
    from click.testing import CliRunner

    from maco_study import main

    result = CliRunner().invoke(main, ["stimuli", "check", str(five[1])])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("conditions: maco (maco), maco_mask (maco, mask = True), "
                                           "natural (natural), flat (flat, level = 0.5), none (none)")


def test_natural_exemplars_are_the_units_true_top_pool_images_outside_every_query_photo(five):
    config, bundle = five
    manifest = mf.load_manifest(bundle)
    network = config.networks[0]
    model = load_study_model(network, config.seed)
    pool = list_pool(config.pool.source)
    images = [load_image(pool.path(i), model.preprocessing) for i in range(len(pool.files))]
    with torch.no_grad():  # one image at a time: independent of the build's batching
        logits = torch.stack([model.logits(image[None])[0] for image in images]).double().numpy()
    ranking = {u: sorted(range(len(images)), key=lambda i, u=u: (-logits[i, u], i)) for u in network.units}
    query_photos = {i for u in network.units for i in ranking[u][:config.query.top_k]}
    shown = {i for _, pair in manifest.all_query_pairs() for i in (pair.base_image, pair.image_a, pair.image_b)}
    for u in network.units:
        expected = [i for i in ranking[u] if i not in query_photos][:config.references.per_trial]
        ref = next(r for r in manifest.references if r.unit == f"resnet:{u}" and r.condition == "natural")
        assert ref.pool_files == [pool.files[i] for i in expected]
        assert ref.activations == pytest.approx([logits[i, u] for i in expected], abs=1e-4)
        assert not set(ref.images) & shown
        for image_id, i in zip(ref.images, expected):  # the whole photo, preprocessed as the queries
            with Image.open(mf.image_path(bundle, image_id)) as png:
                assert np.array_equal(np.asarray(png), (images[i].permute(1, 2, 0) * 255).round().byte().numpy())
