"""Every benchmark runs here with tiny settings, so none can rot unseen: each must finish and end
with one JSON line whose figures make sense. Speed itself is never asserted (benchmarks/RESULTS.md)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_benchmark(name: str, *args: str, timeout: int = 600) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MACO_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_maco_smoke() -> None:
    result = run_benchmark("bench_maco.py", "--model", "test_resnet.r160_in1k", "--size", "64", "--crops", "2",
                           "--steps", "2", "--threads", "1")
    assert set(result["step_over_floor"]) == {"1", "4", "8"}
    assert all(ratio > 0 for ratio in result["step_over_floor"].values())
    assert all(s["maco"] > 0 and s["floor"] > 0 for s in result["step_seconds"].values())
    ops = result["aten_ops"]  # per step: the network's own operators are a part of both counts
    assert ops["maco"] > ops["floor"] > 0 and ops["horama"] > ops["floor"] and ops["maco_gpu_crops"] < ops["maco"]
    assert ops["ratio"] == round(ops["maco"] / ops["horama"], 3)


def test_bench_analysis_smoke() -> None:
    # random slopes on 16 participants are degenerate, so the engines are compared on the other two
    result = run_benchmark("bench_analysis.py", "--participants", "16", "--trials-per-network", "6",
                           "--scenarios", "intercepts,prior", "--power-reps", "2", "--jobs", "1")
    assert result["participants"] == 16 and result["included"] == 16
    assert result["trials"] == 16 * 6 * 3  # every main trial of every participant, three networks
    for scenario in ("intercepts", "prior"):
        fits = result[scenario]
        assert fits["converged"]["mixedlm"]
        if fits["max_beta_diff"] is not None and all(fits["converged"].values()):  # R is there and converged
            assert fits["max_beta_diff"] < 1e-2
    power = result["power"]  # maco-study power's loop against an R glmer loop over the same two studies
    assert power["studies"] == 2 and power["power_s"]["mixedlm"] > 0 and 0 <= power["power"]["mixedlm"] <= 1
    if power["speedup_vs_r"] is not None:
        assert power["power_s"]["lme4"] > 0 and power["speedup_vs_r"] > 0
    slopes = run_benchmark("bench_analysis.py", "--participants", "16", "--trials-per-network", "6",
                           "--scenarios", "slopes", "--engines", "mixedlm")
    assert slopes["slopes"]["fit_s"]["mixedlm"] > 0 and slopes["slopes"]["max_beta_diff"] is None


def test_load_server_smoke() -> None:
    # an answer a second: the fastest pace the rate limits allow for (22 trials each)
    result = run_benchmark("load_server.py", "--participants", "3", "--think-ms", "1000", "--ramp-s", "0.2",
                           "--client-processes", "1", "--workers", "1", "--threads", "4")
    assert result["participants"] == 3 and result["errors"] == 0
    assert result["requests"] > 3 * 10  # every participant went through the whole session


def test_load_server_behind_nginx_smoke() -> None:
    # docs/deploy/nginx.conf in front: the trial images through X-Accel-Redirect, and check_front's
    # look from a browser (no header reaches it, the internal location is closed) counts in errors
    result = run_benchmark("load_server.py", "--participants", "2", "--think-ms", "1000", "--ramp-s", "0.2",
                           "--client-processes", "1", "--workers", "1", "--threads", "4", "--front", "nginx")
    assert result["participants"] == 2 and result["errors"] == 0 and result["front"] == "nginx"
    assert result["front_cpu_ms_per_request"] > 0 and result["app_cpu_ms_per_request"] > 0
    assert result["per_endpoint"]["GET /img/<token>"]["n"] > 2 * 10


def test_bench_admin_smoke() -> None:
    result = run_benchmark("bench_admin.py", "--participants", "8", "--rounds", "1")
    assert result["participants"] == 8
    assert result["batched_over_per_participant"] > 0 and result["live_refresh_over_per_participant"] > 0


def test_bench_evaluate_smoke(tmp_path) -> None:
    result = run_benchmark("bench_evaluate.py", "--steps", "2", "--size", "64", "--train-steps", "5", "--natural",
                           "3", "--seeds", "0", "--variants", "maco,olah,maco-no-transparency", "--out", str(tmp_path))
    assert set(result) == {"olah_over_maco", "maco-no-transparency_over_maco", "maco_over_natural", "tables"}
    assert set(result["tables"]) == {"maco", "olah", "maco-no-transparency", "natural"}
    assert all(result["tables"][name]["plausibility"] > 0 for name in ("maco", "olah"))
    assert (tmp_path / "contact_sheet.png").is_file() and "## Table 3" in (tmp_path / "tables.md").read_text()


def test_bench_evaluate_networks_are_the_same_every_run() -> None:
    # the seed fixes the initial weights too (they were drawn before it: every run trained other networks)
    spec = importlib.util.spec_from_file_location("bench_evaluate", BENCHMARKS / "bench_evaluate.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sources = bench.photos()

    def weights(seed: int) -> list[torch.Tensor]:
        torch.randn(5)  # whatever ran before moved the global generator
        return list(bench.train("cnn", (8, 16), 3, sources, 2, seed=seed).net.parameters())

    first = weights(0)
    assert all(torch.equal(p, q) for p, q in zip(first, weights(0)))
    assert not torch.equal(first[0], weights(1)[0])


def test_bench_concepts_smoke() -> None:
    result = run_benchmark("bench_concepts.py", "--smoke")  # it asserts that both importance paths agree
    assert result["widened_over_repeated"] > 0


def test_bench_concept_objectives_smoke() -> None:
    result = run_benchmark("bench_concept_objectives.py", "--smoke")
    assert result["concepts"] == 3 and result["seeds"] == 1
    for objective in ("dual", "raw", "raw_cos2", "nnls_contrast"):
        for view in ("crops", "whole"):
            scores = result[objective][view]
            assert 0 <= scores["own_most"] <= 1 and 0 < scores["own_share"] <= 1 and 0 <= scores["negative_lsq"] <= 1


def test_fault_server_smoke() -> None:
    # client faults only (no worker to kill in one-worker SQLite, no database to restart)
    result = run_benchmark("fault_server.py", "--db", "sqlite", "--participants", "2", "--scenarios", "client_faults",
                           "--think-ms", "100", "--ramp-s", "0.2", "--client-processes", "0", "--workers", "1",
                           "--threads", "4")
    assert result["ok"] and result["lost"] == result["duplicated"] == result["stuck"] == 0
    assert result["acknowledged"] == result["stored"] >= 2 * 20  # both participants answered every trial


def test_scaleout_server_smoke() -> None:
    # two instances on a private PostgreSQL (CI installs the server binaries), the second killed halfway
    result = run_benchmark("scaleout_server.py", "--participants", "4", "--think-ms", "100", "--ramp-s", "0.2",
                           "--client-processes", "0", "--workers", "1", "--threads", "4")
    assert result["ok"] and result["lost"] == result["duplicated"] == result["stuck"] == 0 and result["balanced"]
    assert result["acknowledged"] == result["stored"] >= 4 * 20  # every participant answered every trial
    assert 0 < result["kill"]["answers_stored_at_kill"] < result["stored"]  # killed mid-run
    assert all(n > 0 for n in result["requests_per_instance"].values())
    assert result["codes_shown"] == result["codes_expected"] == 4


def test_bench_stimuli_smoke() -> None:
    result = run_benchmark("bench_stimuli.py", "--smoke")
    assert result["smoke"] and result["positions"] == 9 and result["units_per_run"] == 2
    assert result["occlusion_vs_forward"] > 0 and result["refs_per_min"] > 0 and result["refs_per_min_unbatched"] > 0


def test_gpu_check_smoke() -> None:
    report = run_benchmark("gpu_check.py", "--smoke")
    network = report["networks"]["test_resnet"]
    for key in ("float32_units1", "float32_units2", "bfloat16_units1", "bfloat16_units2"):
        assert network[key]["maco_units_per_min"] > 0 and network[key]["olah_units_per_min"] > 0
        assert network[key]["maco_step_over_floor"] > 0
    assert network["occlusion"]["occlusion_vs_forward"] > 0 and set(network["sync_errors"]) == {"maco", "olah", "occlusion"}
    assert network["agreement"]["within_tolerance"] and network["agreement"]["gradient_rel_l2"] == 0  # cpu against cpu
    for method in ("maco", "olah"):
        assert network["determinism"][method]["deterministic_bitwise_equal"] is True
        assert network["determinism"][method]["nondeterministic_ops"] == []  # none on the CPU
    assert report["runtime"]["device_kind"] == "cpu" and report["smoke"]
