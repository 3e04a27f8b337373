"""Three small networks, one of each kind the study compares, registered in timm's model registry.

``small_vgg`` (a plain CNN: timm's ``VGG`` with 4 narrow stages), ``small_resnet`` (timm's ``ResNet``,
one basic block per stage) and ``small_vit`` (timm's ``VisionTransformer``, 8 px patches, 4 blocks)
stand in for VGG16, ResNet50 and ViT-B/16 where a network must be trained on this machine in seconds
(the demo's synthetic task, demo/task.py). They take 64 px images whole (``crop_pct`` 1: the
generator's pool images are the network's input) and are created by name like any timm model
(``timm.create_model("small_vit", num_classes=6)``), so a study.toml names them and a checkpoint
holds only their weights. Importing ``maco.models`` registers them.
"""
from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, register_model
from timm.models.resnet import BasicBlock, ResNet
from timm.models.vgg import VGG
from timm.models.vision_transformer import VisionTransformer
from torch import nn

INPUT_SIZE = 64


# timm's data config of a network trained here: 64 px, the whole image, inputs normalised to mean 0.5, std 0.25
DATA_CONFIG = {"input_size": (3, INPUT_SIZE, INPUT_SIZE), "crop_pct": 1.0, "interpolation": "bilinear",
               "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def _build(cls: type[nn.Module], variant: str, pretrained: bool, **kwargs: Any) -> Any:
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights: it is trained here (a checkpoint file holds its weights)")
    kwargs.pop("pretrained_cfg", None)  # timm's create_model passes them; ours is DATA_CONFIG
    kwargs.pop("pretrained_cfg_overlay", None)
    return build_model_with_cfg(cls, variant, False, pretrained_cfg=dict(DATA_CONFIG), **kwargs)


@register_model
def small_vgg(pretrained: bool = False, **kwargs: Any) -> VGG:
    """A plain CNN (VGG's 3x3 convolutions and max pools, no shortcut): 16-32-64-64 channels, a 64-wide head.

    SiLU, not VGG's ReLU: trained in seconds, the ReLU network was dead on the low-contrast images a
    visualization starts from (every hidden unit off, so the logits were the biases and their gradient
    zero: half its units' references never moved from the first step; benchmarks/RESULTS.md).
    """
    return _build(VGG, "small_vgg", pretrained, cfg=[16, "M", 32, "M", 64, "M", 64, "M"], mlp_ratio=64 / 4096,
                  act_layer=nn.SiLU, **kwargs)


@register_model
def small_resnet(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """A residual network: one basic block per stage, 16-32-64-128 channels."""
    return _build(ResNet, "small_resnet", pretrained, block=BasicBlock, layers=(1, 1, 1, 1), channels=(16, 32, 64, 128),
                  stem_width=16, **kwargs)


@register_model
def small_vit(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A vision transformer: 8 px patches of a 64 px image (64 tokens and a class token), 4 blocks of width 96."""
    return _build(VisionTransformer, "small_vit", pretrained, img_size=INPUT_SIZE, patch_size=8, embed_dim=96, depth=4,
                  num_heads=3, mlp_ratio=2.0, **kwargs)
