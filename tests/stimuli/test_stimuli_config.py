from __future__ import annotations

from pathlib import Path

import pytest

from stimuli.config import ConfigError, load_config, sample_units

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MINIMAL = """
[study]
name = "s"
[networks.net]
model = "resnet18"
units = [1, 2]
[pool]
source = "skimage"
[practice]
trials = 1
[catch]
trials = 1
[query]
per_unit = 1
top_k = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_tiny_example_loads_with_its_values():
    config = load_config(EXAMPLES / "study_tiny.toml")
    assert [n.key for n in config.networks] == ["resnet", "effnet"]
    assert config.networks[0].units == (1, 2, 3) and config.networks[0].input_size == 48
    assert list(config.reference_runs) == ["olah", "maco"]  # maco_mask shows the maco runs
    assert [(c.name, c.method, c.mask) for c in config.conditions] == [
        ("olah", "olah", False), ("maco_mask", "maco", True), ("maco", "maco", False), ("none", "none", False)]
    assert config.query.occluder_fraction == 0.4 and config.query.stride == 6


def test_full_example_parses_up_to_its_pool_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"^pool.source: /data/imagenet/val is not a folder"):
        load_config(EXAMPLES / "study.toml")
    text = (EXAMPLES / "study.toml").read_text().replace('"/data/imagenet/val"', '"skimage"')
    config = load_config(write(tmp_path, text))
    assert config.references.per_trial == 9 and config.references.maco.size == 512
    assert [len(n.units) for n in config.networks] == [10, 10, 10]


def test_sampled_units_are_seeded_per_network():
    assert sample_units(0, "vgg16", 10) == sample_units(0, "vgg16", 10)
    assert sample_units(0, "vgg16", 10) != sample_units(0, "resnet50", 10)
    assert sample_units(0, "vgg16", 10) != sample_units(1, "vgg16", 10)
    assert len(set(sample_units(3, "x", 50))) == 50


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("units = [1, 2]", "units = [1, 1000]"),
     r"^networks.net.units: class index 1000 out of range 0..999$"),
    (lambda t: t.replace("units = [1, 2]", "units = [1, 2]\nsample_units = 3"),
     r"^networks.net: give exactly one of units"),
    (lambda t: t.replace('name = "s"', 'name = "s"\nconditions = ["maco", "blind"]'),
     r"^study.conditions: unknown condition 'blind'"),
    (lambda t: t.replace("top_k = 3", "top_k = 0"), r"^query.top_k: must be >= 1, got 0$"),
    (lambda t: t.replace("per_unit = 1", "per_unit = 4"),
     r"^query.top_k: must be >= query.per_unit \(4\), got 3$"),
    (lambda t: t.replace("top_k = 3", "top_k = 3\nstrde = 2"), r"^query.strde: unknown key$"),
    (lambda t: t.replace('source = "skimage"', 'source = "nowhere"'),
     r"^pool.source: .*nowhere is not a folder"),
    (lambda t: t.replace("[pool]\nsource = \"skimage\"", ""), r"^pool.source: missing$"),
    (lambda t: t.replace("trials = 1", "trials = 4", 1),
     r"^query.top_k: practice.trials x practice.max_rounds \+ catch.trials = 13 need as many spare images"),
    # 2 practice + 1 catch would fit the 4 spare images, but every one of the 3 rounds needs new pictures
    (lambda t: t.replace("trials = 1", "trials = 2", 1),
     r"^query.top_k: practice.trials x practice.max_rounds \+ catch.trials = 7 need as many spare images, "
     r"but top_k - per_unit = 2 per unit x 2 units gives 4"),
    (lambda t: t + "occluder_fraction = 1.5\n",
     r"^query.occluder_fraction: must be in \(0, 1\)"),
    (lambda t: t.replace("[study]", "[study\n"), r"not valid TOML"),
    (lambda t: t.replace('name = "s"', 'name = "my study"'), r"^study.name: 'my study' must be letters"),
    (lambda t: t.replace("[networks.net]", '[networks."a/b"]'), r"^networks.a/b: the network key must be"),
    (lambda t: t.replace('name = "s"', 'name = "s"\nmain_trials_per_participant = 3'),
     r"^study.main_trials_per_participant: 3 is more than the 2 main query pairs"),
])
def test_bad_configs_fail_with_one_line_naming_the_key(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, edit(MINIMAL)))
    assert "\n" not in str(info.value)


def test_unreadable_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_fingerprint_ignores_speed_settings_only(tmp_path):
    base = load_config(write(tmp_path, MINIMAL))
    faster = load_config(write(tmp_path, MINIMAL + "batch_size = 999\n"))
    other = load_config(write(tmp_path, MINIMAL + "stride = 3\n"))
    assert base.fingerprint() == faster.fingerprint() != other.fingerprint()


def test_every_study_network_key_is_a_maco_preset() -> None:
    # study_protocol names the study's networks; maco (which imports none of our packages) keeps its own table
    from maco.models import PRESETS
    from study_protocol.study import NETWORKS, REFERENCE_NETWORK, TRANSFORMER_NETWORK

    assert set(NETWORKS) <= set(PRESETS)
    assert {REFERENCE_NETWORK, TRANSFORMER_NETWORK} <= set(NETWORKS)


def test_a_checkpoint_path_is_relative_to_the_study_toml(tmp_path, monkeypatch):
    """As pool.source and references.spectrum: the demo's study.toml names networks/<key>.safetensors."""
    (tmp_path / "networks").mkdir()
    (tmp_path / "networks" / "net.safetensors").write_bytes(b"")
    text = MINIMAL.replace('model = "resnet18"', 'model = "resnet18"\nweights = "networks/net.safetensors"')
    monkeypatch.chdir(EXAMPLES)  # elsewhere: the path must not depend on the working folder
    config = load_config(write(tmp_path, text))
    assert config.networks[0].weights == str((tmp_path / "networks" / "net.safetensors").resolve())
    for word in ("pretrained", "random"):
        assert load_config(write(tmp_path, MINIMAL.replace(
            'model = "resnet18"', f'model = "resnet18"\nweights = "{word}"'))).networks[0].weights == word
