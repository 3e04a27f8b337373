"""`maco-study evaluate` end to end on random-weight timm test networks, and its bad-input errors."""
import csv
import json

import numpy as np
import pytest
import timm
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from maco.evaluation.variants import VARIANTS
from maco.optimize import MACO_ALGORITHM
from maco_study import main

UNIT_WNID = "n01443537"  # ImageNet class 1, goldfish: a folder may be named by index or WordNet id
FAST = ["--model", "test_resnet", "--random-weights", "--transfer-models", "test_efficientnet,test_convnext,test_resnet",
        "--fid-model", "test_resnet", "--steps", "2", "--size", "48", "--quiet", "--spectrum", "analytic"]


def smooth_image(path, seed, size=(40, 36)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path)


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "natural"
    for name, seeds in [(UNIT_WNID, (1, 2, 3)), ("2", (4, 5)), ("17", (6,))]:  # 17: a class not evaluated
        (root / name).mkdir(parents=True)
        for seed in seeds:
            smooth_image(root / name / f"{seed}.png", seed)
    return root


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    """Each test network's weights as ``<timm name>.safetensors``: what --fid-weights and --transfer-weights read."""
    folder = tmp_path_factory.mktemp("weights")
    for name in ("test_resnet", "test_efficientnet", "test_convnext"):
        torch.manual_seed(0)
        save_file(timm.create_model(name).state_dict(), folder / f"{name}.safetensors")
    return folder


def judged(weights_folder) -> list[str]:
    """FAST with every network on weights from a folder (not random)."""
    return [*FAST, "--weights", str(weights_folder), "--fid-weights", str(weights_folder),
            "--transfer-weights", str(weights_folder)]


def invoke(*args):
    return CliRunner().invoke(main, ["evaluate", *args], catch_exceptions=False)


def test_evaluate_writes_tables_scores_contact_sheet_and_run_json(tmp_path, image_folder, weights_folder):
    out = tmp_path / "out"
    result = invoke(*judged(weights_folder), "--units", "1,2", "--images", str(image_folder), "--seeds", "0,1", "--out", str(out))
    assert result.exit_code == 0, result.output
    with (out / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 * 2 * 2  # variants (all seven by default) x units x seeds
    assert {r["variant"] for r in rows} == set(VARIANTS)
    assert "top1_test_resnet" not in rows[0]  # the network itself is no "other classifier"
    for row in rows:
        assert 0 <= float(row["plausibility"]) <= 2 and np.isfinite(float(row["logit"]))  # unit vectors' distance
        hits = [row["top1_test_efficientnet"] == "True", row["top1_test_convnext"] == "True"]
        assert float(row["transferability"]) == pytest.approx(sum(hits) / 2)
    # MACO and MACO without transparency are one optimisation scored on two views of it
    scored = {(r["variant"], r["unit"], r["seed"]): float(r["plausibility"]) for r in rows}
    assert scored[("maco", "1", "0")] != scored[("maco-no-transparency", "1", "0")]
    images = out / "images" / "test_resnet"
    maco_image = np.asarray(Image.open(images / "maco_unit1_seed0.png"))
    for ablation in ("maco-no-crops", "maco-no-noise", "maco-no-magnitude"):  # each switch changes the optimisation
        assert not np.array_equal(maco_image, np.asarray(Image.open(images / f"{ablation}_unit1_seed0.png"))), ablation
    with (out / "summary.csv").open() as handle:
        summary = {r["variant"]: r for r in csv.DictReader(handle)}
    assert all(np.isfinite(float(s["fid"])) and float(s["fid"]) >= 0 for s in summary.values())
    tables = (out / "tables.md").read_text()
    assert "RANDOM" not in tables and "n/a" not in tables
    assert f"- test_efficientnet: pretrained:test_efficientnet from {weights_folder}" in tables
    assert "## Table 1" in tables and "## Table 2" in tables and "## Table 3" in tables
    assert "| logit (↑) | test_efficientnet | test_convnext | test_resnet |" in tables
    assert "| MACO - noise |" in tables and "| Fourier (Olah et al.) |" in tables
    assert "| MACO - crops |" in tables and "| MACO - magnitude constraint |" in tables
    run = json.loads((out / "run.json").read_text())
    assert run["plausibility"]["k"] == 1 and "L2-normalised" in run["plausibility"]["score"]
    assert run["fid"]["weights"] == f"pretrained:test_resnet from {weights_folder / 'test_resnet.safetensors'}"
    assert run["transfer_classifiers"]["test_convnext"].startswith("pretrained:test_convnext from")
    assert run["random_weights"] == [] and run["natural_images"]["per_unit"] == {"1": 3, "2": 2}
    assert run["fid"]["resize"] == 512 and run["fid"]["crop"] == 299 and run["seeds"] == [0, 1]
    assert run["command"] == "evaluate" and run["maco_algorithm"] == MACO_ALGORITHM
    assert [s.split(" (")[0] for s in run["spectrum"]] == ["analytic"]  # as chosen, at its working size
    assert run["variants"]["maco"]["scored"] == "masked" and run["variants"]["maco-no-noise"]["options"] == {"noise": 0.0}
    assert run["variants"]["maco-no-crops"]["options"] == {"crops": 0}
    assert run["variants"]["maco-no-magnitude"]["options"] == {"magnitude_constraint": False}
    with Image.open(out / "contact_sheet_test_resnet.png") as sheet:
        # columns: image + masked of MACO and its three ablation runs, Olah, pixel; rows: 2 units x 2 seeds
        assert sheet.size == (110 + 10 * 164, 2 * 34 + 4 * 164)
    assert len(list(images.glob("*.png"))) == 7 * 2 * 2


def bad_input_cases(tmp_path, image_folder):
    (image_folder / "3").mkdir()  # an empty class folder
    broken = image_folder / "4"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    (image_folder / "1000").mkdir()  # images of a class the networks do not have
    smooth_image(image_folder / "1000" / "a.png", 7)
    table = tmp_path / "images.csv"
    table.write_text(f"path,class\n{image_folder / '2' / '4.png'},2\n{image_folder / '2' / '5.png'},tench\n")
    return [
        (["--units", "3"], f"class folder {image_folder / '3'} has no images"),
        (["--units", "5"], "unknown class 5"),
        (["--units", "4"], "cannot read image"),
        (["--units", "2", "--images", str(table)], "line 3: unknown class 'tench'"),
        (["--units", "2", "--images", str(tmp_path / "nowhere")], "does not exist"),
        (["--units", "1", "--variants", "maco,fancy"], "unknown variant(s) fancy"),
        (["--units", "1", "--transfer-models", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["--units", "1000"], "out of range"),
        (["--units", "1,2", "--plausibility-k", "3"], "--plausibility-k 3 needs as many natural images per class; unit 2 has 2"),
    ]


def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, image_folder):
    for args, message in bad_input_cases(tmp_path, image_folder):
        arguments = [*FAST, "--images", str(image_folder), *args, "--out", str(tmp_path / "o")]
        result = CliRunner().invoke(main, ["evaluate", *arguments])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_a_smoke_run_prints_no_fid_nor_transferability_of_random_networks(tmp_path, image_folder, weights_folder):
    """--random-weights: the judges are not loaded, their cells say why; an explicit --weights still counts."""
    out = tmp_path / "out"
    result = invoke(*FAST, "--weights", str(weights_folder), "--units", "1", "--images", str(image_folder),
                    "--variants", "maco,olah", "--out", str(out))
    assert result.exit_code == 0, result.output
    tables = (out / "tables.md").read_text()
    fid_rows = tables.split("**FID** (↓)")[1].split("**Transferability**")[0]
    assert fid_rows.count("| n/a (random weights) |") == 2  # MACO and Olah
    olah_table2 = [line for line in tables.splitlines() if line.startswith("| Fourier (Olah et al.) |")][-1]
    assert olah_table2.endswith(" | n/a (random weights)" * 3 + " |")  # top-1 of each classifier
    assert "- fid networks: random weights, fid not computed" in tables and "**RANDOM weights" in tables
    with (out / "summary.csv").open() as handle:
        assert all(np.isnan(float(row["fid"])) for row in csv.DictReader(handle))
    run = json.loads((out / "run.json").read_text())
    assert run["networks"]["test_resnet"].startswith("pretrained:test_resnet from")  # not overridden
    assert run["random_weights"] == ["fid", "transferability"] and run["fid"]["weights"] == "n/a (random weights)"


def test_auxiliary_weights_missing_from_their_folder_or_offline_are_named(tmp_path, image_folder, weights_folder,
                                                                            monkeypatch):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "test_resnet.safetensors").write_bytes((weights_folder / "test_resnet.safetensors").read_bytes())
    result = CliRunner().invoke(main, ["evaluate", *FAST, "--transfer-weights", str(partial), "--units", "1",
                                       "--images", str(image_folder), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.startswith(
        f"Error: transfer classifier test_efficientnet: no weights for test_efficientnet in {partial}: no file "
        f"{partial / 'test_efficientnet.safetensors'} (or .pth, .pt, .bin); nor a hub cache entry "
        "models--timm--test_efficientnet.r160_in1k"), result.output
    # without --random-weights and offline, the FID network needs real weights: one line, naming it
    monkeypatch.setattr("maco.models._hub_reachable", lambda timeout_s=3.0: False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(main, ["evaluate", "--model", "test_resnet", "--weights", str(weights_folder),
                                       "--transfer-models", "none", "--fid-model", "test_resnet", "--units", "1",
                                       "--images", str(image_folder), "--spectrum", "analytic", "--quiet",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.startswith(
        "Error: FID network: pretrained weights for test_resnet are not in the local cache"), result.output
    assert "a folder of weights" in result.output and not (tmp_path / "o").exists()


def test_missing_pretrained_weights_are_one_clear_line(tmp_path, image_folder, monkeypatch):
    monkeypatch.setattr("maco.models._hub_reachable", lambda timeout_s=3.0: False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(main, ["evaluate", "--model", "test_resnet", "--units", "1", "--images",
                                       str(image_folder), "--spectrum", "analytic", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "pretrained weights for test_resnet" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_a_missing_published_spectrum_stops_evaluate_unless_analytic_is_chosen(tmp_path, image_folder, monkeypatch):
    monkeypatch.setenv("MACO_CACHE", str(tmp_path / "empty-cache"))
    without = [arg for arg in FAST if arg not in ("--spectrum", "analytic")]
    result = CliRunner().invoke(main, ["evaluate", *without, "--units", "1", "--images", str(image_folder),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: the ImageNet spectrum is not cached at")
    assert "or choose 'analytic'" in result.output and not (tmp_path / "o").exists()
    # without a MACO variant no spectrum is needed
    olah = CliRunner().invoke(main, ["evaluate", *without, "--units", "1", "--images", str(image_folder),
                                     "--variants", "olah", "--out", str(tmp_path / "olah")])
    assert olah.exit_code == 0, olah.output
    assert json.loads((tmp_path / "olah" / "run.json").read_text())["spectrum"] == []


def test_dtype_and_device_are_recorded_and_an_absent_gpu_is_one_line(tmp_path, image_folder):
    out = tmp_path / "out"
    result = invoke("--model", "test_resnet", "--random-weights", "--transfer-models", "none", "--fid-model",
                    "test_resnet", "--steps", "2", "--size", "48", "--quiet", "--units", "1", "--images",
                    str(image_folder), "--variants", "olah", "--dtype", "bfloat16", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    runtime = json.loads((out / "run.json").read_text())["runtime"]
    assert runtime["dtype"] == "bfloat16" and runtime["device_kind"] == "cpu"
    with (out / "scores.csv").open() as handle:
        assert all(np.isfinite(float(row["logit"])) for row in csv.DictReader(handle))
    absent = CliRunner().invoke(main, ["evaluate", *FAST, "--units", "1", "--images", str(image_folder),
                                       "--device", "cuda:7", "--out", str(tmp_path / "none")])
    if torch.cuda.device_count() < 8:
        assert absent.exit_code == 1 and absent.output.startswith("Error: device cuda:7:")
        assert not (tmp_path / "none").exists()


def test_an_installed_plugins_method_gets_the_papers_tables(tmp_path, image_folder, weights_folder, monkeypatch):
    """`evaluate` takes any method of the registry: the example plugin (examples/horama_method) as a row."""
    from pathlib import Path

    from stimuli.testing import install_plugin

    install_plugin(Path(__file__).resolve().parents[2] / "examples" / "horama_method", tmp_path / "site", monkeypatch)
    out = tmp_path / "out"
    result = invoke(*judged(weights_folder), "--units", "1", "--images", str(image_folder),
                    "--variants", "maco,horama_fourier", "--out", str(out))
    assert result.exit_code == 0, result.output
    with (out / "summary.csv").open() as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"maco", "horama_fourier"}
    assert np.isfinite(float(rows["horama_fourier"]["plausibility"]))  # scored as every method (FID needs 2+ images)
    assert [line for line in (out / "tables.md").read_text().splitlines() if line.startswith("| horama_fourier |")]
    with Image.open(out / "images" / "test_resnet" / "horama_fourier_unit1_seed0.png") as image:
        assert image.size == (48, 48)  # --size reached the plugin's own setting
