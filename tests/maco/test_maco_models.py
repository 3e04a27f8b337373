import pytest
import timm
import torch
from safetensors.torch import save_file

from maco import models
from maco.models import ModelError, load_model


@pytest.fixture(scope="module")
def random_resnet18():
    return load_model("resnet18", weights="random")


def test_random_weights_are_labelled_frozen_and_normalised(random_resnet18):
    model = random_resnet18
    assert model.weights == "random" and model.random_weights
    assert model.input_size == 224 and model.num_classes == 1000
    assert model.mean == pytest.approx((0.485, 0.456, 0.406))
    assert not model.net.training and not any(p.requires_grad for p in model.net.parameters())
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(model(x), model.net(model.normalize(x)))


def test_presets_map_to_pinned_timm_weights():
    assert models.resolve_name("resnet50") == "resnet50.tv_in1k"
    assert models.resolve_name("vgg16") == "vgg16.tv_in1k"
    assert models.resolve_name("vit_b16").startswith("vit_base_patch16_224")
    assert models.resolve_name("resnet18") == "resnet18"


def test_unknown_model_names_the_closest():
    with pytest.raises(ModelError, match=r"unknown model 'resnet5O'.*closest: resnet50"):
        load_model("resnet5O", weights="random")


def test_missing_pretrained_weights_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(ModelError, match="not in the local cache and the hub cannot be reached; fix:"):
        load_model("resnet18", weights="pretrained")


def test_local_checkpoint_round_trip(tmp_path, random_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(random_resnet18.net.state_dict(), path)
    loaded = load_model("resnet18", weights=path)
    assert loaded.weights.startswith("checkpoint:") and not loaded.random_weights
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(loaded(x), random_resnet18(x))
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match="does not fit resnet18"):
        load_model("resnet18", weights=tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match="neither 'pretrained', 'random', a checkpoint file nor a folder"):
        load_model("resnet18", weights=tmp_path / "missing.pth")


def test_weights_from_a_folder_named_by_timm_name_or_as_a_hub_cache(tmp_path, random_resnet18):
    """An offline machine's weights: <timm name>.pth in a folder, or a copied Hugging Face cache (HF_HOME)."""
    x = torch.rand(1, 3, 64, 64)
    torch.save(random_resnet18.net.state_dict(), tmp_path / "resnet18.pth")
    named = load_model("resnet18", weights=tmp_path)
    assert named.weights == f"pretrained:resnet18 from {tmp_path / 'resnet18.pth'}"
    assert torch.equal(named(x), random_resnet18(x))
    hub_id = timm.models.get_pretrained_cfg("resnet18").hf_hub_id  # timm/resnet18.a1_in1k
    entry = tmp_path / "hf_home" / "hub" / f"models--{hub_id.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text("0123abc")
    (entry / "snapshots" / "0123abc").mkdir(parents=True)
    save_file(random_resnet18.net.state_dict(), entry / "snapshots" / "0123abc" / "model.safetensors")
    cached = load_model("resnet18", weights=tmp_path / "hf_home")
    assert cached.weights.endswith("snapshots/0123abc/model.safetensors") and torch.equal(cached(x), named(x))
    with pytest.raises(ModelError, match=f"no weights for resnet34 in {tmp_path}: no file {tmp_path / 'resnet34'}"
                                         r"\.safetensors \(or \.pth, \.pt, \.bin\); nor a hub cache entry models--timm--resnet34"):
        load_model("resnet34", weights=tmp_path)


def test_random_weights_are_reproducible_from_their_seed():
    x = torch.rand(1, 3, 32, 32)
    state = torch.random.get_rng_state()
    first, again = load_model("resnet18", "random", seed=7), load_model("resnet18", "random", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
    assert torch.equal(first(x), again(x))
    assert not torch.equal(first(x), load_model("resnet18", "random", seed=8)(x))


def test_pretrained_weights_come_from_the_local_cache_without_the_network(tmp_path, monkeypatch):
    """A hub cache laid out as huggingface_hub writes it: the weights load from it, and the hub
    is never asked (an unreachable hub would otherwise cost a minute of retries)."""
    import timm
    from huggingface_hub import constants

    name = "test_resnet.r160_in1k"
    source = timm.create_model(name, pretrained=False)
    with torch.no_grad():
        source.fc.bias.fill_(0.5)  # weights no fresh random init would have
    snapshot = tmp_path / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, snapshot / "model.safetensors")
    (tmp_path / "models--timm--test_resnet.r160_in1k" / "refs").mkdir()
    (tmp_path / "models--timm--test_resnet.r160_in1k" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def no_network(timeout_s: float = 3.0) -> bool:
        raise AssertionError("the hub was asked although the cache has the weights")

    monkeypatch.setattr(models, "_hub_reachable", no_network)
    model = load_model(name, weights="pretrained")
    assert model.weights == f"pretrained:{name}" and not model.random_weights
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(model.net(x), source.eval()(x))


def test_safetensors_checkpoint_carries_its_classes_and_training_record(tmp_path):
    """A small network trained on another label set: its checkpoint's metadata gives num_classes, and
    load_model keeps the record (the demo's networks, the bundle's provenance)."""

    net = timm.create_model("small_vit", num_classes=6)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path),
              metadata={"num_classes": "6", "held_out_accuracy": "0.97"})
    loaded = load_model("small_vit", weights=path)
    assert loaded.num_classes == 6 and loaded.input_size == 64 and loaded.mean == (0.5, 0.5, 0.5)
    assert loaded.metadata == {"num_classes": "6", "held_out_accuracy": "0.97"}
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded(x), net.eval()((x - 0.5) / 0.25))
    with pytest.raises(ModelError, match="does not fit small_vit"):  # the metadata's classes must be the head's
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata={"num_classes": "5"})
        load_model("small_vit", weights=path)
