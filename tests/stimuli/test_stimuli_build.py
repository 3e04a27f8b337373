"""The whole build on the tiny example: bundle content, resumption after kill -9, shards, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from maco.optimize import MACO_ALGORITHM
from maco_study import main as cli
from stimuli import manifest as mf
from stimuli.build import RUNTIME_DIR, WORK_DIR, Builder, Shard, build, check_bundle
from stimuli.config import StimuliError, load_config
from stimuli.models import load_study_model
from stimuli.references import from_pil

TINY = Path(__file__).resolve().parents[2] / "examples" / "study_tiny.toml"


def one_thread() -> dict[str, str]:
    """Every build of these tests runs single-threaded: CPU results depend on the thread count
    (reduction order), and several processes share a small CPU."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def build_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "maco_study", "stimuli", "build", str(TINY), "--out", str(out),
            "--device", "cpu", "--no-progress", *extra]


def comparable(bundle: Path) -> tuple[dict, list[str]]:
    """The manifest without its creation time, and the image files."""
    data = json.loads((bundle / mf.MANIFEST_FILE).read_text())
    del data["provenance"]["created_at"]
    return data, sorted(os.listdir(bundle / mf.IMAGES_DIR))


@pytest.fixture(scope="module")
def config():
    return load_config(TINY)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, config) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "bundle"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess builds (see one_thread)
    try:
        assert build(config, out, Shard(), "cpu", progress=False) == out / mf.MANIFEST_FILE
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def models(config):
    return {n.key: load_study_model(n, config.seed) for n in config.networks}


def records(bundle: Path, stage: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (bundle / WORK_DIR / stage).glob("*.json")}


def test_bundle_holds_every_piece_of_the_study(bundle, config):
    manifest = check_bundle(bundle)
    assert [u.key for u in manifest.units] == ["resnet:1", "resnet:2", "resnet:3", "effnet:4", "effnet:5"]
    assert manifest.units[0].label == "goldfish, Carassius auratus"
    assert all(n.weights == "random" for n in manifest.networks)
    assert [n.input_size for n in manifest.networks] == [48, 48]
    assert len(manifest.query_pairs) == 5 * config.query.per_unit
    assert len(manifest.practice_trials) == 3 and len(manifest.catch_trials) == 2
    assert manifest.protocol.practice_trials_per_round == 1 and manifest.protocol.max_practice_rounds == 3
    for unit in manifest.units:
        maco = manifest.reference_images(unit.key, "maco")
        masked = manifest.reference_images(unit.key, "maco_mask")
        olah = manifest.reference_images(unit.key, "olah")
        assert len(maco) == len(masked) == len(olah) == config.references.per_trial
        assert len(set(maco + masked + olah)) == 3 * config.references.per_trial
        assert manifest.reference_images(unit.key, "none") == []
    assert {p.correct for p in manifest.query_pairs + manifest.practice_trials} == {"a", "b"}
    assert manifest.provenance["config_fingerprint"] == config.fingerprint()
    assert manifest.provenance["config_toml"] == TINY.read_text()
    assert "maco-study" in manifest.provenance["software"]
    [spectrum] = manifest.provenance["spectrum_sources"]  # chosen in the config, not fallen back to
    assert spectrum.startswith("analytic (offline fit") and "unavailable" not in spectrum
    [runtime] = manifest.provenance["runtime"]  # every process of this build ran alike
    assert runtime["device_kind"] == "cpu" and runtime["dtype"] == "float32" and runtime["torch"] == torch.__version__
    assert runtime["deterministic"]["algorithms"] is False


def test_stored_activations_are_those_of_the_stored_images(bundle, models):
    manifest = mf.load_manifest(bundle)
    for _kind, pair in manifest.all_query_pairs():
        network, unit = pair.unit.split(":")

        def activation(image_id: str, model=models[network], unit=int(unit)) -> float:  # noqa: ANN001
            image = from_pil(Image.open(mf.image_path(bundle, image_id)))
            return float(model.logits(image[None])[0, unit])

        assert activation(pair.base_image) == pytest.approx(pair.activation_base, abs=1e-4)
        assert activation(pair.correct_image) == pytest.approx(pair.activation_max, abs=1e-4)
        assert activation(pair.wrong_image) == pytest.approx(pair.activation_min, abs=1e-4)
        assert pair.activation_max > pair.activation_min


def test_main_pairs_use_the_top_images_and_practice_the_easiest_spares(bundle, config):
    def key(name: str) -> tuple[str, int, int]:  # record "resnet-0001-002" or pair id "q-resnet-1-2"
        network, unit, rank = name.rsplit("-", 3)[-3:]
        return network, int(unit), int(rank)

    queries = {key(name): q for name, q in records(bundle, "queries").items()}
    manifest = mf.load_manifest(bundle)
    main = {k: q for k, q in queries.items() if k[2] < config.query.per_unit}
    assert {key(p.id) for p in manifest.query_pairs} == set(main)
    assert {p.base_image for p in manifest.query_pairs} == {q["base_image"] for q in main.values()}
    # practice: the largest relative differences among spares showing no main photo, distinct units
    # and photos, enough for every round (dealt round after round)
    main_files = {q["file"] for q in main.values()}
    eligible = sorted((k for k, q in queries.items() if k not in main and q["file"] not in main_files),
                      key=lambda k: -queries[k]["relative_difference"])
    expected, units, files = [], set(), set()
    rounds = config.practice.max_rounds
    for k in eligible:
        if k[:2] not in units and queries[k]["file"] not in files and len(expected) < config.practice.trials * rounds:
            expected.append(k)
            units.add(k[:2])
            files.add(queries[k]["file"])
    assert len(expected) == config.practice.trials * rounds
    assert [key(p.id) for p in manifest.practice_trials] == [k for r in range(rounds) for k in expected[r::rounds]]
    assert len({p.base_image for p in manifest.practice_trials}) == len(manifest.practice_trials)
    shown_in_practice_or_catch = {p.base_image for p in manifest.practice_trials + manifest.catch_trials}
    assert not shown_in_practice_or_catch & {p.base_image for p in manifest.query_pairs}


def test_catch_trials_are_answerable_without_references(bundle):
    manifest = mf.load_manifest(bundle)
    pairs = {p.id: p for _, p in manifest.all_query_pairs()}
    occluded_copies = {}  # base image -> its occluded images, from the real pairs
    for pair in manifest.query_pairs + manifest.practice_trials:
        occluded_copies.setdefault(pair.base_image, set()).update((pair.image_a, pair.image_b))
    for catch in manifest.catch_trials:
        assert catch.note.startswith("catch:")
        # the wrong image is an occluded copy of a *different* photo
        owner = [p for p in pairs.values() if catch.wrong_image in (p.image_a, p.image_b)
                 and p.id != catch.id]
        assert all(p.base_image != catch.base_image for p in owner)
        base = from_pil(Image.open(mf.image_path(bundle, catch.base_image)))
        correct = from_pil(Image.open(mf.image_path(bundle, catch.correct_image)))
        wrong = from_pil(Image.open(mf.image_path(bundle, catch.wrong_image)))
        # the correct image differs from the base only under its occluder; the wrong one elsewhere too
        occ = catch.occluder_a if catch.correct == "a" else catch.occluder_b
        outside = torch.ones_like(base, dtype=torch.bool)
        outside[:, occ.y:occ.y + occ.size, occ.x:occ.x + occ.size] = False
        assert torch.equal(correct[outside], base[outside])
        assert not torch.equal(wrong[outside], base[outside])


def test_killed_build_resumes_to_the_same_bundle_without_redoing_work(tmp_path, bundle):
    out = tmp_path / "bundle"
    process = subprocess.Popen(build_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=one_thread())
    try:
        # polled every 50 ms; the first query piece comes seconds of CPU work (a dozen more pieces)
        # before the manifest, and this loop needs only microseconds of it to see that piece,
        # so even a heavily loaded machine kills the build mid-stage
        deadline = time.monotonic() + 120
        while not list((out / WORK_DIR / "queries").glob("*.json")) and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (out / mf.MANIFEST_FILE).exists()
    finished = {p: p.stat().st_mtime_ns for p in (out / WORK_DIR).rglob("*.json")}
    assert any("queries" in str(p) for p in finished)

    subprocess.run(build_command(out), check=True, capture_output=True, env=one_thread())
    assert comparable(out) == comparable(bundle)
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in finished.items())  # nothing redone
    assert not list((out / mf.IMAGES_DIR).glob(".*"))  # no half-written file left


def test_shards_merge_into_the_same_bundle(tmp_path, bundle):
    out = tmp_path / "bundle"
    shards = [subprocess.Popen(build_command(out, "--shard", f"{i}/2"), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=one_thread()) for i in (1, 0)]
    outputs = [s.communicate(timeout=300)[0] for s in shards]
    assert [s.returncode for s in shards] == [0, 0]
    assert "shard 1/2 done" in outputs[0] and "bundle written" in outputs[1]
    assert comparable(out) == comparable(bundle)


def test_shard_slices_are_disjoint_and_cover_everything(config):
    from stimuli.build import plan_pieces

    pieces = plan_pieces(config, 19)
    for stage_pieces in pieces.values():
        slices = [Shard(i, 3).mine(stage_pieces) for i in range(3)]
        assert sorted(p.name for s in slices for p in s) == sorted(p.name for p in stage_pieces)
        assert len({p.name for p in stage_pieces}) == len(stage_pieces)


def test_torchrun_environment_selects_the_shard(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert Shard.parse(None) == Shard(2, 4)
    assert Shard.parse("1/3") == Shard(1, 3)


def test_dry_run_prints_the_plan():
    result = CliRunner().invoke(cli, ["stimuli", "build", str(TINY), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("study tiny: 2 networks, 5 units, conditions olah, maco_mask, maco, none, "
                        "pool 19 images")
    # 5 units x top_k 3 base images x (5 x 5 occluder positions + the unoccluded image)
    assert lines[4].split() == ["queries", "15", "390", "0"]
    # 2 seeds x 5 units x 2 steps x (2 MACO crops + 1 Olah view)
    assert lines[3].split() == ["references", "8", "60", "60"]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('model = "test_resnet"', 'model = "no_such_net"'),
     "Error: networks.resnet.model: unknown model 'no_such_net'"),
    (lambda t: t.replace('source = "skimage"', 'source = "pool"'), "Error: pool.source: no images in"),
    (lambda t: t.replace("top_k = 3", "top_k = 30"), "Error: pool.source: 19 images, fewer than query.top_k = 30"),
    (lambda t: t.replace("units = [4, 5]", "units = [4, 5000]"),
     "Error: networks.effnet.units: class index 5000 out of range 0..999"),
    (lambda t: t.replace('model = "test_efficientnet"', 'model = "vit_tiny_patch16_224"'),
     "Error: networks.effnet.input_size: vit_tiny_patch16_224 does not accept 48 px inputs"),
])
def test_bad_input_fails_fast_with_one_line(tmp_path, edit, message):
    (tmp_path / "pool").mkdir()
    study = tmp_path / "study.toml"
    study.write_text(edit(TINY.read_text()))
    result = CliRunner().invoke(cli, ["stimuli", "build", str(study), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert result.output.startswith(message) and result.output.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_a_missing_published_spectrum_stops_the_build_unless_the_config_chooses_the_analytic_one(
        tmp_path, monkeypatch):
    """The tiny study says spectrum = "analytic"; without that line it needs the published spectrum."""
    monkeypatch.setenv("MACO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("MACO_OFFLINE", "1")
    study = tmp_path / "study.toml"
    study.write_text(TINY.read_text().replace('spectrum = "analytic"', ""))
    result = CliRunner().invoke(cli, ["stimuli", "build", str(study), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: references.spectrum: the ImageNet spectrum is not cached at "
                                    f"{tmp_path / 'empty-cache'}")
    assert "or choose 'analytic' for the analytic approximation" in result.output
    assert not (tmp_path / "b").exists()  # before any model, piece or file


def test_too_few_readable_images_fail_after_the_pool_pass_naming_the_count(tmp_path, make_pool):
    make_pool(tmp_path / "pool", 3)
    for name in ("a.jpg", "b.png"):
        (tmp_path / "pool" / name).write_bytes(b"broken")
    study = tmp_path / "study.toml"
    study.write_text(TINY.read_text().replace('source = "skimage"', 'source = "pool"')
                     .replace("top_k = 3", "top_k = 4").replace("trials = 2", "trials = 0"))
    result = CliRunner().invoke(cli, ["stimuli", "build", str(study), "--out", str(tmp_path / "b"),
                                      "--no-progress"])
    assert result.exit_code == 1
    assert result.output == ("Error: pool.source: only 3 readable images (2 unreadable), "
                             "fewer than query.top_k = 4\n")


def test_dry_run_shows_a_shards_share():
    result = CliRunner().invoke(cli, ["stimuli", "build", str(TINY), "--dry-run", "--shard", "1/4"])
    assert result.output.splitlines()[-1] == "shard 1/4: 8 of 29 pieces"


def test_resuming_with_another_config_or_into_a_foreign_folder_is_refused(tmp_path, bundle, config):
    changed = load_config(TINY)
    object.__setattr__(changed, "seed", 1)
    with pytest.raises(Exception, match="started from a different config"):
        Builder(changed, bundle, progress=False).run()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty and holds no stimulus build"):
        Builder(config, tmp_path, progress=False).run()


def test_resuming_in_another_precision_is_refused(bundle, config):
    before = sorted(p.name for p in (bundle / WORK_DIR / RUNTIME_DIR).iterdir())
    with pytest.raises(StimuliError, match="--dtype: this bundle was started in float32, not bfloat16"):
        Builder(config, bundle, progress=False, compute_dtype=torch.bfloat16).run()
    assert sorted(p.name for p in (bundle / WORK_DIR / RUNTIME_DIR).iterdir()) == before


def test_check_names_a_missing_image(tmp_path, bundle):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(bundle), str(copy)], check=True)
    victim = mf.load_manifest(copy).query_pairs[0].base_image
    mf.image_path(copy, victim).unlink()
    result = CliRunner().invoke(cli, ["stimuli", "check", str(copy)])
    assert result.exit_code == 1 and victim in result.output
    ok = CliRunner().invoke(cli, ["stimuli", "check", str(bundle)])
    assert ok.exit_code == 0 and ok.output.startswith("ok: 2 networks, 5 units, 5 query pairs")


def test_the_quality_gate_records_every_unit_and_condition_and_check_warns_about_failures(bundle):
    provenance = mf.load_manifest(bundle).provenance
    assert provenance["maco_algorithms"] == [MACO_ALGORITHM]
    rows = provenance["quality"]
    assert sorted((r["unit"], r["condition"]) for r in rows) == sorted(
        (u, c) for u in ["resnet:1", "resnet:2", "resnet:3", "effnet:4", "effnet:5"]
        for c in ["olah", "maco_mask", "maco"])
    for row in rows:
        assert row["seeds"] == 2 and row["units_compared"] == (3 if row["unit"].startswith("resnet") else 2)
        assert 1 <= row["own_logit_rank"] <= row["units_compared"] and row["passed"] == (row["own_logit_rank"] == 1)
        assert (row["margin"] >= 0) == row["passed"]  # own logit minus the next unit's (the instructions' example)
    failing = [r for r in rows if not r["passed"]]
    assert failing  # random weights and two steps: some units fail
    result = CliRunner().invoke(cli, ["stimuli", "check", str(bundle)])
    assert result.exit_code == 0 and result.stderr.count("WARNING: unit ") == len(failing)
    assert f"unit {failing[0]['unit']} ({failing[0]['condition']}): its own logit ranks" in result.stderr


def test_a_shard_waits_while_others_progress_and_stops_when_they_stall(tmp_path, config, monkeypatch):
    """The other shard's progress is driven by the waiting shard's own polls on a fake clock, so the
    outcome never depends on how fast threads run on a loaded machine."""
    from stimuli.build import Piece, store as store_module

    waiting = Builder(config, tmp_path, Shard(1, 2), progress=False, stall_seconds=0.5, poll_seconds=0.01)
    pieces = [Piece("pool", "net", chunk=i) for i in range(3)]
    to_finish = list(pieces)
    clock = {"now": 0.0, "last_write": 0.0}

    class FakeTime:
        @staticmethod
        def monotonic() -> float:
            return clock["now"]

        @staticmethod
        def sleep(seconds: float) -> None:  # the other shard finishes one piece every 0.2 s of fake time
            clock["now"] += seconds
            if to_finish and clock["now"] - clock["last_write"] >= 0.2:
                waiting.store.write(to_finish.pop(0), {"done": True})
                clock["last_write"] = clock["now"]

    monkeypatch.setattr(store_module, "time", FakeTime)
    waiting.store.wait(pieces, "pool pieces")  # returns once all three exist
    assert all(waiting.store.done(p) for p in pieces)
    assert 0.6 <= clock["now"] < 0.7  # three pieces at 0.2 s each, never stopped by the 0.5 s stall rule

    stalled = [Piece("pool", "net", chunk=9)]
    before = clock["now"]
    with pytest.raises(Exception, match=r"finished none of 1 pool pieces \(e\.g\. .*\) in 0\.5 s; rerun"):
        waiting.store.wait(stalled, "pool pieces")
    assert 0.5 < clock["now"] - before < 0.52  # gave up right after the stall time, not before
