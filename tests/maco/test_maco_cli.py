import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from maco_study import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_visualize_writes_every_file_and_labels_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MACO_CACHE", str(tmp_path / "empty-cache"))  # and MACO_OFFLINE=1 (conftest)
    out = tmp_path / "out"
    result = run("visualize", "--model", "resnet18", "--random-weights", "--units", "1,5", "--method", "maco",
                 "--steps", "2", "--size", "64", "--crops", "2", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["weights"] == "random" and record["random_weights"] is True
    assert record["method"] == "maco" and record["steps"] == 2 and record["seed"] == 0
    assert record["spectrum"].startswith("analytic") and "ImageNet spectrum unavailable" in record["spectrum"]
    warning = "WARNING: the published ImageNet spectrum is unavailable (the ImageNet spectrum is not cached at"
    assert warning in result.stderr  # an exploration falls back, loudly
    chosen = run("visualize", "--model", "resnet18", "--random-weights", "--units", "1", "--steps", "1", "--size",
                 "32", "--crops", "1", "--spectrum", "analytic", "--out", str(tmp_path / "chosen"), "--quiet")
    assert "WARNING: the published" not in chosen.stderr and "spectrum: analytic" in chosen.stderr
    assert "unavailable" not in json.loads((tmp_path / "chosen" / "run.json").read_text())["spectrum"]
    assert [u["unit"] for u in record["units"]] == [1, 5]
    for unit in record["units"]:
        assert set(unit["files"]) == {"image", "transparency", "masked"}
        for name in unit["files"].values():
            assert "random-weights" in name
            with Image.open(out / name) as image:
                assert image.size == (64, 64) and image.text["weights"] == "random"
        assert np.isfinite(unit["objective"])


def test_visualize_olah_writes_one_png_per_unit(tmp_path):
    result = run("visualize", "--model", "resnet18", "--random-weights", "--units", "3", "--method", "olah",
                 "--steps", "2", "--size", "48", "--out", str(tmp_path), "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run.json").read_text())
    assert set(record["units"][0]["files"]) == {"image"} and record["spectrum"] is None


def test_bad_input_is_one_line_and_nonzero(tmp_path):
    cases = [
        (["--model", "resnet18", "--random-weights", "--units", "1000"], "out of range"),
        (["--model", "nosuchnet", "--random-weights", "--units", "1"], "unknown model"),
        (["--model", "resnet18", "--random-weights", "--units", "a,b"], "not a comma-separated list"),
        (["--model", "resnet18", "--random-weights", "--units", "1", "--spectrum", str(tmp_path / "x.npy")],
         "cannot read spectrum"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["visualize", *args, "--out", str(tmp_path / "o")])
        assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "o").exists()  # nothing written before the inputs were checked


def test_spectrum_command(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    result = run("spectrum", "--images", str(images), "--size", "16", "--out", str(tmp_path / "s.npy"))
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "s.npy").shape == (3, 16, 9)
    result = CliRunner().invoke(main, ["spectrum", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "t.npy")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_top_level_help_lists_every_command_without_importing_the_packages() -> None:
    import subprocess
    import sys

    from maco_study import SUBCOMMANDS, load_command

    for name, (_, short_help) in SUBCOMMANDS.items():
        assert load_command(name).get_short_help_str(limit=500) == short_help, name
    code = ("import sys; from maco_study import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'flask', 'statsmodels') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip().endswith("[]")
    assert all(name in run.stdout for name in SUBCOMMANDS)


def test_visualize_runs_an_installed_plugins_method_with_its_settings(tmp_path, monkeypatch):
    """The registry's methods, a plugin's included (examples/horama_method), through `visualize`."""
    from pathlib import Path

    from stimuli.testing import install_plugin

    install_plugin(Path(__file__).resolve().parents[2] / "examples" / "horama_method", tmp_path / "site", monkeypatch)
    out = tmp_path / "out"
    result = run("visualize", "--model", "resnet18", "--random-weights", "--units", "3,4", "--method",
                 "horama_fourier", "--steps", "2", "--size", "32", "--setting", "crops=2",
                 "--setting", "decay_power=1.0", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == "horama_fourier" and record["steps"] == 2
    assert record["settings"] == {"steps": 2, "size": 32, "learning_rate": 1.0, "decay_power": 1.0, "crops": 2,
                                  "noise": 0.05}
    assert [set(u["files"]) for u in record["units"]] == [{"image", "transparency", "masked"}] * 2
    refused = CliRunner().invoke(main, ["visualize", "--model", "resnet18", "--random-weights", "--units", "1",
                                        "--method", "horama_fourier", "--setting", "depth=3", "--out",
                                        str(tmp_path / "o")])
    assert refused.exit_code != 0 and "method 'horama_fourier' has no setting 'depth'" in refused.output
    unknown = CliRunner().invoke(main, ["visualize", "--model", "resnet18", "--random-weights", "--units", "1",
                                        "--method", "natural", "--out", str(tmp_path / "o")])
    assert unknown.exit_code != 0 and "'natural' is not one of maco, olah, pixel, horama_fourier" in unknown.output
