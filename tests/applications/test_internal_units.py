"""Channel objectives on internal layers of CNNs and ViTs, and `maco-study visualize --layer`."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from maco.craft import layer_activations
from maco.objectives import ObjectiveError
from maco.optimize import maco
from maco.transforms import crop_and_resize, maco_crop_boxes
from maco.units import channel_objectives, layer_output_shape
from maco_study import main

LAYER = "blocks.1"


def test_channel_objective_on_a_vit_layer_raises_that_channel(parts_vit):
    channels = [3, 17]
    size = 64

    def channel_values(steps: int) -> torch.Tensor:
        """Each channel (patch tokens) on its own visualization after ``steps``, seen on the same MACO crops."""
        objectives = channel_objectives(parts_vit, LAYER, channels, "patches")
        vizs = maco(parts_vit, objectives=objectives, steps=steps, size=size, crops=4, progress=False)
        images = torch.stack([v.image for v in vizs])
        crops = crop_and_resize(images, maco_crop_boxes(2, 16, size, size, torch.Generator().manual_seed(3)), 48)
        tokens = layer_activations(parts_vit, LAYER, crops)[:, parts_vit.net.num_prefix_tokens:]
        return tokens.mean(dim=1).view(2, 16, -1).mean(dim=1)[[0, 1], channels]

    start, end = channel_values(0), channel_values(32)  # the same seed: step 0 is the starting image
    assert (end > start + 0.25).all(), (start, end)  # measured: +0.31 and +1.28


def test_token_choices(parts_vit, parts_cnn):
    assert layer_output_shape(parts_vit, LAYER) == (1, 37, 32)  # CLS + 6 x 6 patches of 8 px
    patches, cls = (channel_objectives(parts_vit, LAYER, [0], t)[0] for t in ("patches", "cls"))
    tokens = torch.arange(37.0).view(1, 37, 1).repeat(2, 1, 4)
    assert patches({LAYER: tokens}).tolist() == [18.5, 18.5]  # mean of 1..36
    assert cls({LAYER: tokens}).tolist() == [0.0, 0.0]
    with pytest.raises(ObjectiveError, match="needs a ViT token layer"):
        channel_objectives(parts_cnn, "6", [0], "cls")
    with pytest.raises(ObjectiveError, match="out of range: layer 6 has channels 0..31"):
        channel_objectives(parts_cnn, "6", [32])


def run(*args):
    return CliRunner().invoke(main, ["visualize", *args])


def test_visualize_layer_channels_writes_one_visualization_per_channel(tmp_path):
    result = run("--model", "vit_tiny_patch16_224", "--random-weights", "--layer", "blocks.2", "--channels", "0,5",
                 "--tokens", "cls", "--steps", "2", "--size", "64", "--crops", "2", "--out", str(tmp_path), "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run.json").read_text())
    assert [(u["layer"], u["channel"], u["tokens"]) for u in record["units"]] == [("blocks.2", 0, "cls"),
                                                                                 ("blocks.2", 5, "cls")]
    assert all((tmp_path / name).is_file() for u in record["units"] for name in u["files"].values())


@pytest.mark.parametrize("args, message", [
    (["--layer", "blocks.40", "--channels", "1"], "unknown layer 'blocks.40'; closest: blocks.4, blocks.0"),
    (["--layer", "blocks.1", "--channels", "192"], "out of range"),
    (["--layer", "blocks.1"], "give either --units, or --layer with --channels"),
    (["--units", "1", "--layer", "blocks.1", "--channels", "1"], "give either --units"),
])
def test_bad_layer_input_is_one_line_and_nonzero(tmp_path, args, message):
    result = run("--model", "vit_tiny_patch16_224", "--random-weights", *args, "--out", str(tmp_path / "o"))
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_flexivit_layers_resolve(tmp_path):
    """FlexiViT (the paper's Figure 4 network): a block channel with patch tokens, one step."""
    result = run("--model", "flexivit_base.1200ep_in1k", "--random-weights", "--layer", "blocks.10", "--channels",
                 "7", "--tokens", "patches", "--steps", "1", "--size", "64", "--crops", "1", "--out", str(tmp_path),
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run.json").read_text())["units"][0]["layer"] == "blocks.10"
