"""benchmarks/bench_fv_quality.py in its smoke mode, so that it cannot rot (the figures live in RESULTS.md)."""
import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from .conftest import SHARED_SPECTRUM

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fv_quality.py"


@pytest.mark.skipif(not SHARED_SPECTRUM.exists(), reason=f"the published spectrum is not at {SHARED_SPECTRUM}")
def test_smoke_run_prints_every_ratio_and_saves_the_contact_sheet(tmp_path, capsys):
    pytest.importorskip("horama", reason="the bench extra (horama) is not installed")
    spec = importlib.util.spec_from_file_location("bench_fv_quality", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sheet = tmp_path / "sheet.png"
    bench.main(["--smoke", "--out", str(sheet)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("own_logit_ratio", "margin_ratio", "plausibility_ratio", "fid_ratio", "time_ratio"):
        assert last[key] > 0, last
        if key != "time_ratio":
            assert last["horama_halves"][key] > 0, last
    assert last["seeds"] == 2
    with Image.open(sheet) as image:  # 4 units x 2 seeds rows, 4 columns of 128 px tiles
        assert image.size[1] > 8 * 128 and image.size[0] > 4 * 128
