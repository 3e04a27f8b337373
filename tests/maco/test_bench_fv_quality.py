"""benchmarks/bench_fv_quality.py in its smoke mode, so that it cannot rot (the figures live in RESULTS.md)."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from .conftest import SHARED_SPECTRUM

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fv_quality.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_fv_quality", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def scores(bench, own, margin, plausibility, features):
    units = torch.arange(len(own)) % 2
    return bench.Scores(units, torch.arange(len(own)) // 2, torch.tensor(own), torch.tensor(margin),
                        torch.tensor(plausibility), features)


def test_bootstrap_intervals_known_values():
    bench = load_bench()
    generator = torch.Generator().manual_seed(0)
    natural = {0: torch.randn(50, 3, generator=generator), 1: torch.randn(50, 3, generator=generator) + 1}
    fid = bench.fid_metric(natural)
    features = torch.randn(4, 20, 3, generator=generator)
    # every image of a method alike: each redraw has the same means, the interval is the ratio itself
    ours = scores(bench, [6.0, 6.0, 6.0, 6.0], [3.0] * 4, [1.0] * 4, features)
    theirs = scores(bench, [4.0] * 4, [2.0] * 4, [2.0] * 4, features)
    intervals = bench.bootstrap_intervals(ours, theirs, fid, resamples=50)
    assert intervals["own_logit_ratio"] == pytest.approx([1.5, 1.5])
    assert intervals["margin_ratio"] == pytest.approx([1.5, 1.5])
    assert intervals["plausibility_ratio"] == pytest.approx([0.5, 0.5])
    # a method against itself: every interval holds 1; spread images: a wider interval
    spread = scores(bench, [2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.5, 2.0, 2.5], features)
    intervals = bench.bootstrap_intervals(spread, spread, fid, resamples=200)
    for low, high in intervals.values():
        assert low < 1 < high
    # redraws stay within each unit: unit 0's own logits are 2 and 6, unit 1's 4 and 8, so a ratio of
    # means lies within [(2 + 4) / (6 + 8), (6 + 8) / (2 + 4)]
    low, high = intervals["own_logit_ratio"]
    assert 6 / 14 <= low and high <= 14 / 6
    # the whole set is the point estimate: FID against the natural images, the means
    whole = bench.summarise(spread, fid)
    assert whole["own_logit"] == 5.0 and whole["plausibility"] == 1.75 and whole["fid"] > 0


@pytest.mark.skipif(not SHARED_SPECTRUM.exists(), reason=f"the published spectrum is not at {SHARED_SPECTRUM}")
def test_smoke_run_prints_every_ratio_per_network_and_protocol_and_saves_the_contact_sheets(tmp_path, capsys):
    pytest.importorskip("horama", reason="the bench extra (horama) is not installed")
    pytest.importorskip("lucent", reason="the bench extra (torch-lucent) is not installed")
    bench = load_bench()
    bench.main(["--smoke", "--out", str(tmp_path / "sheet.png")])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for network in ("cnn", "vit"):
        report = last[network]
        # MACO against Horama under every protocol, Olah against Lucent on crops and whole images (no mask)
        for ours, protocols in [("maco", bench.PROTOCOLS), ("maco_no_carrier", bench.PROTOCOLS),
                                ("olah", ("crops", "whole"))]:
            assert report[ours]["time_ratio"] > 0 and "masked" not in report["olah"]
            for protocol in protocols:
                ratios = report[ours][protocol]
                keys = ["own_logit_ratio", "margin_ratio", "plausibility_ratio"] + ["fid_ratio"] * (protocol == "crops")
                assert set(ratios) == {*keys, "ci95"}, (network, ours, protocol, ratios)
                for key in keys:  # 3 steps: a logit or margin may still be near 0, so a ratio of any sign
                    low, high = ratios["ci95"][key]
                    assert math.isfinite(ratios[key]) and low <= high, (network, ours, protocol)
        with Image.open(tmp_path / f"sheet_{network}.png") as image:  # 4 units x 1 seed, 8 columns of 128 px
            assert image.size[1] > 4 * 128 and image.size[0] > 8 * 128
    assert last["seeds"] == 1
