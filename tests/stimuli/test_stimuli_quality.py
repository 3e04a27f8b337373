"""The quality gate's summary and warnings on known values (the build records them: test_stimuli_build)."""
import torch

from stimuli.quality import summarize, view_logits, warnings


def test_rank_of_the_own_logit_among_the_study_units_per_condition():
    records = {
        ("net", 7, "maco"): [{"objective": 2.0, "logits": [1.0, 3.0, 0.0]},   # units (5, 7, 9): 7 is first
                             {"objective": 4.0, "logits": [1.0, 2.0, 0.0]}],
        ("net", 9, "olah"): [{"objective": -1.0, "logits": [2.0, 5.0, 3.0]}],  # 9 is second, after 7
    }
    rows = summarize(records, {"net": (5, 7, 9)}, {"olah": "olah", "maco_mask": "maco", "maco": "maco"})
    assert rows == [
        {"unit": "net:7", "condition": "maco_mask", "seeds": 2, "objective": 3.0, "own_logit_rank": 1,
         "units_compared": 3, "margin": 1.5, "passed": True},
        {"unit": "net:7", "condition": "maco", "seeds": 2, "objective": 3.0, "own_logit_rank": 1,
         "units_compared": 3, "margin": 1.5, "passed": True},
        {"unit": "net:9", "condition": "olah", "seeds": 1, "objective": -1.0, "own_logit_rank": 2,
         "units_compared": 3, "margin": -2.0, "passed": False},
    ]
    assert warnings({"quality": rows}) == [
        ("unit net:9 (olah): its own logit ranks 2 of 3 study units on its references (objective -1, 1 seeds); "
         "consider swapping the unit")]
    assert "built before the quality gate" in warnings({})[0]


def test_view_logits_average_the_methods_views(model):
    image = torch.rand(3, 64, 64)
    whole = model.logits(torch.nn.functional.interpolate(image[None], size=32, mode="area"))[0]
    assert torch.allclose(torch.tensor(view_logits(model, image, "olah", (1, 4))), whole[[1, 4]], atol=1e-5)
    crops = view_logits(model, image, "maco", (1, 4))
    assert crops == view_logits(model, image, "maco", (1, 4)) and crops != whole[[1, 4]].tolist()
