import pytest
import torch

from maco.objectives import (
    LOGITS, ObjectiveError, capture, channel, direction, feature_inversion, logit, neuron, reference_activations,
)


def test_objectives_compose_with_known_values():
    acts = {LOGITS: torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])}
    combined = logit(0) + 2 * logit(2) - 0.5 * logit(1)
    assert torch.equal(combined(acts), torch.tensor([1 + 6 - 1.0, 4 + 12 - 2.5]))
    assert torch.equal(sum([logit(0), logit(1)])(acts), torch.tensor([3.0, 9.0]))
    assert torch.equal((-logit(1))(acts), torch.tensor([-2.0, -5.0]))
    with pytest.raises(ObjectiveError, match="unit 7 out of range"):
        logit(7)(acts)


def test_channel_and_neuron_in_nchw_and_token_layouts():
    nchw = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    assert torch.equal(channel("conv", 1)({"conv": nchw}), nchw[:, 1].mean(dim=(1, 2)))
    assert torch.equal(channel("blocks", 2)({"blocks": tokens}), tokens[:, :, 2].mean(dim=1))
    assert torch.equal(neuron("conv", 1)({"conv": nchw}), nchw[:, 1, 1, 1])
    assert torch.equal(neuron("blocks", 2, 0)({"blocks": tokens}), tokens[:, 0, 2])
    with pytest.raises(ObjectiveError, match="channel 9 out of range"):
        channel("conv", 9)({"conv": nchw})


def test_direction_dot_times_cosine_power():
    features = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    acts = {"fc": features}
    v = torch.tensor([1.0, 0.0])
    assert torch.allclose(direction("fc", v)(acts), torch.tensor([3.0, 1.0]))
    cos = torch.tensor([0.6, 1.0])
    assert torch.allclose(direction("fc", v, cos_power=2)(acts), torch.tensor([3.0, 1.0]) * cos**2)


def test_layers_resolve_through_hooks_and_unknown_names_list_the_closest(tiny_model):
    with capture(tiny_model.net, ["3"]) as store:
        tiny_model(torch.rand(2, 3, 32, 32))
    assert store["3"].shape == (2, 32, 16, 16)  # the second conv, after pooling
    with pytest.raises(ObjectiveError, match=r"unknown layer 'layer9'"):
        with capture(tiny_model.net, ["layer9"]):
            pass
    timm_like = torch.nn.Sequential()
    timm_like.add_module("layer4", torch.nn.Identity())
    with pytest.raises(ObjectiveError, match="closest: layer4"):
        with capture(timm_like, ["layer_4"]):
            pass


def test_feature_inversion_is_maximal_on_its_reference(tiny_model):
    image = torch.rand(3, 32, 32)
    target = reference_activations(tiny_model, "3", image)
    objective = feature_inversion("3", target)
    with capture(tiny_model.net, ["3"]) as store:
        tiny_model(torch.stack([image, torch.rand(3, 32, 32)]))
        values = objective(store)
    assert values[0].item() == pytest.approx(1.0, abs=1e-5) and values[1] < values[0]
