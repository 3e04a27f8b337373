"""benchmarks/bench_analysis.py in its smoke mode, so that it cannot rot."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_analysis.py"


def test_bench_analysis_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_analysis", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--engines", "mixedlm"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(result))
    assert set(bench.SCENARIOS) <= set(result) and result["trials"] == 16 * 12
    prior = result["prior"]
    assert prior["converged"] == {"mixedlm": True} and prior["max_beta_diff"] is None
