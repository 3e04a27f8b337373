"""End to end with five declared conditions, one of them a plugin's (examples/horama_method):
build, check, serve, simulated participants, export, analysis."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from maco_study import main
from stimuli.testing import install_plugin, write_pool

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "horama_method"
CONFIG = Path(__file__).with_name("study_conditions_e2e.toml")
CONDITIONS = ["maco", "maco_mask", "natural", "horama", "none"]
PER_CONDITION = 4


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("five")
    write_pool(folder / "pool", 72, size=56)
    config = folder / "five.toml"
    config.write_text(CONFIG.read_text().replace('"POOL"', json.dumps(str(folder / "pool"))))
    monkeypatch = pytest.MonkeyPatch()
    install_plugin(PLUGIN, folder / "site", monkeypatch)
    try:
        result = CliRunner().invoke(main, [
            "demo", "--dir", str(folder / "demo"), "--config", str(config), "--simulate",
            str(PER_CONDITION * len(CONDITIONS)), "--profile", "strong", "--exit", "--port", "0", "--no-progress"],
            catch_exceptions=False)
    finally:
        monkeypatch.undo()
    assert result.exit_code == 0, result.output
    return folder / "demo"


def test_every_condition_is_built_assigned_in_balance_exported_and_reported(demo_dir: Path) -> None:
    from stimuli.build import check_bundle

    manifest = check_bundle(demo_dir / "bundle")
    assert manifest.conditions == CONDITIONS
    assert manifest.condition_methods["horama"].method == "horama_fourier"
    assert all(r.activations for r in manifest.references if r.condition == "natural")
    people = pd.read_csv(demo_dir / "simulation" / "participants.csv")
    assert people["condition"].value_counts().to_dict() == dict.fromkeys(CONDITIONS, PER_CONDITION)
    exported = pd.read_csv(demo_dir / "export" / "responses.csv")
    assert sorted(set(exported["condition"])) == sorted(CONDITIONS)
    design = json.loads((demo_dir / "export" / "study.json").read_text())
    assert design["conditions"] == CONDITIONS and design["analysis"] == {"reference_condition": "maco"}
    codebook = (demo_dir / "export" / "codebook.md").read_text()
    assert "| horama | horama_fourier | crops = 2, size = 48, steps = 2 |" in codebook
    # the declared reference and the default contrasts: the paper's one these conditions support,
    # then each other condition against the reference
    contrasts = pd.read_csv(demo_dir / "report" / "contrasts.csv")
    assert {"MACO with mask vs without", "natural vs maco", "horama vs maco", "none vs maco"} <= set(
        contrasts["contrast"])
    fixed = pd.read_csv(demo_dir / "report" / "fixed_effects.csv")["term"]
    assert {f"condition[{c}]" for c in CONDITIONS[1:]} <= set(fixed)
    report = (demo_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert all(c in report for c in CONDITIONS)
