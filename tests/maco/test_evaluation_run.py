"""Generation of the variants (the ablation switches reach MACO) and scoring against known values."""
import pytest
import torch

from maco.evaluation.metrics import FrechetDistance, PenultimateFeatures, logits
from maco.evaluation.natural import EvaluationError, find_natural_images
from maco.evaluation.run import fid_view, model_view, score_variant
from maco.evaluation.variants import ABLATION, VARIANTS, generate
from maco.images import to_pil
from maco.optimize import METHODS, Visualization

from .conftest import grating_batch


def fake_method(calls):
    def run(model, units, *, seed, progress, **options):
        calls.append(options)
        return [Visualization(unit=u, method="maco", seed=seed, image=torch.full((3, 8, 8), u / 10), objective=0.0,
                              history=[], transparency=torch.ones(8, 8)) for u in units]
    return run


def test_ablation_variants_pass_the_maco_switches_and_share_one_maco_run(monkeypatch):
    calls = []
    monkeypatch.setitem(METHODS, "maco", fake_method(calls))
    shown = generate(None, [3, 4, 5], [VARIANTS[name] for name in ABLATION], seeds=[0, 1],
                     method_options={"steps": 7}, units_per_run=2)
    per_generation = len([1, 2]) * len([[3, 4], [5]])  # seeds x unit chunks
    assert len(calls) == 4 * per_generation  # maco and maco-no-transparency share their run
    switches = [{k: v for k, v in call.items() if k != "steps"} for call in calls[::per_generation]]
    assert switches == [{}, {"crops": 0}, {"noise": 0.0}, {"magnitude_constraint": False}]
    assert all(call["steps"] == 7 for call in calls)
    assert shown["maco"] is shown["maco-no-transparency"]
    assert [(v.unit, v.seed) for v in shown["maco-no-crops"]] == [(u, s) for s in (0, 1) for u in (3, 4, 5)]
    assert VARIANTS["maco"].masked and not VARIANTS["maco-no-transparency"].masked


def test_a_natural_image_scores_zero_plausibility_and_its_own_logit(tiny_model):
    labels = torch.arange(4).repeat(3)
    natural = grating_batch(labels, torch.Generator().manual_seed(0))
    pictures = [to_pil(image) for image in natural]
    natural_by_unit = {u: [p for p, label in zip(pictures, labels.tolist()) if label == u] for u in range(4)}
    natural_features = {u: PenultimateFeatures(tiny_model)(model_view(ims, 32)) for u, ims in natural_by_unit.items()}
    fid = FrechetDistance(PenultimateFeatures(tiny_model)).add_natural(fid_view(pictures))
    # the "visualizations" are natural images themselves (8-bit, as scored)
    shown = [Visualization(unit=u, method="olah", seed=0, image=model_view([natural_by_unit[u][0]], 32)[0],
                           objective=0.0, history=[]) for u in range(4)]
    rows, summary = score_variant(tiny_model, VARIANTS["olah"], shown, natural_features, fid, {"self": tiny_model})
    assert [r["plausibility"] for r in rows] == pytest.approx([0.0] * 4, abs=1e-6)
    expected = logits(tiny_model, torch.stack([v.image for v in shown]))
    assert [r["logit"] for r in rows] == pytest.approx([float(expected[u, u]) for u in range(4)], rel=1e-5)
    assert summary["transferability"] == 100.0 and all(r["top1_self"] for r in rows)
    assert summary["fid"] > 0 and summary["images"] == 4


def test_natural_images_from_a_csv(tmp_path):
    for name in ("a.png", "b.png"):
        to_pil(torch.rand(3, 8, 8)).save(tmp_path / name)
    table = tmp_path / "natural.csv"
    table.write_text("path,class\na.png,n01443537\nb.png,2\nb.png,900\n")
    assert find_natural_images(table, [1, 2]) == {1: [tmp_path / "a.png"], 2: [tmp_path / "b.png"]}
    with pytest.raises(EvaluationError, match="unknown class 3: .* has no image of it"):
        find_natural_images(table, [1, 3])
    table.write_text("a.png\n")
    with pytest.raises(EvaluationError, match="line 1: expected 'path,class', got 1 fields"):
        find_natural_images(table, [1])
